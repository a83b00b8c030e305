"""Split one clip-level gazing ratio into per-frame budgets by fixed frame weights.

The default evaluation gives every frame the same budget, ``max(int(ratio * P), 1)``. Upstream's own
validation instead splits the clip's budget over frames by a Dirichlet with the first frame weighted
10 and the others 3, as the training labels are. This module gives the deterministic version of that
split (the Dirichlet's mean), so that every model is scored on the same per-frame budgets:

    split_counts(0.2, num_frames=8, tokens_per_frame=20, weights=(10, 3))
    -> [11, 3, 3, 3, 3, 3, 3, 3]     (32 gazes in all, as the uniform split's 8 x 4)

Counts are whole gazes, rounded by largest remainder so that they sum to ``round(ratio * T * P)``
(a per-frame ``int()`` would lose up to one gaze per frame), each between 1 and P.
"""
from __future__ import annotations

import math
from typing import Sequence


def frame_weights(weights: Sequence[float], num_frames: int) -> list[float]:
    """``weights`` for the first frames, its last value repeated to ``num_frames`` values."""
    if not weights or any(w <= 0 for w in weights):
        raise ValueError(f"frame weights {list(weights)!r}: need at least one value, all > 0 (e.g. 10,3)")
    w = list(weights)[:num_frames]
    return w + [w[-1]] * (num_frames - len(w))


def split_counts(ratio: float, num_frames: int, tokens_per_frame: int, weights: Sequence[float]) -> list[int]:
    """Per-frame gaze counts [T] for a clip ratio, proportional to ``weights`` (see module doc)."""
    w = frame_weights(weights, num_frames)
    P, T = tokens_per_frame, num_frames
    total = min(max(round(ratio * T * P), T), T * P)      # at least one gaze per frame, at most all
    # Ideal real-valued shares, water-filled: a frame whose share exceeds P keeps P and the rest of
    # the clip's budget is re-split over the other frames by weight.
    ideal, free, left = [0.0] * T, set(range(T)), float(total)
    while free:
        wsum = sum(w[t] for t in free)
        over = {t for t in free if left * w[t] / wsum > P}
        if not over:
            for t in free:
                ideal[t] = left * w[t] / wsum
            break
        for t in over:
            ideal[t] = float(P)
        left -= P * len(over)
        free -= over
    counts = [min(max(math.floor(x), 1), P) for x in ideal]
    # Round to the exact total: add to the largest remainders, or take from the largest counts.
    order = sorted(range(T), key=lambda t: (-(ideal[t] - math.floor(ideal[t])), t))
    while sum(counts) < total:
        t = next(t for t in order if counts[t] < P)
        counts[t] += 1
        order.remove(t)
        order.append(t)
    while sum(counts) > total:
        t = max((t for t in range(T) if counts[t] > 1), key=lambda t: (counts[t] - ideal[t], -t))
        counts[t] -= 1
    return counts


def split_ratios(ratio: float, num_frames: int, tokens_per_frame: int, weights: Sequence[float]) -> list[float]:
    """Per-frame ratios [T] whose ``int(r * P)`` gives :func:`split_counts` exactly (for ``gazing_ratio``)."""
    return [(k + 0.5) / tokens_per_frame for k in split_counts(ratio, num_frames, tokens_per_frame, weights)]
