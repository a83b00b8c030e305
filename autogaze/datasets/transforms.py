"""Frame preprocessing (spec section 3), random-resized-crop and the inverse transform, in torch.

``VideoTransform`` reproduces upstream's image-processor pipeline bit for bit (max error 1e-6 on the
fixture): resize the shortest edge with antialiased bilinear interpolation *on uint8* (what PIL does,
including its rounding to uint8), then ``x * rescale_factor - 1`` ("offset") and ImageNet mean/std.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class VideoTransform:
    """uint8 frames -> normalised float frames. Keys follow the model's ``preprocessing`` block."""

    shortest_edge: int = 224
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 127.5
    offset: bool = True                 # x * rescale_factor - 1: [0, 255] -> [-1, 1]
    do_normalize: bool = True
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    do_center_crop: bool = False        # accepted for compatibility; frames are made square earlier

    @classmethod
    def from_preprocessing(cls, cfg: dict, size: int | None = None) -> "VideoTransform":
        """From the Hydra ``model.preprocessing`` dict; ``size`` overrides ``size.shortest_edge``."""
        cfg = dict(cfg or {})
        edge = size if size is not None else (cfg.pop("size", None) or {}).get("shortest_edge", 224)
        cfg.pop("size", None)
        cfg.pop("resample", None)
        cfg.pop("crop_size", None)
        for k in ("image_mean", "image_std"):
            if k in cfg:
                cfg[k] = tuple(float(v) for v in cfg[k])
        return cls(shortest_edge=int(edge), **cfg)

    def resize(self, frames: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """uint8 [T, 3, H, W] -> uint8 [T, 3, H', W'] (shortest edge = ``shortest_edge``, or ``size``)."""
        if size is None:
            H, W = frames.shape[-2:]
            s = self.shortest_edge
            size = (s, max(1, round(W * s / H))) if H <= W else (max(1, round(H * s / W)), s)
        if tuple(frames.shape[-2:]) == tuple(size):
            return frames
        return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)

    def normalize(self, frames: Tensor) -> Tensor:
        """uint8 (or float in [0, 255]) [T, 3, H, W] -> float32 [T, 3, H, W]."""
        x = frames.float()
        if self.do_rescale:
            x = x * self.rescale_factor - (1.0 if self.offset else 0.0)
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=x.dtype)[:, None, None]
            std = torch.tensor(self.image_std, dtype=x.dtype)[:, None, None]
            x = (x - mean) / std
        return x

    def __call__(self, frames: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """uint8 [T, 3, H, W] -> float32 [T, 3, S, S'] (see class doc)."""
        if self.do_resize:
            frames = self.resize(frames, size)
        return self.normalize(frames)

    def inverse(self, x: Tensor) -> Tensor:
        """Normalised float [..., 3, H, W] -> displayable [0, 1] (spec section 3.3)."""
        mean = torch.tensor(self.image_mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.image_std, dtype=x.dtype, device=x.device)[:, None, None]
        y = x * std + mean if self.do_normalize else x
        if self.do_rescale:
            y = (y + (1.0 if self.offset else 0.0)) / (self.rescale_factor * 255)
        return y.clamp(0, 1)


def center_square(frames: Tensor) -> Tensor:
    """uint8 [T, 3, H, W] -> [T, 3, S, S] with S = min(H, W), centre crop.

    The documented rule for non-square or odd-sized videos: the task needs square frames and the
    released data is square, so the largest centred square is kept (never stretched).
    """
    H, W = frames.shape[-2:]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    return frames[..., top:top + s, left:left + s]


@dataclass
class RandomResizedCrop:
    """One crop box per clip (shared by all frames and by both videos), as torchvision's algorithm.

    Area share ~ U(scale), log aspect ratio ~ U(log ratio); 10 tries, then a centre crop.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 4 / 3)
    attempts: int = field(default=10, repr=False)

    def box(self, H: int, W: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) drawn from ``generator``."""
        area = H * W
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.attempts):
            u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
            target = area * (self.scale[0] + u[0] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_r[0] + u[1] * (log_r[1] - log_r[0]))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= W and 0 < h <= H:
                return int(u[2] * (H - h + 1)), int(u[3] * (W - w + 1)), h, w
        # Fallback: centre crop with the aspect clamped into range.
        in_ratio = W / H
        if in_ratio < self.ratio[0]:
            w, h = W, round(W / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h, w = H, round(H * self.ratio[1])
        else:
            h, w = H, W
        return (H - h) // 2, (W - w) // 2, h, w

    def __call__(self, frames: Tensor, generator: torch.Generator) -> Tensor:
        """uint8 [T, 3, H, W] -> the cropped uint8 frames (resizing is the transform's job)."""
        top, left, h, w = self.box(*frames.shape[-2:], generator)
        return frames[..., top:top + h, left:left + w]
