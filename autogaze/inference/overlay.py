"""Gaze-overlay video: gazed patches at full brightness, the rest dimmed, one outline colour per scale.

Drawn on the ORIGINAL frames with the boxes of ``FrameGazes`` (original pixels), so what you see is
where the gazes land in the input video. Coarse scales are drawn first, so the outlines of fine
patches stay visible on top. Written with PyAV as H.264 (libx264) when the FFmpeg build has it,
else MPEG-4 Part 2, in yuv420p; that format needs even sides, so an odd-sized video gets one black
row/column added at the bottom/right (the overlay is then 1 px larger than the input).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np

from autogaze.inference.result import FrameGazes

# RGB per scale index, coarsest first (32, 64, 112, 224 px for the released model); cycled if more.
SCALE_COLOURS = np.array([(255, 60, 60), (255, 190, 0), (60, 220, 90), (70, 160, 255)], np.uint8)


def scale_colour(k: int) -> np.ndarray:
    return SCALE_COLOURS[k % len(SCALE_COLOURS)]


def _int_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """float [k, 4] -> int [k, 4] covering every touched pixel (floor the start, ceil the end)."""
    b = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1).astype(np.int64)
    return np.clip(b, 0, [width, height, width, height])


def render_overlay(frame: np.ndarray, gazes: FrameGazes, dim: float = 0.3, thickness: int | None = None) -> np.ndarray:
    """frame uint8 [H, W, 3] -> uint8 [H, W, 3] with the gazes drawn (see module docstring)."""
    H, W = frame.shape[:2]
    th = thickness or max(1, round(min(H, W) / 224))  # ~1 px at 224, thicker on large videos
    is_bright = np.zeros((H, W), bool)
    boxes = _int_boxes(gazes.boxes, H, W)
    for x0, y0, x1, y1 in boxes:
        is_bright[y0:y1, x0:x1] = True
    out = np.where(is_bright[..., None], frame, (frame * dim).astype(np.uint8))
    for k in np.argsort(gazes.scale, kind="stable"):  # coarse first: fine outlines end on top
        x0, y0, x1, y1 = boxes[k]
        c = scale_colour(int(gazes.scale[k]))
        out[y0:min(y0 + th, y1), x0:x1] = c
        out[max(y1 - th, y0):y1, x0:x1] = c
        out[y0:y1, x0:min(x0 + th, x1)] = c
        out[y0:y1, max(x1 - th, x0):x1] = c
    return out


class OverlayWriter:
    """Streams overlay frames into an mp4. Use as a context manager, or call ``close()``.

    ``__call__(frames [t, H, W, 3], gazes)`` matches ``gaze_video``'s ``on_frames`` hook.
    """

    def __init__(self, path: str | Path, height: int, width: int, fps: float, dim: float = 0.3):
        self.path, self.height, self.width, self.dim = Path(path), height, width, dim
        self.out_h, self.out_w = height + height % 2, width + width % 2  # yuv420p needs even sides
        self.container = av.open(str(self.path), mode="w")
        rate = max(1, round(fps))  # encoders want a rational rate; players only need it approximately
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.out_w, self.out_h, "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        else:  # a fixed quantiser; mpeg4 ignores it as an option and would drift at its default bit rate
            self.stream.codec_context.qscale = 3
        self.num_written = 0

    def __call__(self, frames: np.ndarray, gazes: Sequence[FrameGazes]) -> None:
        for frame, fg in zip(frames, gazes):
            self.write(frame, fg)

    def write(self, frame: np.ndarray, gazes: FrameGazes) -> None:
        img = render_overlay(frame, gazes, self.dim)
        if img.shape[:2] != (self.out_h, self.out_w):
            img = np.pad(img, ((0, self.out_h - img.shape[0]), (0, self.out_w - img.shape[1]), (0, 0)))
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            self.container.mux(packet)
        self.num_written += 1

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():  # flush delayed frames
            self.container.mux(packet)
        self.container.close()
        self.container = None

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
