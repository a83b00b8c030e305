"""The multi-scale patch vocabulary.

A frame is seen at several scales s (ascending); each scale is cut into (s // patch)^2 row-major
patches. Tokens are laid out scale after scale, so for 32+64+112+224 and patch 16:

    scale 32: ids 0-3 (2x2) | 64: 4-19 (4x4) | 112: 20-68 (7x7) | 224: 69-264 (14x14)

Global id across a clip = t * P + local id (P = 265). The gaze model never looks at pixels through
this class; it is the contract with downstream ViTs (masks, pixel boxes, any-resolution stitching).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenSpace:
    """scales: ascending ints (pixels of the resized frame); patch: pixels per patch side."""

    scales: tuple[int, ...]
    patch: int = 16

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(sorted(int(s) for s in self.scales)))

    @property
    def grid_sides(self) -> list[int]:
        """Patches per side at each scale, (s // patch)."""
        return [s // self.patch for s in self.scales]

    @property
    def counts(self) -> list[int]:
        """Patches per scale, (s // patch)^2: [4, 16, 49, 196] for 32+64+112+224."""
        return [g * g for g in self.grid_sides]

    @property
    def offsets(self) -> list[int]:
        """First local id of each scale: [0, 4, 20, 69]."""
        out, acc = [], 0
        for n in self.counts:
            out.append(acc)
            acc += n
        return out

    @property
    def tokens_per_frame(self) -> int:
        return sum(self.counts)

    def split_mask(self, mask: Tensor) -> list[Tensor]:
        """[B, T, P] -> list over scales of [B, T, n_s] (upstream's ``gazing_mask``)."""
        return list(mask.split(self.counts, dim=-1))

    def scale_of(self, local_ids: Tensor) -> Tensor:
        """LongTensor [...] local ids -> index of their scale [...]."""
        bounds = torch.tensor(self.offsets[1:], device=local_ids.device)
        return torch.bucketize(local_ids, bounds, right=True)

    def pixel_boxes(self, local_ids: Tensor, frame_size: int | None = None) -> Tensor:
        """Local ids [...] -> float boxes [..., 4] (x0, y0, x1, y1) in pixels of a square frame.

        frame_size defaults to the largest scale; a patch at scale s covers frame_size / (s/patch) px.
        """
        frame_size = frame_size or self.scales[-1]
        k = self.scale_of(local_ids)
        offsets = torch.tensor(self.offsets, device=local_ids.device)[k]
        sides = torch.tensor(self.grid_sides, device=local_ids.device)[k]
        rel = local_ids - offsets
        row, col = rel // sides, rel % sides
        cell = frame_size / sides.to(torch.float64)
        box = torch.stack([col * cell, row * cell, (col + 1) * cell, (row + 1) * cell], dim=-1)
        return box.float()
