"""Any-resolution gazing via tiles (``target_scales`` / ``target_patch_size``).

A square frame of side max(target_scales) is padded (right/bottom, zeros) and cut into n x n tiles
of ``g * target_patch`` pixels, g = the model's finest grid side (14). Each tile is gazed on its own
(the encoder resizes it to 224), with the budget applied per tile. The per-scale tile masks are then
stitched into the target grids (target_scale // target_patch per side), cropped and flattened, and
gaze ids are rebuilt from the mask: gaze order is lost, ids come out ascending within each frame.
Tile layout in the batch: ``(b i j)`` with i the tile row and j the tile column, so group-major
batches stay group-major.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.types import Gazes


@dataclass(frozen=True)
class AnyResPlan:
    """model: the gaze model's token space; target: the downstream ViT's; n: tiles per side."""

    model: TokenSpace
    target: TokenSpace
    n: int

    @classmethod
    def make(cls, model: TokenSpace, frame_side: int, target_scales=None, target_patch_size=None) -> "AnyResPlan | None":
        """The plan, or None when the target space equals the model's (no adaptation, as upstream)."""
        if target_scales is None and target_patch_size is None:
            return None
        target = TokenSpace(tuple(target_scales or model.scales), int(target_patch_size or model.patch))
        if target.scales == model.scales and target.counts == model.counts:
            return None
        if len(target.scales) != len(model.scales):
            raise ValueError(f"target_scales={list(target.scales)} must have {len(model.scales)} scales like the "
                             f"gaze model ({list(model.scales)})")
        if frame_side != target.scales[-1]:
            raise ValueError(f"any-resolution input must be square with side max(target_scales)="
                             f"{target.scales[-1]}, got {frame_side}; resize it first")
        # Tile count from the largest scale only, as upstream.
        return cls(model, target, math.ceil(target.grid_sides[-1] / model.grid_sides[-1]))

    @property
    def tile_px(self) -> int:
        return self.model.grid_sides[-1] * self.target.patch

    def tile(self, video: Tensor) -> Tensor:
        """video [B, T, C, S, S] -> tiles [(B n n), T, C, tile_px, tile_px] (zero-padded right/bottom)."""
        B, T, C, H, W = video.shape
        side = self.n * self.tile_px
        video = F.pad(video, (0, side - W, 0, side - H))
        x = video.view(B, T, C, self.n, self.tile_px, self.n, self.tile_px)
        return x.permute(0, 3, 5, 1, 2, 4, 6).reshape(B * self.n * self.n, T, C, self.tile_px, self.tile_px)

    def stitch_mask(self, tile_mask: Tensor) -> Tensor:
        """tile_mask [(B n n), T, P_model] -> target mask [B, T, P_target]."""
        BNN, T, _ = tile_mask.shape
        B, n = BNN // (self.n * self.n), self.n
        out = []
        for m, g, tg in zip(self.model.split_mask(tile_mask), self.model.grid_sides, self.target.grid_sides):
            m = m.view(B, n, n, T, g, g).permute(0, 3, 1, 4, 2, 5).reshape(B, T, n * g, n * g)
            out.append(m[:, :, :tg, :tg].reshape(B, T, tg * tg))  # crop the zero padding away
        return torch.cat(out, dim=-1)

    def stitch(self, tile_gazes: Gazes) -> Gazes:
        """Gazes on tiles -> Gazes in the target token space (ascending ids per frame)."""
        return gazes_from_mask(self.stitch_mask(tile_gazes.to_mask()))


def gazes_from_mask(mask: Tensor) -> Gazes:
    """mask [B, T, P] (1 = gazed) -> Gazes with ids ascending within each frame, every frame padded to
    the batch maximum; padded slots hold un-gazed in-range ids of their own frame."""
    B, T, P = mask.shape
    is_gazed = mask > 0
    counts = is_gazed.sum(-1)  # [B, T]
    num_per_frame = counts.max(0).values  # [T]
    local = torch.arange(P, device=mask.device)
    key = torch.where(is_gazed, local, local + P)  # gazed ids first, each group ascending
    order = key.argsort(-1)  # [B, T, P]
    frame = torch.repeat_interleave(torch.arange(T, device=mask.device), num_per_frame)
    slot = torch.arange(frame.numel(), device=mask.device) - (torch.cumsum(num_per_frame, 0) - num_per_frame)[frame]
    ids = order[:, frame, slot]  # [B, N]
    is_padded = slot[None] >= counts[:, frame]
    return Gazes(ids=ids + frame[None] * P, is_padded=is_padded, num_per_frame=num_per_frame, tokens_per_frame=P)
