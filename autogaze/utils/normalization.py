"""Pixel normalisations: the constants and the one inverse that the tasks and displays share.

The gaze model and the VideoMAE tasks take Vivit-style inputs, ``x = (p / 127.5 - 1 - mean) / std``
for pixels p in [0, 255] with ImageNet's mean and std (the rescale to [-1, 1] before ImageNet
statistics is upstream's unusual choice, kept for weight compatibility). The forward direction
lives in ``datasets.transforms.VideoTransform`` (bit-exact lookup tables); this module holds the
numbers and the inverse.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNIT_MEAN = (0.5, 0.5, 0.5)  # SigLIP: [0, 1] pixels to [-1, 1]
UNIT_STD = (0.5, 0.5, 0.5)
VIVIT_RESCALE = 1 / 127.5


@dataclass(frozen=True)
class PixelNormalization:
    """``x = (p * rescale - offset - mean) / std`` for pixels p in [0, 255] (offset = 1 or 0)."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    rescale: float = VIVIT_RESCALE
    offset: bool = True

    def to_unit(self, x: Tensor) -> Tensor:
        """Normalised [..., 3, H, W] -> p / 255, in about [0, 1]. Not clamped: a prediction may
        leave the range, and its gradient (or a target's exact preimage) must not be cut."""
        mean = x.new_tensor(self.mean)[:, None, None]
        std = x.new_tensor(self.std)[:, None, None]
        return (x * std + mean + (1.0 if self.offset else 0.0)) / (self.rescale * 255)


#: The task (and gaze-model) input of AutoGaze.
VIVIT = PixelNormalization()
