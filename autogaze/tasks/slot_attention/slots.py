"""Slot attention over one frame's gazed tokens, the learned slot init, and the frame-to-frame predictor.

Slot attention (Locatello et al. 2020, "Object-Centric Learning with Slot Attention", Alg. 1), in the
variant SlotContrast runs per video frame (Manasyan et al. 2024, "Temporally Consistent Object-Centric
Learning by Contrasting Slots"; the recurrent use follows SAVi / STEVE, Singh et al. 2022):

    k, v = W_k LN(x), W_v LN(x)                     x [B, N, Din] -> [B, N, D]
    q    = W_q LN(s)                                s [B, K, D]
    A    = softmax_over_slots(k q^T / sqrt(D))      [B, N, K]     (slots compete for each input)
    w    = valid (A + eps) / sum_inputs valid (A + eps)          (weighted mean over inputs, per slot)
    u    = w^T v                                    [B, K, D]
    s    = GRU(u, s);  s = s + MLP(LN(s))

``valid`` is False for padded gaze slots; they are zeroed *before* the renormalisation and so are their
eps terms, so a padded input changes neither the numerator nor the denominator of any weight. The GRU
gets the un-normalised previous slots and the MLP runs on every iteration (SlotContrast's choice; STEVE
skips it on the last one). The attention A of the last iteration, before renormalisation, is the
input-level slot mask.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

EPS = 1e-8  # Locatello et al.'s epsilon in the weighted mean


def attend(k: Tensor, q: Tensor, v: Tensor, is_valid: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor, Tensor]:
    """One slot-attention read: k, v [B, N, D], q [B, K, D], is_valid [B, N] bool (True = a real input).

    Returns attn A [B, N, K] (softmax over slots; 0 on invalid inputs), weights w [B, N, K] (each slot's
    column sums to 1 over the valid inputs, or is all 0 when a frame has none) and updates u [B, K, D]."""
    logits = torch.einsum("bnd,bkd->bnk", k, q) / math.sqrt(k.shape[-1])   # [B, N, K]
    attn = logits.softmax(dim=-1) * is_valid[..., None]                    # [B, N, K]
    weights = (attn + eps) * is_valid[..., None]                           # a pad's eps stays out too
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(eps)    # a frame of pads only: w = 0
    updates = torch.einsum("bnk,bnd->bkd", weights, v)                     # [B, K, D]
    return attn, weights, updates


class SlotAttention(nn.Module):
    """The iterative slot update; ``forward(x, slots, is_valid, iters)`` -> (slots, attn)."""

    def __init__(self, input_dim: int, slot_dim: int, mlp_hidden: int):
        super().__init__()
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.to_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.mlp = nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, mlp_hidden), nn.ReLU(),
                                 nn.Linear(mlp_hidden, slot_dim))

    def forward(self, x: Tensor, slots: Tensor, is_valid: Tensor, iters: int) -> tuple[Tensor, Tensor]:
        """x [B, N, Din], slots [B, K, D], is_valid [B, N] -> slots [B, K, D], attn [B, N, K] (last iteration)."""
        B, K, D = slots.shape
        x = self.norm_inputs(x)
        k, v = self.to_k(x), self.to_v(x)  # [B, N, D]; the inputs do not change over the iterations
        attn = x.new_zeros(B, x.shape[1], K)
        for _ in range(iters):
            attn, _, updates = attend(k, self.to_q(self.norm_slots(slots)), v, is_valid)
            slots = self.gru(updates.reshape(B * K, D), slots.reshape(B * K, D)).view(B, K, D)
            slots = slots + self.mlp(slots)
        return slots, attn


class FixedLearnedInit(nn.Module):
    """SlotContrast's init: K learned vectors shared by every clip, drawn once with std D^-0.5."""

    def __init__(self, num_slots: int, slot_dim: int):
        super().__init__()
        self.slots = nn.Parameter(torch.randn(num_slots, slot_dim) * slot_dim ** -0.5)

    def forward(self, batch: int) -> Tensor:
        """-> slots [B, K, D]."""
        return self.slots[None].expand(batch, -1, -1)


class SlotPredictor(nn.Module):
    """Carries slots to the next frame: pre-norm transformer blocks over the K slots of a clip (no
    dropout, so a frozen task is deterministic). s_init(t + 1) = Predictor(s(t))."""

    def __init__(self, slot_dim: int, heads: int, blocks: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(slot_dim, heads, dim_feedforward=4 * slot_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)

    def forward(self, slots: Tensor) -> Tensor:
        """slots [B, K, D] -> [B, K, D]."""
        return self.blocks(slots)
