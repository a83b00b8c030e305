"""Reconstruction targets of the tube MAE: pixels per tubelet, normalised per tubelet and channel.

VideoMAE (NeurIPS 2022) regresses normalised pixels: undo the input normalisation, cut the clip
into 2 x p x p tubelets, and normalise each tubelet's pixels per channel by their mean and
(unbiased std + 1e-6). The token vector is laid out (frame-in-tubelet, row, col, channel), the
order of transformers' ``VideoMAEForPreTraining`` labels, so its decoder head lines up.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from autogaze.utils.normalization import PixelNormalization


def patchify(frames: Tensor, patch: int, tubelet: int) -> Tensor:
    """frames [B, T, C, H, W] -> [B, N, u*p*p, C] with N = (T/u)(H/p)(W/p) ordered (t', h', w')."""
    return rearrange(frames, "b (t u) c (h p) (w q) -> b (t h w) (u p q) c", u=tubelet, p=patch, q=patch)


@torch.no_grad()
def tubelet_targets(video: Tensor, norm: PixelNormalization, patch: int, tubelet: int,
                    norm_pix: bool = True) -> Tensor:
    """video [B, T, 3, H, W] (task-normalised) -> targets [B, N, u*p*p*3], float32, no grad.

    norm_pix: per tubelet and channel, (x - mean) / (unbiased std + 1e-6) over its u*p*p pixels;
    False regresses the [0, 1] pixels themselves.
    """
    pixels = patchify(norm.to_unit(video.float()), patch, tubelet)  # [B, N, u*p*p, 3]
    if norm_pix:
        mean = pixels.mean(dim=-2, keepdim=True)
        std = pixels.var(dim=-2, unbiased=True, keepdim=True).sqrt()
        pixels = (pixels - mean) / (std + 1e-6)
    return pixels.flatten(-2)  # [B, N, u*p*p*3], channel fastest
