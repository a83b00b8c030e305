"""Block-causal key/value caching for the MAE's ViTMAELayer stacks (greedy labelling's fast path).

Under the block-causal mask a token of frame s attends only to CLS and to tokens of frames <= s,
and CLS attends only to itself. So the hidden states of CLS and of frames < t, at every layer, do
not depend on anything in frame t or later: they can be computed once, as blocks appended in frame
order, and their per-layer keys and values reused by every query of frame t. A block attends to the
cached blocks and to itself (tokens of one frame see each other), which needs no mask at all.

This re-runs ``ViTMAELayer``'s own submodules (layer norms, q/k/v, output and MLP linears) in the
same order as its forward; only the attention is split into "cached keys + own keys". Frozen use
only: dropout is skipped, which is what eval mode does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """[B, L, H*dh] -> [B, H, L, dh]."""
    B, L, _ = x.shape
    return x.view(B, L, heads, -1).transpose(1, 2)


def layer_step(layer: nn.Module, x: Tensor, past_key: Tensor | None, past_value: Tensor | None,
               query_rows: slice | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One ``ViTMAELayer`` over the block ``x`` [B, L, D], its queries attending to the cached keys
    (past_key/past_value [1, H, Lp, dh], shared by the B rows) and to the block's own keys.

    query_rows: keep only these rows of the output (their keys still take part), e.g. the largest
    scale in the decoder's last layer, the only rows the loss reads.
    Returns (out [B, Lq, D], key, value [B, H, L, dh]): this block's own keys and values.
    """
    sa = layer.attention.attention
    H = sa.num_attention_heads
    h = layer.layernorm_before(x)
    key, value = _split_heads(sa.key(h), H), _split_heads(sa.value(h), H)
    if query_rows is not None:
        x, h = x[:, query_rows], h[:, query_rows]
    query = _split_heads(sa.query(h), H)
    keys, values = key, value
    if past_key is not None:
        B = x.shape[0]
        keys = torch.cat([past_key.expand(B, -1, -1, -1), key], dim=2)
        values = torch.cat([past_value.expand(B, -1, -1, -1), value], dim=2)
    # Every key is visible (cached blocks are earlier frames, the rest is the query's own frame),
    # so no mask: sdpa can take its fused kernels.
    ctx = F.scaled_dot_product_attention(query, keys, values, scale=sa.scaling)
    ctx = ctx.transpose(1, 2).flatten(2)  # [B, Lq, H*dh]
    x = layer.attention.output.dense(ctx) + x
    out = layer.output(layer.intermediate(layer.layernorm_after(x)), x)
    return out, key, value


class BlockCausalCache:
    """Per-layer keys and values of the blocks appended so far (batch 1), for one layer stack.

    ``append(block)`` runs a new block (the next frame, or CLS first) against the cache and keeps
    its keys and values; ``attend(rows)`` runs B candidate blocks against the cache without keeping
    anything. Both return the stack's outputs for the block's tokens.
    """

    def __init__(self, layers: nn.ModuleList):
        self.layers = layers
        self.keys: list[Tensor | None] = [None] * len(layers)
        self.values: list[Tensor | None] = [None] * len(layers)

    @property
    def length(self) -> int:
        """Cached tokens (0 before the first append)."""
        return 0 if self.keys[0] is None else int(self.keys[0].shape[2])

    def append(self, block: Tensor) -> Tensor:
        """block [1, L, D], all of one frame (or CLS) -> outputs [1, L, D]; the cache grows by L."""
        x = block
        for i, layer in enumerate(self.layers):
            x, k, v = layer_step(layer, x, self.keys[i], self.values[i])
            self.keys[i] = k if self.keys[i] is None else torch.cat([self.keys[i], k], dim=2)
            self.values[i] = v if self.values[i] is None else torch.cat([self.values[i], v], dim=2)
        return x

    def attend(self, rows: Tensor, last_query_rows: slice | None = None) -> Tensor:
        """rows [B, L, D], each row one block of the newest frame -> outputs [B, L, D] (or only
        ``last_query_rows`` of the last layer's output). The cache is unchanged."""
        x, last = rows, len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x, _, _ = layer_step(layer, x, self.keys[i], self.values[i], last_query_rows if i == last else None)
        return x
