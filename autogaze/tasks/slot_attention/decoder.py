"""SlotContrast's MLP decoder: every slot paints every finest-scale position, an alpha mask mixes them.

For slot k and position p, one shared MLP reads s_k + pos_p and outputs a feature y_kp [Df] and an alpha
logit a_kp; the masks m = softmax over slots of a, and the rebuilt feature is y_p = sum_k m_kp y_kp
(Manasyan et al. 2024, after DINOSAUR's MLP decoder, Seitzer et al. 2023). The masks are what FG-ARI
reads: each position goes to the slot that explains it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Decoded:
    """recon [..., P, Df]: the mixed features; masks [..., K, P]: softmax over slots of the alpha logits."""
    recon: Tensor
    masks: Tensor


class MLPDecoder(nn.Module):
    """Broadcast each slot to the P positions, add a learned position table, decode with one MLP."""

    def __init__(self, slot_dim: int, feature_dim: int, num_positions: int, hidden: list[int]):
        super().__init__()
        # std D^-0.5 puts the positions on the slots' scale (FixedLearnedInit draws the slots alike).
        self.pos = nn.Parameter(torch.randn(num_positions, slot_dim) * slot_dim ** -0.5)
        layers: list[nn.Module] = []
        width = slot_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, feature_dim + 1))  # + 1: the alpha logit

    def forward(self, slots: Tensor) -> Decoded:
        """slots [..., K, D] -> recon [..., P, Df], masks [..., K, P]."""
        out = self.mlp(slots[..., :, None, :] + self.pos)                 # [..., K, P, Df + 1]
        feats, alpha = out[..., :-1], out[..., -1]                         # [..., K, P, Df], [..., K, P]
        masks = alpha.softmax(dim=-2)                                      # over the K slots
        recon = torch.einsum("...kp,...kpf->...pf", masks, feats)          # [..., P, Df]
        return Decoded(recon, masks)
