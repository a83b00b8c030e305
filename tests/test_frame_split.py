"""Per-frame budgets from frame weights (evaluation/frame_split.py): hand-computed splits and the
properties every split keeps. That the models receive these counts is tested in test_evaluate.py."""
from __future__ import annotations

import itertools

import pytest

from autogaze.evaluation.frame_split import frame_weights, split_counts, split_ratios


def test_hand_computed_splits():
    # 0.2 x 8 x 20 = 32 gazes; weights 10:3 -> 32 * 10/31 = 10.3 and 3.1: floors 10 + 7 x 3 = 31, the
    # last gaze goes to the largest remainder (frame 0's 0.32)
    assert split_counts(0.2, 8, 20, (10, 3)) == [11, 3, 3, 3, 3, 3, 3, 3]
    assert split_counts(0.2, 8, 20, (1,)) == [4] * 8                       # equal weights: the uniform split
    # frame 0 would get 0.5 x 4 x 4 x 100/103 = 7.8 > P = 4: it keeps 4, the other 4 gazes go 2:1:1
    assert split_counts(0.5, 4, 4, (100, 1)) == [4, 2, 1, 1]
    assert split_counts(0.01, 4, 20, (10, 3)) == [1, 1, 1, 1]              # at least one gaze per frame
    assert split_counts(1.0, 3, 5, (10, 3)) == [5, 5, 5]


def test_counts_sum_to_the_clip_budget_within_bounds():
    grid = itertools.product((0.03, 0.1, 0.25, 0.6, 0.9), (1, 3, 8), (4, 20, 84),
                             ((10, 3), (1,), (1, 2, 3), (5, 1, 1, 9)))
    for ratio, T, P, w in grid:
        case = f"ratio={ratio} T={T} P={P} w={w}"
        counts = split_counts(ratio, T, P, w)
        assert len(counts) == T and all(1 <= k <= P for k in counts), case
        assert sum(counts) == min(max(round(ratio * T * P), T), T * P), case
        # more weight never gets fewer gazes, unless capped at P
        ws = frame_weights(w, T)
        for a, b in itertools.permutations(range(T), 2):
            if ws[a] > ws[b] and counts[b] < P:
                assert counts[a] >= counts[b], case
        assert [int(r * P) for r in split_ratios(ratio, T, P, w)] == counts, case   # as ratios_to_budget rounds


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="all > 0"):
        frame_weights((10, 0), 4)
    with pytest.raises(ValueError, match="at least one"):
        frame_weights((), 4)
