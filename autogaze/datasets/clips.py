"""Cut arbitrary videos into a VideoFolder layout (``train/`` + ``val/`` of short square clips).

Used by the demo's ``--data-root`` for a plain folder of videos; also handy for preparing your own
data. Frames are resized with the same uint8 antialiased resize as training and centre-cropped.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from autogaze.datasets.synthetic import write_mp4
from autogaze.datasets.transforms import VideoTransform, center_square

log = logging.getLogger("autogaze.data")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def cut_into_clips(src: Path, out: Path, clip_len: int, size: int, max_clips: int, val_every: int = 8) -> tuple[int, int]:
    """Every video under ``src`` -> consecutive ``clip_len``-frame clips, ``size`` x ``size``.

    Every ``val_every``-th clip goes to ``out/val`` (at least one), the rest to ``out/train``;
    at most ``max_clips`` clips. Returns (train clips, val clips).
    """
    from autogaze.inference.video_io import iter_frames

    videos = sorted(p for p in Path(src).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FileNotFoundError(f"{src}: no train/ + val/ folders and no videos ({', '.join(VIDEO_SUFFIXES)})")
    resize = VideoTransform(shortest_edge=size).resize
    clips = []
    for path in videos:
        frames = list(iter_frames(path, max_frames=max_clips * clip_len))
        for i in range(0, len(frames) - clip_len + 1, clip_len):
            x = torch.from_numpy(np.stack(frames[i:i + clip_len])).permute(0, 3, 1, 2)  # [T, 3, H, W]
            clips.append(center_square(resize(x.contiguous())).permute(0, 2, 3, 1).numpy())
    clips = clips[:max_clips]
    if len(clips) < 2:
        raise ValueError(f"{src}: {len(clips)} clip(s) of {clip_len} frames; need at least 2")
    val = set(range(val_every - 1, len(clips), val_every)) or {len(clips) - 1}
    for i, frames in enumerate(clips):
        write_mp4(Path(out) / ("val" if i in val else "train") / f"clip_{i:05d}.mp4", frames)
    log.info("cut %d videos into %d train + %d val clips under %s", len(videos), len(clips) - len(val), len(val), out)
    return len(clips) - len(val), len(val)
