"""Block-causal attention masks over frames, for sdpa.

Convention: a boolean mask where **True means "query may attend to key"** (what
``F.scaled_dot_product_attention`` takes; it equals the upstream additive 0/-inf mask and needs no
dtype matching under autocast). The CLS token sits at index 0.

Rule (causal): query q attends key k iff (frame(k) <= frame(q) and k is not padded) or k is CLS.
The CLS query sees only itself. Non-causal (upstream crashes there; TRAINING.md, deviation V5): every query,
CLS included, sees every real key.

[quirk, dropped] upstream also allows the diagonal at indices 0..N-1 of the (1+N)-sized matrix (off by
one). It only changes what *padded* queries see (every real query already sees itself), and padded
outputs are never read, so we do not add it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def block_causal_mask(frame_of_token: Tensor, is_key_valid: Tensor, causal: bool = True) -> Tensor:
    """Build the attention mask once per forward, with tensor ops only (no per-token Python loop).

    frame_of_token: LongTensor [L]     frame of each non-CLS token (shared by the batch).
    is_key_valid:   BoolTensor [B, L]  False for padded (dummy) tokens.
    returns:        BoolTensor [B, 1, 1+L, 1+L]  True = may attend; broadcast over heads.
    """
    B, L = is_key_valid.shape
    device = frame_of_token.device
    # CLS gets frame -1: every query is at a frame >= -1 so all see CLS; CLS sees only frame <= -1.
    frames = torch.cat([frame_of_token.new_full((1,), -1), frame_of_token])  # [1+L]
    valid = torch.cat([is_key_valid.new_ones(B, 1), is_key_valid], dim=1)  # [B, 1+L]
    if causal:
        allowed = frames[None, :] <= frames[:, None]  # [1+L(q), 1+L(k)]
    else:
        allowed = torch.ones(L + 1, L + 1, dtype=torch.bool, device=device)
    return (allowed[None] & valid[:, None, :])[:, None]  # [B, 1, 1+L, 1+L]
