"""Planted gaze labels: a known function of the video, for checking that NTP can imitate at all.

The greedy labeller's targets depend on a learned MAE and are hard to predict, so a poor imitation
score on them cannot tell "the labels are hard" from "data -> labels -> model -> loss is broken".
These labels are a simple function of the synthetic clips' object masks: in every frame, the
finest-scale patches that object ``object_id`` covers at least ``min_cover`` of, in row-major order
(at least one per frame: the most-covered patch). A working NTP pipeline must learn them almost
perfectly on held-out clips.

    python -m autogaze.labeling.planted --data-root data/synthetic --split train --scales 32+64 \\
        --clip-len 8 --out data/synthetic/planted_labels.json

The per-gaze ``task_losses`` are the share of the object's pixels still uncovered after each gaze:
a decreasing, predictable target for the task-loss head (not a reconstruction loss).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autogaze.datasets.labels import label_key, write_labels
from autogaze.datasets.synthetic import load_masks
from autogaze.labeling.greedy import ClipLabels
from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.utils.parsing import parse_scales


def patch_cover(mask: np.ndarray, grid: int) -> np.ndarray:
    """Bool mask [S, S] -> float [grid, grid]: share of each patch's pixels that are True."""
    S = mask.shape[0]
    if mask.shape != (S, S) or S % grid:
        raise ValueError(f"masks must be square with a side divisible by {grid}, got {mask.shape}")
    p = S // grid
    return mask.reshape(grid, p, grid, p).mean(axis=(1, 3))


def object_patch_labels(masks: np.ndarray, scales: tuple[int, ...], *, object_id: int = 1,
                        min_cover: float = 0.5) -> ClipLabels:
    """masks uint8 [T, S, S] (object ids, 0 = background) -> ClipLabels on the finest scale.

    Frame t's gazes: local ids ``offset + row * g + col`` (g = finest grid side) of the patches with
    cover >= ``min_cover``, row-major; the best-covered patch when none is (or the object is absent).
    """
    space = TokenSpace(tuple(scales))
    g, offset, P = space.grid_sides[-1], space.offsets[-1], space.tokens_per_frame
    pos, losses = [], []
    for t, frame in enumerate(masks):
        obj = frame == object_id
        cover = patch_cover(obj, g).ravel()  # [g*g] row-major
        picks = np.flatnonzero(cover >= min_cover)
        if picks.size == 0:
            picks = np.array([int(np.argmax(cover))])
        area = max(float(cover.sum()), 1e-9)
        left = 1.0 - np.cumsum(cover[picks]) / area
        pos.append([t * P + offset + int(i) for i in picks])
        losses.append([round(float(v), 6) for v in np.clip(left, 0.0, 1.0)])
    return ClipLabels(pos, losses)


def label_folder(split_dir: str | Path, scales: tuple[int, ...], clip_len: int, **kw) -> dict[str, dict]:
    """Planted labels of every ``*.mp4`` in ``split_dir`` that has masks: {label key: entry}."""
    out = {}
    for video in sorted(Path(split_dir).glob("*.mp4")):
        masks = load_masks(video)
        if masks.shape[0] < clip_len:
            raise ValueError(f"{video}: masks have {masks.shape[0]} frames, fewer than clip_len={clip_len}")
        out[label_key(video)] = object_patch_labels(masks[:clip_len], scales, **kw).to_json()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m autogaze.labeling.planted", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="a folder with train/ and val/ synthetic clips")
    p.add_argument("--split", default="train")
    p.add_argument("--scales", required=True, help="e.g. 32+64 (the model's scales; masks are at the largest)")
    p.add_argument("--clip-len", type=int, required=True)
    p.add_argument("--object-id", type=int, default=1)
    p.add_argument("--min-cover", type=float, default=0.5)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    scales = tuple(parse_scales("--scales", a.scales))
    labels = label_folder(Path(a.data_root) / a.split, scales, a.clip_len, object_id=a.object_id,
                          min_cover=a.min_cover)
    write_labels(a.out, labels)
    print(f"wrote planted labels of {len(labels)} clips to {a.out}")


if __name__ == "__main__":
    main()
