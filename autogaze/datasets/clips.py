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


def cut_into_clips(src: Path, out: Path, clip_len: int, size: int, max_clips: int, val_every: int = 8, *,
                   frame_stride: int = 1, max_per_video: int | None = None) -> tuple[int, int]:
    """Every video under ``src`` -> consecutive ``clip_len``-frame clips, ``size`` x ``size``.

    Clips take every ``frame_stride``-th frame; at most ``max_per_video`` clips per video and
    ``max_clips`` in all. Every ``val_every``-th clip goes to ``out/val`` (at least one; 1 = all),
    the rest to ``out/train``. Returns (train clips, val clips).
    """
    from autogaze.inference.video_io import iter_frames

    videos = sorted(p for p in Path(src).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise FileNotFoundError(f"{src}: no train/ + val/ folders and no videos ({', '.join(VIDEO_SUFFIXES)})")
    resize = VideoTransform(shortest_edge=size).resize
    clips = []
    for path in videos:
        cap = max_clips if max_per_video is None else min(max_clips, max_per_video)
        frames = list(iter_frames(path, max_frames=cap * clip_len * frame_stride))[::frame_stride]
        for i in range(0, min(len(frames) - clip_len + 1, cap * clip_len), clip_len):
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


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m autogaze.datasets.clips", description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="a folder of videos (searched recursively)")
    p.add_argument("out", type=Path, help="gets train/ and val/")
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--max-clips", type=int, default=10_000)
    p.add_argument("--max-per-video", type=int)
    p.add_argument("--frame-stride", type=int, default=1)
    p.add_argument("--val-every", type=int, default=8, help="every N-th clip goes to val/ (1: all)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n_train, n_val = cut_into_clips(a.src, a.out, a.clip_len, a.size, a.max_clips, a.val_every,
                                    frame_stride=a.frame_stride, max_per_video=a.max_per_video)
    print(f"wrote {n_train} train + {n_val} val clips to {a.out}")


if __name__ == "__main__":
    main()
