"""Clip decoding with decord (default) or PyAV, and upstream's frame-index rule.

Bad input never crashes a run and is never silently replaced: any failure to open or decode raises
:class:`BadVideo`, which the dataset turns into a skipped, counted item.

Decode-time resizing (``size=S``, off by default): the decoder's scaler (ffmpeg swscale) resizes
so the shortest edge is S while it converts to RGB. Decode + resize of a 16-frame 448-px clip is
about 1.4x faster with decord than decode + torch resize (benchmarks/data.py, shared 2-core box;
PyAV gains nothing), but it is NOT bit-identical with the fixture preprocessing (PIL-style
antialiased bilinear on uint8): on 448 -> 224 synthetic clips the pixels differ by 1.1-1.5 levels
on average and up to 16-22. Use it only where throughput matters more than parity with upstream.
"""
from __future__ import annotations

import os

import numpy as np
import torch

BACKENDS = ("decord", "pyav")


class BadVideo(Exception):
    """A video that cannot be used: zero bytes, corrupt, truncated, or too few decodable frames."""


def sample_indices(num_frames: int, clip_len: int, frame_sample_rate: int = 1, random_window: bool = False,
                   generator: torch.Generator | None = None) -> list[int]:
    """Frame indices of one clip (upstream's rule).

    ``converted = clip_len * frame_sample_rate``. A video with at most ``converted`` frames gives
    ``0 .. min(clip_len, n) - 1`` (the caller edge-pads). Otherwise the window is ``[0, converted)``
    or, with ``random_window``, ``[end - converted, end)`` with ``end`` uniform in ``[converted, n)``;
    indices are ``int(clip(linspace(start, end, clip_len), start, end - 1))``.
    """
    converted = clip_len * frame_sample_rate
    if num_frames <= converted:
        return list(range(min(clip_len, num_frames)))
    end = converted
    if random_window:
        end = int(torch.randint(converted, num_frames, (1,), generator=generator))
    start = end - converted
    return np.clip(np.linspace(start, end, clip_len), start, end - 1).astype(np.int64).tolist()


def scaled_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(h, w) with the shortest edge = ``shortest_edge``, the other rounded (and kept even, which
    yuv scalers need). Square frames map to (S, S)."""
    if height <= width:
        return shortest_edge, max(2, round(width * shortest_edge / height / 2) * 2)
    return max(2, round(height * shortest_edge / width / 2) * 2), shortest_edge


def _probe_hw(path: str) -> tuple[int, int]:
    """(height, width) from the container header, without decoding a frame."""
    import av

    with av.open(path) as container:
        cc = container.streams.video[0].codec_context
        return cc.height, cc.width


def _decord_frames(path: str, clip_len: int, rate: int, random_window: bool, generator,
                   size: int | None = None) -> np.ndarray:
    import decord

    kw = {}
    if size is not None:
        h, w = scaled_size(*_probe_hw(path), size)
        kw = {"height": h, "width": w}
    vr = decord.VideoReader(path, num_threads=1, **kw)  # opened per call: decord readers do not survive fork
    idx = sample_indices(len(vr), clip_len, rate, random_window, generator)
    if not idx:
        raise BadVideo("no frames")
    return vr.get_batch(idx).asnumpy()


def _pyav_frames(path: str, clip_len: int, rate: int, random_window: bool, generator,
                 size: int | None = None) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        kw = {}
        if size is not None:
            h, w = scaled_size(stream.codec_context.height, stream.codec_context.width, size)
            kw = {"height": h, "width": w}
        n = stream.frames
        if n <= 0:  # some containers do not store a count: decode everything once
            n = sum(1 for _ in container.decode(stream))
            container.seek(0)
        idx = sample_indices(n, clip_len, rate, random_window, generator)
        if not idx:
            raise BadVideo("no frames")
        return decode_indices(container, idx, **kw)


def decode_indices(container, indices: list[int], **to_ndarray_kw) -> np.ndarray:
    """Frames ``indices`` (sorted; repeats allowed) of an open PyAV container -> uint8 [len, H, W, 3] rgb24.

    Decodes the first video stream sequentially from where the container stands and stops after
    the last index (cheaper than seeking for short clips, and exact for any codec). Indices past a
    truncation point repeat the last decoded frame (upstream pads short results); no decodable
    frame at all is a :class:`BadVideo`. ``to_ndarray_kw``: ``height``/``width`` for a scaled decode.
    """
    stream = container.streams.video[0]
    wanted, out = set(indices), {}
    for i, frame in enumerate(container.decode(stream)):  # sequential decode up to the last index
        if i in wanted:
            out[i] = frame.to_ndarray(format="rgb24", **to_ndarray_kw)
        if i >= indices[-1]:
            break
    if not out:
        raise BadVideo("no decodable frames")
    last = out[max(out)]
    return np.stack([out.get(i, last) for i in indices])


def load_clip(path: str, clip_len: int, frame_sample_rate: int = 1, random_window: bool = False,
              generator: torch.Generator | None = None, backend: str = "decord", min_frames: int = 1,
              size: int | None = None) -> torch.Tensor:
    """Decode one clip -> uint8 [clip_len, 3, H, W].

    Videos shorter than ``clip_len`` are edge-padded by repeating the last frame (upstream); fewer
    than ``min_frames`` decodable frames is a :class:`BadVideo`. ``size``: resize at decode time so
    the shortest edge is ``size`` (faster, not bit-identical; see the module doc). None = full size.
    """
    if not os.path.isfile(path):
        raise BadVideo("file not found")
    if os.path.getsize(path) == 0:
        raise BadVideo("zero bytes")
    read = _decord_frames if backend == "decord" else _pyav_frames
    state = generator.get_state() if generator is not None else None
    try:
        try:
            frames = read(path, clip_len, frame_sample_rate, random_window, generator, size)
        except Exception:
            if backend != "decord" or size is None:
                raise
            # decord 0.6 fails on some small decode sizes (16, 24, 48, 72 px: "DECORDArrayCopyFromTo:
            # The size must exactly match"); PyAV's scaler handles them. Same window: rewind the RNG.
            if state is not None:
                generator.set_state(state)
            frames = _pyav_frames(path, clip_len, frame_sample_rate, random_window, generator, size)
    except BadVideo:
        raise
    except Exception as e:  # decord/PyAV raise many types for corrupt or truncated files
        raise BadVideo(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if frames.ndim != 4 or frames.shape[0] < min_frames:
        raise BadVideo(f"only {0 if frames.ndim != 4 else frames.shape[0]} decodable frames (< {min_frames})")
    if frames.shape[0] < clip_len:
        pad = np.repeat(frames[-1:], clip_len - frames.shape[0], axis=0)
        frames = np.concatenate([frames, pad])
    return torch.from_numpy(np.ascontiguousarray(frames[:clip_len])).permute(0, 3, 1, 2).contiguous()
