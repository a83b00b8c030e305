"""The two terms of SlotContrast's loss (Manasyan et al. 2024, Sec. 3): L = L_featrec + w * L_ss.

* ``feature_reconstruction``: L_featrec(t) = mean_{p, c} (y_tpc - f_tpc)^2, the MSE between the decoder's
  mix and the frozen tower's full-gaze features f, which are targets only (no gradient reaches them).
  Kept per frame: minus it is the task's reward.
* ``slot_contrast``: the slot-slot contrast between consecutive frames with batch contrast. The B*K
  unit-normalised slots of frame t form one set; every slot of frame t + 1 must pick its own slot (same
  clip, same index) among them: logits S = s_(t+1) s_t^T / tau [BK, BK], cross-entropy with identity
  targets (the softmax of a frame-(t+1) slot runs over the frame-t slots). Mean over slots and pairs.
  Negatives from other clips keep slots from collapsing onto one vector across the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def feature_reconstruction(recon: Tensor, target: Tensor) -> Tensor:
    """recon, target [B, F, P, Df] -> per-frame MSE [B, F] (float32; target detached)."""
    return (recon.float() - target.detach().float()).pow(2).mean(dim=(-2, -1))


def slot_contrast(slots: Tensor, temperature: float) -> Tensor:
    """slots [B, T, K, D] -> per-clip L_ss [B]: the clip's slots' cross-entropies, mean over its K slots and the
    T - 1 consecutive pairs (0 when T = 1). The softmax of each row runs over all B*K slots of frame t."""
    B, T, K, _ = slots.shape
    if T < 2:
        return slots.new_zeros(B, dtype=torch.float32)
    unit = F.normalize(slots.float(), dim=-1)
    prev = unit[:, :-1].transpose(0, 1).flatten(1, 2)                       # [T-1, B*K, D]  (b k) rows
    nxt = unit[:, 1:].transpose(0, 1).flatten(1, 2)                         # [T-1, B*K, D]
    logits = torch.einsum("tid,tjd->tij", nxt, prev) / temperature          # [T-1, BK, BK]
    targets = torch.arange(B * K, device=slots.device).expand(T - 1, -1)    # slot i of t+1 <-> slot i of t
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # [(T-1) * BK]
    return ce.view(T - 1, B, K).mean(dim=(0, 2))
