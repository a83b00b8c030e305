"""Sequential whole-video decoding for inference (PyAV), with errors a user can act on.

The training datasets sample 16-frame clips; inference needs every frame of a video of any length,
in order, without holding the whole video in memory. So frames are yielded one at a time (or in
chunks) straight from the demuxer. Every failure becomes a ``VideoError`` whose message names the
path and what is wrong; the CLI prints it without a traceback.

Not handled on purpose: rotation metadata (frames come out as stored) and variable frame sizes
(every frame is reformatted to the first frame's size).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np


class VideoError(Exception):
    """An input video that cannot be used: missing, a folder, not a video, or without frames."""


@dataclass(frozen=True)
class VideoInfo:
    """path; height/width of the decoded frames in pixels; fps (container's average rate, 25 when
    unknown); num_frames as the container reports it (None when it does not; the true count is the
    number of frames decoded)."""

    path: str
    height: int
    width: int
    fps: float
    num_frames: int | None


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise VideoError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoError(f"{path} is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"video {path} is not readable (permission denied)")


def _open(path: str):
    """-> (container, its first video stream); raises VideoError."""
    _check_path(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot read video {path}: not a video file FFmpeg understands ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"cannot read video {path}: the file has no video stream")
    return container, container.streams.video[0]


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the header and decode the first frame (proves the file decodes). Raises VideoError."""
    path = str(path)
    container, stream = _open(path)
    try:
        first = next(_decode(container, stream, path), None)
        # read the header fields while the container is open: PyAV >= 18.1.1 refuses them after close
        rate = stream.average_rate or stream.guessed_rate
        frames = int(stream.frames) or None
    finally:
        container.close()
    if first is None:
        raise VideoError(f"cannot read video {path}: it has no decodable frames")
    fps = float(rate) if rate else 25.0
    return VideoInfo(path, first.shape[0], first.shape[1], fps, frames)


def _decode(container, stream, path: str, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    stream.thread_type = "AUTO"  # frame threading: decoding is the CLI's bottleneck on long videos
    index = 0
    try:
        for frame in container.decode(stream):
            if size is None:
                size = (frame.height, frame.width)
            yield frame.to_ndarray(format="rgb24", height=size[0], width=size[1])  # [H, W, 3] uint8
            index += 1
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot read video {path}: decoding failed after {index} frames ({e})") from None


def iter_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 RGB frames [H, W, 3] in display order, at most ``max_frames``. Raises VideoError."""
    path = str(path)
    container, stream = _open(path)
    try:
        for i, frame in enumerate(_decode(container, stream, path)):
            if max_frames is not None and i >= max_frames:
                break
            yield frame
    finally:
        container.close()


def iter_chunks(path: str | os.PathLike, chunk_size: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 chunks [t, H, W, 3] of ``chunk_size`` consecutive frames; the last may be shorter."""
    buf: list[np.ndarray] = []
    for frame in iter_frames(path, max_frames):
        buf.append(frame)
        if len(buf) == chunk_size:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)
