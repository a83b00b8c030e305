"""Attention over gazed tokens: one mask (or one packing plan) per forward, shared by every layer.

Convention: a boolean mask where **True means "query may attend to key"**, as
``F.scaled_dot_product_attention`` takes it. It is built once per forward with tensor ops and is
at most ``[B, 1, L, L]`` (broadcast over heads); key-padding-only cases use ``[B, 1, 1, L]``.

Rules, for tokens laid out frame after frame (see ``gazed.TokenLayout``):
* ``block_causal``: q sees k iff frame(k) <= frame(q): bidirectional inside a frame, causal across.
* ``causal``: q sees k iff position(k) <= position(q) (gaze order, token by token).
* ``bidirectional``: every token sees every token.
Padded slots never reach attention (``gazed.TokenLayout`` drops them); the only unreal positions
are filler at the end of shorter sequences, hidden as keys. A filler *query* also sees itself, so
that no row of the mask is empty: an empty row makes sdpa return NaN there, and a NaN value row
poisons real rows through ``0 * NaN`` in the weighted sum even when its weight is zero.

The towers are stock transformers modules; they reach ``ALL_ATTENTION_FUNCTIONS`` by the name in
``config._attn_implementation``. We register one function under ``GAZED_ATTENTION`` and thread a
``GazedAttention`` object through the towers' own mask argument (SigLIP's ``attention_mask``,
DINOv2's ``head_mask``), so no layer is copied or patched. The function falls back to plain sdpa
when it receives an ordinary tensor, so the stock forward of the same module still works.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

GAZED_ATTENTION = "autogaze_gazed"
ATTN_TYPES = ("block_causal", "causal", "bidirectional", "frame_independent")


@dataclass
class VarlenPlan:
    """Real tokens packed for flash-attn's varlen kernel (padded tokens are dropped, not masked).

    indices:    LongTensor [M]       flat positions of the real tokens in the [B' * L] sequence.
    cu_seqlens: IntTensor  [B' + 1]  sequence boundaries inside the packed [M] tokens.
    max_seqlen: int                  longest sequence.
    causal:     bool                 token-causal inside each sequence (``causal``) or not.
    """

    indices: Tensor
    cu_seqlens: Tensor
    max_seqlen: int
    causal: bool


@dataclass
class GazedAttention:
    """What every attention layer of one forward receives in place of its mask.

    mask:   BoolTensor [B', 1, L, L] or [B', 1, 1, L] (True = may attend), or None (no constraint).
    varlen: a VarlenPlan when flash-attn runs this forward (then ``mask`` is None).
    """

    mask: Tensor | None = None
    varlen: VarlenPlan | None = None
    _additive: dict = field(default_factory=dict, repr=False)

    def sdpa_mask(self, dtype: torch.dtype) -> Tensor | None:
        """The mask as sdpa consumes it: sdpa turns a boolean mask into an additive one of the
        query's dtype on *every* call (measured: 2 ``where`` ops per layer), so do it once per
        forward and dtype. Same shape as ``mask``; 0 where allowed, -inf elsewhere."""
        if self.mask is None:
            return None
        if dtype not in self._additive:
            zero = torch.zeros((), dtype=dtype, device=self.mask.device)
            self._additive[dtype] = zero.masked_fill(~self.mask, float("-inf"))
        return self._additive[dtype]


def _flash_varlen_kernel() -> Callable:
    from flash_attn import flash_attn_varlen_func  # optional dependency (pip install .[flash])

    return flash_attn_varlen_func


# Tests swap this for a reference kernel to check the packing on CPU.
VARLEN_KERNEL: Callable[[], Callable] = _flash_varlen_kernel


def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_backend(attn_implementation: str) -> str:
    """User-facing name -> "sdpa" or "flash". "eager" runs as sdpa: with a custom mask the math is
    the same, and one path is easier to keep right. flash without flash-attn (or CUDA) falls back."""
    if attn_implementation in ("sdpa", "eager"):
        return "sdpa"
    if attn_implementation.startswith("flash_attention"):
        if flash_available():
            return "flash"
        warnings.warn(f"attn_implementation={attn_implementation!r} needs flash-attn and CUDA; using sdpa",
                      stacklevel=3)
        return "sdpa"
    raise ValueError(f"attn_implementation={attn_implementation!r}: use 'sdpa', 'eager' or 'flash_attention_2'")


def pairwise_rule(attn_type: str, frame_of_token: Tensor | None, length: int) -> Tensor | None:
    """BoolTensor [b, L, L] (True = q may attend k, ignoring padding; b = B' or 1), or None when
    every pair may.

    frame_of_token: LongTensor [B', L] frame of each position (needed by block_causal only).
    """
    if attn_type == "block_causal":
        if frame_of_token is None:
            raise ValueError("block_causal needs frame_of_token")
        return frame_of_token[:, None, :] <= frame_of_token[:, :, None]  # [B', L(q), L(k)]
    if attn_type == "causal":  # token order, which the layout keeps (gaze order inside a frame)
        device = frame_of_token.device if frame_of_token is not None else None
        return torch.ones(1, length, length, dtype=torch.bool, device=device).tril_()
    if attn_type == "bidirectional":
        return None
    raise ValueError(f"attn_type={attn_type!r} has no pairwise rule; valid: block_causal, causal, bidirectional")


def build_attention(is_real: Tensor, attn_type: str, frame_of_token: Tensor | None = None,
                    use_varlen: bool = False) -> GazedAttention:
    """The one mask (or packing plan) of a forward.

    is_real:        BoolTensor [B', L]  False at filler positions (and at padded slots, if any).
    attn_type:      block_causal | causal | bidirectional (frame_independent arrives here as
                    bidirectional over one sequence per frame, see ``gazed.TokenLayout``).
    frame_of_token: LongTensor [B', L]  needed by block_causal.
    use_varlen:     pack for flash-attn instead (block_causal has no varlen form: it keeps the mask).
    """
    if use_varlen and attn_type in ("causal", "bidirectional"):
        lengths = is_real.sum(1, dtype=torch.int32)  # [B']
        cu = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
        return GazedAttention(varlen=VarlenPlan(is_real.flatten().nonzero().squeeze(1), cu, int(lengths.max()),
                                                attn_type == "causal"))
    if frame_of_token is not None:
        frame_of_token = frame_of_token.to(is_real.device)
    rule = pairwise_rule(attn_type, frame_of_token, is_real.shape[1])
    has_pad = not bool(is_real.all())
    if rule is None:
        if not has_pad:
            return GazedAttention()  # sdpa's fastest path: no mask at all
        # A sequence with no real token at all keeps every key, so its (meaningless) rows stay finite.
        keys = is_real | ~is_real.any(1, keepdim=True)
        return GazedAttention(mask=keys[:, None, None, :])  # [B', 1, 1, L]
    if not has_pad:
        return GazedAttention(mask=rule[:, None])  # [b, 1, L, L]
    mask = rule & is_real[:, None, :]  # [B', L, L]
    mask.diagonal(dim1=-2, dim2=-1).fill_(True)  # filler queries see themselves (no empty row)
    return GazedAttention(mask=mask[:, None])  # [B', 1, L, L]


def _varlen_attention(plan: VarlenPlan, query: Tensor, key: Tensor, value: Tensor, scaling: float | None,
                      dropout: float) -> Tensor:
    """[B', H, L, d] x3 -> [B', L, H, d]; padded positions come back as zeros."""
    Bp, H, L, d = query.shape

    def pack(x: Tensor) -> Tensor:
        return x.transpose(1, 2).reshape(Bp * L, H, d).index_select(0, plan.indices)  # [M, H, d]

    out = VARLEN_KERNEL()(pack(query), pack(key), pack(value), plan.cu_seqlens, plan.cu_seqlens,
                          plan.max_seqlen, plan.max_seqlen, dropout_p=dropout, softmax_scale=scaling,
                          causal=plan.causal)  # [M, H, d]
    full = out.new_zeros(Bp * L, H, d).index_copy_(0, plan.indices, out)
    return full.view(Bp, L, H, d)


def gazed_attention_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask,
                            scaling: float | None = None, dropout: float = 0.0, **kwargs) -> tuple[Tensor, None]:
    """transformers' attention-function signature: q, k, v [B', H, L, d] -> ([B', L, H, d], None)."""
    if not isinstance(attention_mask, GazedAttention):  # a stock call on the same module
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    if attention_mask.varlen is not None:
        return _varlen_attention(attention_mask.varlen, query, key, value, scaling, dropout), None
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask.sdpa_mask(query.dtype),
                                         dropout_p=dropout, scale=scaling)  # [B', H, L, d]
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(GAZED_ATTENTION, gazed_attention_forward)
