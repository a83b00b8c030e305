"""Multi-scale video embeddings of the MAE encoder and the position tables of both halves.

The frame is resized to every scale, patch-embedded by ViT-MAE's shared conv, and given a position
(2-D sin-cos, interpolated), a scale and a time embedding. Token layout per frame: scales ascending,
row-major inside a scale, so local id = offset_s + row * (s / patch) + col.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

from .config import MultiScaleViTMAEConfig


def grid_sides(config: MultiScaleViTMAEConfig) -> list[int]:
    """Patch-grid side per scale, e.g. [2, 4, 7, 14] for 32+64+112+224 at patch 16."""
    return [s // config.patch_size for s in config.scales]


def interpolate_pos_2d(table: Tensor, side: int) -> Tensor:
    """Encoder position rows for a ``side x side`` grid.

    table: [1, 1 + G*G, D] sin-cos table (CLS row first) on the G x G grid of image_size.
    returns [side*side, D]: the G x G rows resized bicubically in 2-D (align_corners=False), as HF
    ViT-MAE's ``interpolate_pos_encoding`` does; returned as is when side == G.
    """
    rows = table[0, 1:]
    g = int(round(rows.shape[0] ** 0.5))
    if side == g:
        return rows
    grid = rows.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # [1, D, G, G]
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(side * side, -1)


def interpolate_pos_1d(table: Tensor, length: int) -> Tensor:
    """Decoder position rows for a scale with ``length`` tokens.

    [quirk, kept for weight compatibility; TRAINING.md, deviation V1] The decoder table is treated as a 1-D
    sequence of G*G rows and resized bicubically (a 1 x L image) to ``length`` rows, as HF ViT-MAE's
    decoder ``interpolate_pos_encoding`` does; the released decoder was trained with these rows.
    table: [1, 1 + G*G, D]; returns [length, D].
    """
    rows = table[0, 1:].t()[None, :, None, :]  # [1, D, 1, G*G]
    rows = F.interpolate(rows, size=(1, length), mode="bicubic", align_corners=False)
    return rows[0, :, 0, :].t()


class MultiScaleViTMAEEmbeddings(ViTMAEEmbeddings):
    """ViT-MAE embeddings (cls_token, position_embeddings, patch_embeddings) plus
    ``scale_embed`` [S, D] and ``time_embed`` [max_num_frames, D].

    The new tables start at zero, so a model initialised from stock ViT-MAE weights starts out as
    that MAE applied per scale; upstream's init is unknown and irrelevant once weights are loaded.
    """

    def __init__(self, config: MultiScaleViTMAEConfig):
        super().__init__(config)
        D = config.hidden_size
        self.scale_embed = nn.Parameter(torch.zeros(len(config.scales), D)) if config.scale_embed else None
        self.time_embed = nn.Parameter(torch.zeros(config.max_num_frames, D)) if config.time_embed else None

    def cls_embedding(self) -> Tensor:
        """[1, 1, D]: CLS token plus its position row (no scale or time embedding)."""
        return self.cls_token + self.position_embeddings[:, :1]

    def forward(self, video: Tensor) -> Tensor:
        """video [B, T, 3, H, W] (task-normalised, H = W = largest scale) -> tokens [B, T, P, D].

        Every scale is rebuilt from the full frame with a bicubic resize (align_corners=False, no
        antialias, matching upstream's fixture numbers); the largest scale uses the frame as is.
        """
        B, T, C, H, W = video.shape
        frames = video.reshape(B * T, C, H, W)
        per_scale = []
        for i, (s, side) in enumerate(zip(self.config.scales, grid_sides(self.config))):
            x = frames if (s == H and s == W) else F.interpolate(
                frames, size=(s, s), mode="bicubic", align_corners=False)
            # interpolate_pos_encoding=True only lifts HF's fixed-size check; positions are ours.
            tok = self.patch_embeddings(x, interpolate_pos_encoding=True)  # [B*T, side*side, D]
            tok = tok + interpolate_pos_2d(self.position_embeddings, side).to(tok.dtype)
            if self.scale_embed is not None:
                tok = tok + self.scale_embed[i].to(tok.dtype)
            per_scale.append(tok)
        tokens = torch.cat(per_scale, dim=1).view(B, T, -1, tok.shape[-1])  # [B, T, P, D]
        if self.time_embed is not None:
            tokens = tokens + self.time_embed[:T].to(tokens.dtype)[None, :, None]
        return tokens


def decoder_position_rows(decoder, config: MultiScaleViTMAEConfig) -> Tensor:
    """[P, Dd]: decoder position + scale embedding for every local id of a frame."""
    rows = []
    for i, side in enumerate(grid_sides(config)):
        r = interpolate_pos_1d(decoder.decoder_pos_embed, side * side)
        if decoder.decoder_scale_embed is not None:
            r = r + decoder.decoder_scale_embed[i]
        rows.append(r)
    return torch.cat(rows, dim=0)
