"""Upstream's QUICK_START helper names, so its inference snippet runs unchanged against this package.

    import av
    from autogaze.datasets.video_utils import read_video_pyav, sample_frame_indices, transform_video_for_pytorch

    container = av.open("clip.mp4")
    indices = sample_frame_indices(clip_len=16, frame_sample_rate=1, seg_len=container.streams.video[0].frames)
    video = read_video_pyav(container, indices)              # uint8 [16, H, W, 3]
    video = transform_video_for_pytorch(video, processor)    # float32 [1, 16, 3, 224, 224]

They are thin wrappers over the training data code (``autogaze.datasets.decode``): the same frame
index rule and the same sequential PyAV decode as ``VideoFolder``, so a clip read here is the clip
training would have read with ``random_sample_frame`` on.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
import torch

from autogaze.datasets.decode import decode_indices, sample_indices


def sample_frame_indices(clip_len: int, frame_sample_rate: int, seg_len: int, *,
                         random_window: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
    """Indices of ``clip_len`` frames, ``frame_sample_rate`` apart, in a video of ``seg_len`` frames.

    ``converted = clip_len * frame_sample_rate``. A longer video gets a window ``[end - converted, end)``
    with ``end`` uniform in ``[converted, seg_len)`` (from ``generator``, or torch's global RNG) and
    ``clip_len`` evenly spaced indices in it, clipped to ``end - 1``; ``random_window=False`` takes
    the first window. A video of at most ``converted`` frames gives ``0 .. min(clip_len, seg_len) - 1``,
    then repeats the last index up to ``clip_len`` (the edge padding training applies), where the
    transformers-docs version of this helper would fail on an empty random range.
    Returns int64 [clip_len], sorted (repeats only at the end).
    """
    for name, value in (("clip_len", clip_len), ("frame_sample_rate", frame_sample_rate), ("seg_len", seg_len)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    idx = sample_indices(int(seg_len), int(clip_len), int(frame_sample_rate), random_window, generator)
    idx += [idx[-1]] * (int(clip_len) - len(idx))
    return np.asarray(idx, dtype=np.int64)


def read_video_pyav(container: Any, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frames ``indices`` of an open PyAV container -> uint8 [len(indices), H, W, 3] (rgb24).

    Rewinds the container and decodes its first video stream in order, stopping after the last
    index, so nothing past the clip is decoded. ``indices`` must be sorted; a repeated index gives
    a repeated frame. Indices past the end of a truncated video repeat its last decoded frame; a
    video with no decodable frame raises ``autogaze.datasets.decode.BadVideo``.
    """
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        raise ValueError("indices is empty")
    if idx[0] < 0 or any(b < a for a, b in zip(idx, idx[1:])):
        raise ValueError(f"indices must be non-negative and sorted, got {idx}")
    container.seek(0)  # a container that was decoded or probed before starts again at frame 0
    return decode_indices(container, idx)


def transform_video_for_pytorch(video: np.ndarray | torch.Tensor, transform: Callable[..., Any]) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> the model's input [1, T, 3, H', W'] (float32).

    ``transform`` is an image processor called on the list of frames (``AutoGazeImageProcessor``:
    shortest-edge resize, ``x / 127.5 - 1``, ImageNet mean/std, channels first, no crop; any
    processor returning ``pixel_values`` for one video works). Every frame is processed the same
    way on its own, so the result is the frames stacked in time with a batch axis in front.
    """
    out = transform(list(video), return_tensors="pt")
    x = out["pixel_values"] if isinstance(out, Mapping) else out
    x = torch.as_tensor(x)
    if x.dim() == 4:  # a processor that returns [T, 3, H, W] for one video
        x = x[None]
    if x.dim() != 5 or x.shape[:3] != (1, len(video), 3):
        raise ValueError(f"transform returned {tuple(x.shape)} for {len(video)} frames; expected [1, T, 3, H, W]")
    return x.float()
