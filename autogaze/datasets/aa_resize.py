"""torch's uint8 antialiased bilinear resize, re-done in integer tensor ops that run on any device.

``F.interpolate(uint8, mode="bilinear", antialias=True)`` (what ``VideoTransform.resize`` calls, and
what reproduces PIL) exists only on CPU. On CUDA there is only the float kernel, which does not
round like PIL. This module does torch's CPU arithmetic with ordinary tensor ops instead:

1. Weights per output pixel: the triangle filter stretched by the scale, computed in float64 as
   torch does, then made integers with ``precision`` fractional bits (the largest that keeps the
   biggest weight below 2**15). This table is built on the CPU with numpy. Every elementwise float64
   op below is the same IEEE op as torch's C++, done in the same order.
2. Each pass is ``clamp((2**(p-1) + sum_k w_k * x[idx_k]) >> p, 0, 255)`` in int32. That is exact
   integer arithmetic, so a CUDA result equals the CPU one. The columns are done first, then the
   rows, with a uint8 rounding in between, as torch does. A dimension whose size does not change
   is copied as is.

``tests/test_device_transform.py`` checks the result against ``F.interpolate`` bit for bit,
downscaling and upscaling, on square and odd sizes. Each clip gets its own table. Its crop box
offset is already added to the source indices, so clips of one batch may have different boxes (the
random-resized crop) and still go through one set of kernels.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

#: An unchanged dimension is a 1-tap pass with weight 1.0 at this precision: (x * 2**14 + 2**13) >> 14 == x.
_IDENTITY_PRECISION = 14


@functools.lru_cache(maxsize=4096)
def taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(idx int64 [out, K], weights int32 [out, K], precision) for resizing ``in_size`` -> ``out_size``.

    idx holds the source positions. Unused taps point at the first one and have weight 0.
    """
    if in_size == out_size:
        return (np.arange(out_size, dtype=np.int64)[:, None],
                np.full((out_size, 1), 1 << _IDENTITY_PRECISION, dtype=np.int32), _IDENTITY_PRECISION)
    scale = in_size / out_size                             # area_pixel_compute_scale, align_corners=False
    support = scale if scale >= 1.0 else 1.0               # bilinear: interp_size 2 * 0.5, stretched when shrinking
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    K = int(math.ceil(support)) * 2 + 1
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)           # C++ cast: toward zero
    xsize = np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin
    j = np.arange(K, dtype=np.int64)[None, :]
    x = np.abs(((j + xmin[:, None]) - center[:, None] + 0.5) * invscale)
    w = np.where((x < 1.0) & (j < xsize[:, None]), 1.0 - x, 0.0)
    total = np.zeros(out_size)
    for k in range(K):                                      # sequential, as the C++ loop (numpy's sum is pairwise)
        total = total + w[:, k]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    w_max = float(w.max())
    precision = 0
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = w * float(1 << precision)
    iw = np.where(w < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int32)
    idx = np.where(j < xsize[:, None], j + xmin[:, None], xmin[:, None])      # unused taps: weight 0
    return idx.astype(np.int64), iw, precision


@dataclass
class ResizeTables:
    """The per-clip tables that resize crop boxes of a batch to one output size (H_o, W_o).

    row_idx: LongTensor [B, H_o, Kh]  source rows (the box top added); row_w: IntTensor [B, H_o, Kh]
    col_idx: LongTensor [B, W_o, Kw]  source columns (the box left added); col_w: IntTensor [B, W_o, Kw]
    row_shift / col_shift: IntTensor [B]  the precision of each clip's weights.
    """

    row_idx: Tensor
    row_w: Tensor
    row_shift: Tensor
    col_idx: Tensor
    col_w: Tensor
    col_shift: Tensor

    @classmethod
    def build(cls, boxes: list[tuple[int, int, int, int]], out_hw: tuple[int, int]) -> "ResizeTables":
        """boxes: (top, left, height, width) per clip, in the clip's frame."""
        rows = [_offset(taps(h, out_hw[0]), top) for top, _, h, _ in boxes]
        cols = [_offset(taps(w, out_hw[1]), left) for _, left, _, w in boxes]
        return cls(*_stack(rows), *_stack(cols))

    def _apply(self, fn) -> "ResizeTables":
        return ResizeTables(*(fn(getattr(self, f.name)) for f in fields(self)))

    def to(self, device, non_blocking: bool = False) -> "ResizeTables":
        return self._apply(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "ResizeTables":
        return self._apply(lambda t: t.pin_memory())


def _offset(table: tuple[np.ndarray, np.ndarray, int], start: int) -> tuple[np.ndarray, np.ndarray, int]:
    idx, w, p = table
    return idx + start, w, p


def _stack(tables: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pad every clip's taps to the batch's widest K (weight 0 at a valid index) and stack them."""
    K = max(w.shape[1] for _, w, _ in tables)
    idx = np.stack([np.pad(i, ((0, 0), (0, K - i.shape[1])), mode="edge") for i, _, _ in tables])
    w = np.stack([np.pad(w, ((0, 0), (0, K - w.shape[1]))) for _, w, _ in tables])
    shift = np.array([p for _, _, p in tables], dtype=np.int32)
    return torch.from_numpy(idx), torch.from_numpy(w), torch.from_numpy(shift)


def _pass(x: Tensor, idx: Tensor, w: Tensor, shift: Tensor) -> Tensor:
    """One separable pass along dim 2 of ``x`` uint8 [b, R, L, S] -> uint8 [b, R, O, S].

    idx / w: [b, O, K]; shift: [b]. The int32 sum cannot overflow: 255 * 2**22 * (1 + rounding) < 2**31.
    """
    b, R, _, S = x.shape
    O = idx.shape[1]
    shift = shift.view(b, 1, 1, 1)
    acc = torch.ones((b, R, O, S), dtype=torch.int32, device=x.device).bitwise_left_shift_(shift - 1)
    for k in range(idx.shape[2]):
        rows = torch.gather(x, 2, idx[:, None, :, k, None].expand(b, R, O, S))   # [b, R, O, S] uint8
        acc += rows.int().mul_(w[:, None, :, k, None])
    return acc.bitwise_right_shift_(shift).clamp_(0, 255).to(torch.uint8)


def resize_boxes(frames: Tensor, tables: ResizeTables, chunk_frames: int = 256) -> Tensor:
    """Crop each clip to its box and resize it: uint8 [B, T, C, H, W] -> uint8 [B, T, C, H_o, W_o].

    Bit-identical to ``F.interpolate(clip[..., box], (H_o, W_o), mode="bilinear", antialias=True)``
    per clip. Runs on ``frames.device`` (the tables must be there too). Clips are processed in
    chunks of at most ``chunk_frames`` frames, which bounds the int32 temporaries (about 0.7 GB for
    256 frames of 448 -> 224).
    """
    B, T, C, H, W = frames.shape
    H_o, W_o = tables.row_idx.shape[1], tables.col_idx.shape[1]
    if B == 0:
        return frames.new_empty((0, T, C, H_o, W_o))
    step = max(1, chunk_frames // max(T, 1))
    out = []
    for s in range(0, B, step):
        e = min(B, s + step)
        x = frames[s:e].reshape(e - s, T * C * H, W, 1)                        # columns first, as torch
        x = _pass(x, tables.col_idx[s:e], tables.col_w[s:e], tables.col_shift[s:e])
        x = x.view(e - s, T * C, H, W_o)                                       # then rows
        x = _pass(x, tables.row_idx[s:e], tables.row_w[s:e], tables.row_shift[s:e])
        out.append(x.view(e - s, T, C, H_o, W_o))
    return out[0] if len(out) == 1 else torch.cat(out)
