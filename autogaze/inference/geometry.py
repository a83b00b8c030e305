"""From original frames to the gaze model's square input, and gaze boxes back (the resize rule).

The gaze model sees square frames of side S: S = 224 (its largest scale), or max(target_scales)
in any-resolution mode (e.g. 392; the model then tiles that square itself).
A video of any H x W is brought to S x S by one of two documented rules:

* ``crop`` (default): resize the shortest edge to S (bilinear, antialiased; the long edge becomes
  ``int(S * long / short)``, exactly the processor's rule), then centre-crop
  S x S (top = (h' - S) // 2, left = (w' - S) // 2). Aspect ratio is kept; for a non-square video
  the ends of the long side are not gazed (every box lies inside the central square).
* ``squash``: resize straight to S x S. The whole frame is gazed; shapes are stretched.

Boxes map back by undoing the crop, then the resize, per axis:
    x_orig = (x_model + left) * W / w',   y_orig = (y_model + top) * H / h'
and are clipped to [0, W] x [0, H].
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from autogaze.datasets.transforms import resize_frames, shortest_edge_size
from autogaze.models.autogaze import AutoGazeImageProcessor

RESIZE_MODES = ("crop", "squash")


@dataclass(frozen=True)
class FrameGeometry:
    """height/width: original frame; side: S; resized_h/resized_w: frame after the resize (h', w');
    top/left: crop offset inside the resized frame (0 for squash)."""

    height: int
    width: int
    side: int
    mode: str
    resized_h: int
    resized_w: int
    top: int
    left: int

    @classmethod
    def make(cls, height: int, width: int, side: int, mode: str = "crop") -> "FrameGeometry":
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")
        if mode == "squash":
            return cls(height, width, side, mode, side, side, 0, 0)
        # The processor's own size rule (its _resize), and the arithmetic of its _center_crop.
        rh, rw = shortest_edge_size(height, width, side, long_edge=int)
        return cls(height, width, side, mode, rh, rw, (rh - side) // 2, (rw - side) // 2)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """boxes [K, 4] (x0, y0, x1, y1) in model-input pixels -> float32 [K, 4] in original pixels."""
        sx, sy = self.width / self.resized_w, self.height / self.resized_h
        out = (np.asarray(boxes, np.float64) + [self.left, self.top, self.left, self.top]) * [sx, sy, sx, sy]
        return np.clip(out, 0, [self.width, self.height, self.width, self.height]).astype(np.float32)

    def as_dict(self) -> dict:
        return dict(mode=self.mode, side=self.side, resized=[self.resized_h, self.resized_w],
                    crop_top_left=[self.top, self.left], original=[self.height, self.width])


class FramePreparer:
    """uint8 frames [T, H, W, 3] -> normalised model input [T, 3, S, S] under a FrameGeometry.

    The processor (from the checkpoint) does resize, crop and normalisation, so inference sees
    exactly what ``AutoGazeImageProcessor`` gives; only its size/crop settings are overridden here.
    """

    def __init__(self, geometry: FrameGeometry, processor: AutoGazeImageProcessor | None = None):
        self.geometry = geometry
        proc = copy.deepcopy(processor) if processor is not None else AutoGazeImageProcessor()
        S = geometry.side
        proc.do_resize = geometry.mode == "crop"  # squash resizes itself (the processor keeps aspect)
        proc.size = {"shortest_edge": S}
        proc.do_center_crop = geometry.mode == "crop"
        proc.crop_size = {"height": S, "width": S}
        self.processor = proc

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
        S = self.geometry.side
        if self.geometry.mode == "squash" and video.shape[-2:] != (S, S):
            # uint8 in, uint8 out, the processor's own resize (rounds like PIL).
            video = resize_frames(video, (S, S))
        x = self.processor.preprocess_video(video)  # [T, 3, S, S] float32
        if tuple(x.shape[-2:]) != (S, S):
            raise AssertionError(f"processor gave {tuple(x.shape)}, expected side {S} (geometry {self.geometry})")
        return x
