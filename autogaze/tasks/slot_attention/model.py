"""The slot model: gazed tokens -> per-frame slots (recurrent over frames) -> decoded features and masks.

Per clip, frame by frame (SAVi-style recurrence, Kipf et al. 2022; SlotContrast's video model):

    x_n    = MLP(LN(f[id_n])) + scale_embed[scale(id_n)] + pos_embed[cell(id_n)]   gazed tokens of frame t
    s_0    = FixedLearnedInit;   s_t = SlotAttention(x of frame t, Predictor(s_(t-1)))
    y_t, m_t = MLPDecoder(s_t)   at every finest-scale position, gazed or not

Only the gazed tokens of frame t enter frame t's slot attention, and its slots start from frame t-1's,
so frame t's slots, masks and reconstruction depend on gazes of frames <= t only (block-causal, as the
MAE reward is; GRPO's per-frame credit and the greedy labeller rely on it).

The position embedding of a gazed patch is the mean of a learned finest-grid table over the finest
cells its box covers (adaptive average pooling of the table to that scale's grid), so a coarse patch
and the fine patches under it share one coordinate system; the scale embedding tells them apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autogaze.types import Gazes

from .config import SlotTaskConfig
from .decoder import Decoded, MLPDecoder
from .slots import FixedLearnedInit, SlotAttention, SlotPredictor


@dataclass
class SlotState:
    """What the slot model infers for a clip.

    slots: FloatTensor [B, T, K, D]     slots after each frame's slot attention (before the predictor).
    attn:  FloatTensor [B, N, K]        input-level masks: each gaze slot's attention over the slots of its
                                        frame (softmax over K; 0 on padded slots), aligned with gazes.ids.
    masks: FloatTensor [B, T, K, Pf]    decoder alpha masks at the Pf finest-scale positions (softmax over K).
    recon: FloatTensor [B, T, Pf, Df]   rebuilt tower features at the finest positions.
    """

    slots: Tensor
    attn: Tensor
    masks: Tensor
    recon: Tensor


class GazedSlotModel(nn.Module):
    """Input encoder, slot attention, slot predictor and decoder; every parameter trains."""

    def __init__(self, cfg: SlotTaskConfig, feature_dim: int, grid_sides: list[int]):
        super().__init__()
        D, Df, G = cfg.slot_dim, feature_dim, grid_sides[-1]
        self.cfg, self.grid_sides = cfg, list(grid_sides)
        # SlotContrast's feature MLP: LN + 2 layers with hidden 2 Df, from the tower's width to the slots'.
        self.encoder = nn.Sequential(nn.LayerNorm(Df), nn.Linear(Df, 2 * Df), nn.ReLU(), nn.Linear(2 * Df, D))
        self.scale_embed = nn.Parameter(torch.randn(len(grid_sides), D) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(G * G, D) * 0.02)  # [G*G, D], row-major finest cells
        self.init = FixedLearnedInit(cfg.num_slots, D)
        self.attention = SlotAttention(D, D, cfg.mlp_hidden)
        self.predictor = SlotPredictor(D, cfg.predictor_heads, cfg.predictor_blocks)
        self.decoder = MLPDecoder(D, Df, G * G, cfg.decoder_hidden)

    # ----------------------------------------------------------------- inputs
    def token_rows(self) -> Tensor:
        """-> [P, D]: the scale + position embedding of every frame-local id (scales in ascending order)."""
        G, D = self.grid_sides[-1], self.pos_embed.shape[1]
        table = self.pos_embed.t().reshape(1, D, G, G)
        rows = [F.adaptive_avg_pool2d(table, g).reshape(D, g * g).t() + self.scale_embed[i]  # [g*g, D]
                for i, g in enumerate(self.grid_sides)]
        return torch.cat(rows)

    def encode_inputs(self, feats: Tensor, gazes: Gazes, num_slots: int) -> Tensor:
        """feats [B, T, P, Df] (every token of every frame), the first ``num_slots`` gaze slots -> x [B, n, D]."""
        B, T, P, Df = feats.shape
        ids = gazes.ids[:, :num_slots]                                               # [B, n] global t*P + local
        gathered = feats.reshape(B, T * P, Df).gather(1, ids[..., None].expand(-1, -1, Df))  # [B, n, Df]
        local = ids - gazes.frame_index()[None, :num_slots] * P                      # [B, n]
        return self.encoder(gathered) + self.token_rows()[local]

    # ----------------------------------------------------------------- recurrence
    def forward(self, feats: Tensor, gazes: Gazes, num_frames: int) -> tuple[Tensor, Tensor]:
        """feats [B, T, P, Df], gazes [B, N] -> slots [B, T', K, D] and attn [B, n, K] for frames 0..T'-1
        (T' = ``num_frames`` <= T; n = the gaze slots of those frames)."""
        counts = gazes.num_per_frame.tolist()[:num_frames]
        n = sum(counts)
        x = self.encode_inputs(feats, gazes, n)                      # [B, n, D]
        is_valid = ~gazes.is_padded[:, :n]                           # [B, n] True = a real gaze
        s = self.init(feats.shape[0])                                # [B, K, D]
        slots, attn, start = [], [], 0
        for t, c in enumerate(counts):
            if t > 0:
                s = self.predictor(s)
            iters = self.cfg.first_frame_iters if t == 0 else self.cfg.iters
            s, a = self.attention(x[:, start:start + c], s, is_valid[:, start:start + c], iters)
            slots.append(s)
            attn.append(a)
            start += c
        return torch.stack(slots, 1), torch.cat(attn, 1)

    def decode(self, slots: Tensor) -> Decoded:
        """slots [B, F, K, D] -> recon [B, F, Pf, Df], masks [B, F, K, Pf]."""
        return self.decoder(slots)
