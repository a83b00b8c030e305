"""`AutoGazeImageProcessor`: Vivit-style per-frame pre-processing in torch.

Order: shortest-edge resize (bilinear, antialiased, in uint8 so it rounds like PIL), optional centre
crop, ``x * rescale_factor - 1`` (offset), then ImageNet mean/std on the [-1, 1] values (unusual,
but the released weights expect it). Reads and writes upstream's preprocessor_config.json keys.
The resize and the normalisation are the training pipeline's (``autogaze.datasets.transforms``),
so the model sees the same pixels at inference as in training; what stays here is the
transformers-facing part: input parsing, the long-edge truncation rule, bicubic, the centre crop.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from autogaze.datasets.transforms import VideoTransform, resize_frames, shortest_edge_size
from autogaze.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, VIVIT_RESCALE

_MODES = {2: "bilinear", 3: "bicubic"}  # PIL resample codes -> torch modes


def _to_videos(videos: Any) -> list[torch.Tensor]:
    """Frames / a video / a batch (numpy, torch, PIL, nested lists) -> list of [T, 3, H, W] tensors."""
    if isinstance(videos, (list, tuple)):
        items = [_as_tensor(v) if not isinstance(v, (list, tuple)) else v for v in videos]
        if all(isinstance(v, torch.Tensor) and v.dim() == 3 for v in items):  # one video as a list of frames
            return [_channels_first(torch.stack(items))]
        return [vid for v in videos for vid in _to_videos(v)]
    t = _as_tensor(videos)
    if t.dim() == 3:
        return [_channels_first(t[None])]
    if t.dim() == 4:
        return [_channels_first(t)]
    if t.dim() == 5:
        return [_channels_first(v) for v in t]
    raise ValueError(f"expected frames [H, W, 3] / video [T, H, W, 3] / batch [B, T, H, W, 3], got {tuple(t.shape)}")


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))


def _channels_first(v: torch.Tensor) -> torch.Tensor:
    """[T, H, W, 3] or [T, 3, H, W] -> [T, 3, H, W]."""
    return v.permute(0, 3, 1, 2) if v.shape[-1] in (1, 3) and v.shape[1] not in (1, 3) else v


class AutoGazeImageProcessor(BaseImageProcessor):
    """Returns ``pixel_values`` [B, T, 3, H, W] float32 (B = 1 for a single video)."""

    model_input_names = ["pixel_values"]

    def __init__(self, do_resize: bool = True, size: dict | None = None, resample: int = 2,
                 do_center_crop: bool = False, crop_size: dict | None = None, do_rescale: bool = True,
                 rescale_factor: float = VIVIT_RESCALE, offset: bool = True, do_normalize: bool = True,
                 image_mean: list[float] | None = None, image_std: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.do_resize = do_resize
        self.size = size or {"shortest_edge": 256}  # class default; the released config says 224
        self.resample = resample
        self.do_center_crop = do_center_crop
        self.crop_size = crop_size or {"height": 224, "width": 224}
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.offset = offset
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean or IMAGENET_MEAN)
        self.image_std = list(image_std or IMAGENET_STD)
        if offset and not do_rescale:
            raise ValueError("offset=True requires do_rescale=True (the offset maps rescaled [0, 2] to [-1, 1])")

    @classmethod
    def from_hydra(cls, model_cfg: Any) -> "AutoGazeImageProcessor":
        """From the Hydra ``model`` group (its ``preprocessing`` sub-dict) or that sub-dict itself."""
        try:
            from omegaconf import OmegaConf
            model_cfg = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else model_cfg
        except ImportError:
            pass
        cfg = dict(model_cfg.get("preprocessing", model_cfg))
        return cls(**cfg)

    def _resize(self, v: torch.Tensor) -> torch.Tensor:
        """[T, 3, H, W] -> shortest edge = size['shortest_edge'], long edge int(S * long / short)
        (transformers' truncation). uint8 stays uint8; anything else is resized in float32."""
        out = shortest_edge_size(*v.shape[-2:], self.size["shortest_edge"], long_edge=int)
        return resize_frames(v if v.dtype == torch.uint8 else v.float(), out, _MODES.get(self.resample, "bilinear"))

    def _center_crop(self, v: torch.Tensor) -> torch.Tensor:
        ch, cw = self.crop_size["height"], self.crop_size["width"]
        H, W = v.shape[-2:]
        top, left = max((H - ch) // 2, 0), max((W - cw) // 2, 0)
        return v[..., top:top + ch, left:left + cw]

    def preprocess_video(self, video: torch.Tensor) -> torch.Tensor:
        """video [T, 3, H, W] (uint8 0-255 or float 0-255) -> float32 [T, 3, H', W']."""
        if self.do_resize:
            video = self._resize(video)
        if self.do_center_crop:
            video = self._center_crop(video)
        return self._normalization().normalize(video if video.dtype == torch.uint8 else video.float())

    def _normalization(self) -> VideoTransform:
        """This processor's rescale / offset / mean / std as the pipeline's transform. Built per call
        because callers edit the attributes after construction (autogaze/inference)."""
        return VideoTransform(do_resize=False, do_rescale=self.do_rescale, rescale_factor=float(self.rescale_factor),
                              offset=self.offset, do_normalize=self.do_normalize,
                              image_mean=tuple(float(m) for m in self.image_mean),
                              image_std=tuple(float(m) for m in self.image_std))

    def preprocess(self, videos: Any, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """videos: frames, one video or a batch -> BatchFeature({'pixel_values': [B, T, 3, H, W]})."""
        out = torch.stack([self.preprocess_video(v) for v in _to_videos(videos)])
        data = {"pixel_values": out if return_tensors in (None, "pt") else out.numpy()}
        return BatchFeature(data=data, tensor_type=None)
