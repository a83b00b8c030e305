"""Drawing a visible token set without replacement, and laying it out as ``Gazes``.

Shared by AdaMAE and TATS (TATS extends AdaMAE's sampler, so it imports these from here).

Both methods call ``multinomial(p, N_v, replacement=False)``: successive sampling, a Plackett-Luce
draw. Adding i.i.d. Gumbel noise to log p and taking the top N_v keys (in descending key order) has
exactly that distribution (Gumbel-top-k; Kool et al., ICML 2019) and takes an explicit generator.
"""
from __future__ import annotations

import torch
from torch import Tensor

from autogaze.types import Gazes


def gumbel_keys(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """log_probs [..., N] -> perturbed keys [..., N] (float32): log p + Gumbel(0, 1).

    The uniforms come from ``generator`` on its own device (CPU if None is given and the input is
    on the CPU), then move to the input's device, so a seed gives the same draw everywhere.
    """
    dev = generator.device if generator is not None else log_probs.device
    u = torch.rand(log_probs.shape, generator=generator, device=dev, dtype=torch.float32).to(log_probs.device)
    tiny = torch.finfo(torch.float32).tiny
    return log_probs.float() - torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def sample_without_replacement(log_probs: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """log_probs [B, N] -> ids [B, k] in draw order, a Plackett-Luce sample without replacement."""
    return gumbel_keys(log_probs, generator).topk(k, dim=-1).indices  # topk sorts descending


def plackett_luce_log_prob(token_log_probs: Tensor, ids: Tensor, is_valid: Tensor | None = None) -> Tensor:
    """log P(ordered draw) = sum_k [log p_{i_k} - log(1 - sum_{j<k} p_{i_j})].

    token_log_probs [B, N]; ids [B, K] in draw order; is_valid [B, K] (False = ignore, e.g. slots
    beyond a row's own count) -> [B]. The score function of this is the unbiased REINFORCE term of a
    set draw; AdaMAE's loss uses per-token log p instead (see adamae/model.py).
    """
    lp = token_log_probs.gather(1, ids)                                           # [B, K]
    valid = torch.ones_like(lp, dtype=torch.bool) if is_valid is None else is_valid
    p = lp.exp() * valid
    drawn_before = (p.cumsum(1) - p).clamp(max=1.0 - 1e-6)                        # exclusive prefix sum
    return ((lp - torch.log1p(-drawn_before)) * valid).sum(1)


def visible_mask(ids: Tensor, count: Tensor, num_tokens: int) -> Tensor:
    """ids [B, K] (draw order), count [B] real draws per row -> is_visible [B, N] bool."""
    B, K = ids.shape
    is_real = torch.arange(K, device=ids.device)[None] < count[:, None]           # [B, K]
    mask = torch.zeros(B, num_tokens + 1, dtype=torch.bool, device=ids.device)
    mask.scatter_(1, torch.where(is_real, ids, num_tokens), True)                 # extra column: unused slots
    return mask[:, :num_tokens]


def gazes_from_visible(is_visible: Tensor) -> Gazes:
    """is_visible [B, T', P] -> Gazes sorted by tube-frame, ascending local id inside a frame.

    Frame t' gets n_t = max_b (visible in t' of clip b) slots, at least 1, so every frame exists
    for consumers that index frames; a row with fewer is padded (``is_padded`` True). A padded slot
    holds an id of its own frame that is *not* visible, so it is in range and never duplicates a
    real gaze.
    """
    B, T, P = is_visible.shape
    dev = is_visible.device
    counts = is_visible.sum(-1)                                                   # [B, T']
    n_t = counts.amax(0).clamp_min(1)                                             # [T']
    n = int(n_t.max())
    local = torch.arange(P, device=dev)
    key = torch.where(is_visible, local, local + P)                               # visible first, ascending
    order = key.argsort(-1)[..., :n]                                              # [B, T', n] local ids
    slot = torch.arange(n, device=dev)
    is_padded = slot >= counts[..., None]                                         # [B, T', n]
    ids = order + torch.arange(T, device=dev)[:, None] * P
    keep = slot[None, :] < n_t[:, None]                                           # [T', n] frame-major slots
    return Gazes(ids[:, keep], is_padded[:, keep], n_t.cpu(), P)
