"""Vision encoder ("ShallowVideoConvNet") and connector.

Attribute names (temporal_conv, norm, blocks.i.conv3d, out_proj, pos_embed) equal upstream's
state-dict keys, so the released weights load as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalConvBlock(nn.Module):
    """Conv3d with causal temporal padding, then ReLU (no residual, as upstream).

    Streaming: instead of zero frames, the last ``kt - 1`` input frames of the previous call are
    prepended, so encoding frame by frame equals encoding the clip at once.
    """

    def __init__(self, dim: int, temporal_kernel: int, spatial_kernel: int):
        super().__init__()
        self.temporal_kernel = temporal_kernel
        self.conv3d = nn.Conv3d(dim, dim, (temporal_kernel, spatial_kernel, spatial_kernel),
                                padding=(0, spatial_kernel // 2, spatial_kernel // 2))

    def forward(self, x: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, C, T, h, w], cache [B, C, kt-1, h, w] or None -> (y [B, C, T, h, w], new cache)."""
        B, C, T, h, w = x.shape
        n_past = self.temporal_kernel - 1
        if cache is None:
            cache = x.new_zeros(B, C, n_past, h, w)
        x = torch.cat([cache, x], dim=2)  # [B, C, kt-1+T, h, w]
        new_cache = x[:, :, x.shape[2] - n_past:]
        return F.relu(self.conv3d(x)), new_cache


class ShallowVideoConvNet(nn.Module):
    """Per-frame 16x16 patch conv, channel LayerNorm, causal 3x3x3 trunk, 1x1x1 out projection.

    Frame t's features depend on frames t-2..t only (temporally causal).
    """

    def __init__(self, hidden_dim: int = 192, out_dim: int = 192, depth: int = 1, kernel_size: int = 16,
                 temporal_patch_size: int = 1, trunk_temporal_kernel_size: int = 3,
                 trunk_spatial_kernel_size: int = 3, input_img_size: int = 224, **_unused_hf_keys):
        super().__init__()
        self.input_img_size = input_img_size
        # Upstream calls the patch conv "temporal_conv"; its kernel is (1, 16, 16).
        self.temporal_conv = nn.Conv3d(3, hidden_dim, (temporal_patch_size, kernel_size, kernel_size),
                                       stride=(temporal_patch_size, kernel_size, kernel_size))
        self.norm = nn.LayerNorm(hidden_dim)
        self.blocks = nn.ModuleList(
            CausalConvBlock(hidden_dim, trunk_temporal_kernel_size, trunk_spatial_kernel_size) for _ in range(depth))
        self.out_proj = nn.Conv3d(hidden_dim, out_dim, 1)

    def forward(self, video: Tensor, conv_cache: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """video [B, T, 3, H, W] -> (tokens [B, T, h*w, D] row-major, per-block caches [B, C, kt-1, h, w])."""
        B, T = video.shape[:2]
        S = self.input_img_size
        if video.shape[-2:] != (S, S):
            # Any input size is resized to the encoder's size (bicubic, as upstream).
            frames = F.interpolate(video.flatten(0, 1), size=(S, S), mode="bicubic", align_corners=False)
            video = frames.unflatten(0, (B, T))
        x = self.norm(self._patchify(video))  # [B, T, h, w, C], LayerNorm over channels
        x = x.permute(0, 4, 1, 2, 3)  # [B, C, T, h, w]
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, None if conv_cache is None else conv_cache[i])
            new_cache.append(c)
        x = self.out_proj(x)  # [B, D, T, h, w]
        return x.flatten(3).permute(0, 2, 3, 1), new_cache  # [B, T, h*w, D]


    def _patchify(self, video: Tensor) -> Tensor:
        """video [B, T, 3, H, W] -> patch features [B, T, h, w, C].

        With a one-frame kernel (the released model) the patch conv is a 2-D conv over B*T frames:
        the same weights and result, without the channels-first copy of the whole video that
        Conv3d's [B, 3, T, H, W] layout costs (~2% of a batch-8 training step, profiled)."""
        conv = self.temporal_conv
        B, T = video.shape[:2]
        if conv.kernel_size[0] == 1:
            x = F.conv2d(video.flatten(0, 1), conv.weight.squeeze(2), conv.bias, stride=conv.stride[1:])
            return x.unflatten(0, (B, T)).permute(0, 1, 3, 4, 2)
        return conv(video.transpose(1, 2)).permute(0, 2, 3, 4, 1)


class Connector(nn.Module):
    """Learned absolute position embedding added to every frame's tokens (no time embedding)."""

    def __init__(self, hidden_dim: int = 192, num_tokens: int = 196, **_unused_hf_keys):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(num_tokens, hidden_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, T, N, D] -> [B, T, N, D]."""
        return tokens + self.pos_embed.to(tokens.dtype)
