"""The decoder's fast path: a ``LlamaDecoderLayer`` evaluated from its own sub-modules.

Same parameters and the same maths as the layer's forward (RMSNorm, RoPE, sdpa, SwiGLU MLP,
residuals), arranged for speed (profiled, benchmarks/gaze.py):
* q/k/v are one product on the concatenated weights, and gate/up another (fewer, larger GEMMs;
  the concatenation is kept between calls when no gradient is recorded);
* RoPE is applied once to q and k together, in the [B, L, H, d] layout the projection wrote,
  with the half swap as one ``flip`` and a sign folded into the sin table (``rope_tables``);
  every function below takes ``cos, sin`` as returned by ``rope_tables``;
* RMSNorm is one ``F.rms_norm`` call, and products go through ``autogaze.utils.linear``
  (oneDNN on CPU fp32);
* attention is sdpa with ``is_causal`` and no mask wherever the rows allow it, and the last
  layer runs its queries, attention and MLP only at the positions that are read.
Weights stay in the transformers modules, so checkpoints and ``LlamaModel`` are untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autogaze.utils.linear import linear


def rows(x: Tensor, sel: Tensor) -> Tensor:
    """x [B', L, ...] at positions sel: [S] (shared by every row) or [B, S] (per row) -> [B or B', S, ...]."""
    if sel.dim() == 1:
        return x[:, sel]
    x = x.expand(sel.shape[0], *x.shape[1:])
    return x.gather(1, sel.view(*sel.shape, *[1] * (x.dim() - 2)).expand(*sel.shape, *x.shape[2:]))


def additive(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean attention mask (True = may attend) -> additive mask in ``dtype``: 0 or the dtype's
    minimum (as transformers' eager masks: no NaN for a row with nothing visible)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, torch.finfo(dtype).min)


def norm(module, x: Tensor) -> Tensor:
    """LlamaRMSNorm ``module`` applied to x [..., D]: one ``F.rms_norm`` call for fp32 input outside
    autocast (the same value; the module's forward is eight ops), else the module itself."""
    if (x.dtype == torch.float32 and module.weight.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type)):
        return F.rms_norm(x, module.weight.shape, module.weight, module.variance_epsilon)
    return module(x)


def _fused(modules) -> tuple[Tensor, Tensor | None]:
    """Concatenated weights [sum N, K] (and biases) of several nn.Linear with one input.

    With autograd recording, a fresh ``cat`` (so gradients flow back to each weight). Without it
    (generation), the result is kept on the first module and reused while every weight keeps its
    storage and version counter (any in-place update, e.g. an optimizer step, bumps it).
    """
    params = [p for m in modules for p in (m.weight, m.bias) if p is not None]

    def build():
        weight = torch.cat([m.weight for m in modules])
        return weight, None if modules[0].bias is None else torch.cat([m.bias for m in modules])

    if (torch.is_grad_enabled() and any(p.requires_grad for p in params)) or torch.compiler.is_compiling():
        return build()
    key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
    cached = modules[0].__dict__.get("_fused_inference")
    if cached is None or cached[0] != key:
        cached = (key, build())
        modules[0].__dict__["_fused_inference"] = cached
    return cached[1]


def rope_tables(rotary_emb, like: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
    """cos, signed sin [B, L, d] for ``_rope``: the rotary module's own cos/sin, with the first
    half of sin negated so that rotate_half(x) * sin == swap_halves(x) * signed_sin exactly."""
    cos, sin = rotary_emb(like, position_ids)
    half = sin.shape[-1] // 2
    return cos, torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


def _rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """x [B, L, heads, d], tables [B, L, d] (rope_tables) -> RoPE(x), bit for bit transformers'
    ``x * cos + rotate_half(x) * sin``. Swapping halves is one ``flip`` (its backward is a flip;
    rotate_half's slices each cost a zero-filled tensor of x's size in the backward, profiled)."""
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)
    return x * cos.unsqueeze(2) + swapped * signed_sin.unsqueeze(2)


def qkv(attn, x: Tensor, cos: Tensor, sin: Tensor, need_q: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
    """x [B, L, D] (normed) -> q [B, H, L, d] (None unless need_q), k, v [B, H_kv, L, d]; RoPE on q, k."""
    B, L, _ = x.shape
    d = attn.head_dim
    projs = (attn.q_proj, attn.k_proj, attn.v_proj) if need_q else (attn.k_proj, attn.v_proj)
    out = linear(x, *_fused(projs))  # [B, L, (H + 2 H_kv) d]
    n_q = attn.q_proj.out_features // d if need_q else 0
    n_kv = attn.k_proj.out_features // d
    # split, not slicing: its backward is one cat (each slice's would zero-fill a full-size tensor)
    qk, v = out.view(B, L, n_q + 2 * n_kv, d).split([n_q + n_kv, n_kv], dim=2)
    q, k = _rope(qk, cos, sin).split([n_q, n_kv], dim=2)
    return (q.transpose(1, 2) if need_q else None), k.transpose(1, 2), v.transpose(1, 2)


def mlp(module, x: Tensor) -> Tensor:
    """LlamaMLP: down(act(gate(x)) * up(x)), gate and up as one product. x [..., D] -> [..., D]."""
    gate, up = linear(x, *_fused((module.gate_proj, module.up_proj))).chunk(2, dim=-1)
    return linear(module.act_fn(gate) * up, module.down_proj.weight, module.down_proj.bias)


def _attend(attn, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """sdpa over q [B, H, S, d], k/v [B, H_kv, L, d] -> [B, S, H*d]."""
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype),
                                       is_causal=causal, scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1])
    return o.transpose(1, 2).flatten(2)


def _out(layer, h: Tensor, o: Tensor) -> Tensor:
    """Residual attention output, then the residual MLP. h, o [B, S, D]."""
    attn = layer.self_attn
    h = h + linear(o, attn.o_proj.weight, attn.o_proj.bias)
    return h + mlp(layer.mlp, norm(layer.post_attention_layernorm, h))


def layer_packed(layer, h: Tensor, cos: Tensor, sin: Tensor, n_head: int, tail_mask: Tensor | None) -> Tensor:
    """A layer without a cache over packed rows (every row's first n_head tokens are real and in
    order): queries < n_head attend causally with no mask, the tail with tail_mask [B, 1, L-n_head, L].
    n_head = L (no pads) is plain causal attention. h [B, L, D] -> [B, L, D]."""
    attn = layer.self_attn
    q, k, v = qkv(attn, norm(layer.input_layernorm, h), cos, sin)
    o = _attend(attn, q[:, :, :n_head], k[:, :, :n_head], v[:, :, :n_head], None, True)
    if tail_mask is not None:
        o = torch.cat([o, _attend(attn, q[:, :, n_head:], k, v, tail_mask, False)], dim=1)
    return _out(layer, h, o)


def layer_cached(layer, h: Tensor, cos: Tensor, sin: Tensor, cache, mask4: Tensor | None) -> Tensor:
    """A layer on new tokens h [B, L, D] after the cached ones; their keys/values join ``cache``.
    mask4 [B, 1, L, L_kv] additive, or None when L = 1 and the cache has no pads. -> [B, L, D]."""
    attn = layer.self_attn
    q, k, v = qkv(attn, norm(layer.input_layernorm, h), cos, sin)
    k, v = cache.update(k, v, attn.layer_idx)
    return _out(layer, h, _attend(attn, q, k, v, mask4, False))


def last_layer_at(layer, h: Tensor, sel: Tensor, cos: Tensor, sin: Tensor, mask4: Tensor | None, cache) -> Tensor:
    """The layer evaluated only for the queries ``sel`` (keys/values for all L tokens).

    h [B, L, D]; sel [S] or [B, S] (per row, then with ``mask4`` [B, 1, S, L_kv] given for the
    selected queries); mask4 otherwise [B, 1, L, L_kv] or None (causal, no pads). -> [B, S, D].
    """
    attn = layer.self_attn
    B, L, _ = h.shape
    S = sel.shape[-1]
    x = norm(layer.input_layernorm, h)
    _, k, v = qkv(attn, x, cos, sin, need_q=False)
    q = linear(rows(x, sel), attn.q_proj.weight, attn.q_proj.bias).view(B, S, -1, attn.head_dim)
    q = _rope(q, rows(cos, sel), rows(sin, sel)).transpose(1, 2)  # [B, H, S, d]
    if cache is not None:
        k, v = cache.update(k, v, attn.layer_idx)
    if mask4 is None:  # causal without pads: query at new-token index i sees keys 0..past+i
        idx = torch.arange(k.shape[2], device=h.device)
        keep = idx[None, :] <= (k.shape[2] - L + sel)[:, None]  # [S, L_kv]
        mask = additive(keep, q.dtype)
    elif sel.dim() == 2:
        mask = mask4
    else:
        mask = mask4[:, :, sel]
    return _out(layer, rows(h, sel), _attend(attn, q, k, v, mask, False))
