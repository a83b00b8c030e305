"""Gaze decoder (spec sections 4.3, 4.4): a transformers ``LlamaModel`` body plus K-token heads.

The sequence interleaves frames and gazes, ``[V_0 | G_0 | V_1 | G_1 | ...]``; padded gazes get
attention-mask 0 and ``position_ids = cumsum(mask) - 1`` so they do not advance RoPE positions.
This module owns that layout for teacher forcing; generation (generation.py) grows the same
sequence chunk by chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaModel
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, apply_rotary_pos_emb

from autogaze.types import Gazes

# transformers renamed the layer's cache argument (4.51: past_key_value, 4.56+: past_key_values).
_CACHE_KWARG = ("past_key_values" if "past_key_values" in inspect.signature(LlamaDecoderLayer.forward).parameters
                else "past_key_value")


class GazeDecoder(nn.Module):
    """LlamaModel + ``lm_head`` (D -> K*V) + ``task_loss_prediction_head`` (D -> K).

    Head i of ``lm_head`` is the i-th block of V = P + 1 logits (id P is EOS/pad).
    """

    def __init__(self, llama_config: LlamaConfig, num_multi_token_pred: int):
        super().__init__()
        self.num_multi_token_pred = K = num_multi_token_pred
        self.vocab_size = llama_config.vocab_size
        self.eos_id = llama_config.eos_token_id
        self.model = LlamaModel(llama_config)
        self.lm_head = nn.Linear(llama_config.hidden_size, self.vocab_size * K, bias=False)
        self.task_loss_prediction_head = nn.Linear(llama_config.hidden_size, K, bias=False)
        # True: teacher forcing with padded slots packs each row (see _body_packed). False: the
        # reference path, one additive mask for every layer (kept for tests and benchmarks/gaze.py).
        self.packed_attention = True

    def embed(self, local_ids: Tensor) -> Tensor:
        """Frame-local ids [...] (pad = EOS id) -> embeddings [..., D]."""
        return self.model.embed_tokens(local_ids)

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
             past_key_values=None, out_positions: Tensor | None = None) -> Tensor:
        """Run the LlamaModel's layers; return final hidden states only where they are read.

        inputs_embeds [B, L, D]; attention_mask [B, L_past + L] (2-D padding mask); position_ids
        [B, L]; out_positions [S] indices into the L new tokens (None = all) -> hidden [B, S, D]
        after the final RMSNorm.

        Why not ``LlamaModel.forward``: the loss and the sampler read few positions (the sources of
        the gazes), so the last layer runs its queries, attention and MLP only there (its keys and
        values still cover every token). That saves about a quarter of the decoder's work; the
        other layers are the LlamaModel's own, called in order. Masks: none when there is no
        cache and no pad (sdpa ``is_causal``); padded rows without a cache are packed so that
        attention stays mask-free (``_body_packed``, unless ``packed_attention`` is off); else our
        additive 4-D mask (transformers' generic builder is slower, and a boolean mask costs torch
        a conversion per layer, profiled).
        """
        llama = self.model
        L = inputs_embeds.shape[1]
        past = attention_mask.shape[1] - L
        impl = llama.config._attn_implementation
        if (past_key_values is None and impl == "sdpa" and self.packed_attention
                and not bool(attention_mask.all())):
            return self._body_packed(inputs_embeds, attention_mask, position_ids, out_positions)
        mask4 = None  # None: causal via sdpa's is_causal (no cache, no pad)
        if past_key_values is not None or not bool(attention_mask.all()) or impl == "eager":
            mask4 = additive_mask_4d(attention_mask, L, _compute_dtype(inputs_embeds))
        # flash_attention_2 takes the 2-D padding mask (untested here: no GPU in CI).
        layer_mask = (None if bool(attention_mask.all()) else attention_mask) if impl == "flash_attention_2" else mask4
        cache_position = torch.arange(past, past + L, device=inputs_embeds.device)
        cos_sin = llama.rotary_emb(inputs_embeds, position_ids)
        h = inputs_embeds
        for layer in llama.layers[:-1]:
            out = layer(h, attention_mask=layer_mask, position_ids=position_ids, use_cache=past_key_values is not None,
                        cache_position=cache_position, position_embeddings=cos_sin,
                        **{_CACHE_KWARG: past_key_values})
            h = out[0] if isinstance(out, tuple) else out
        if out_positions is None:
            out_positions = torch.arange(L, device=h.device)
        h = _last_layer_at(llama.layers[-1], h, out_positions, cos_sin, mask4, past_key_values)
        return llama.norm(h)

    def _body_packed(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                     out_positions: Tensor | None) -> Tensor:
        """``body`` without a cache when some slots are padded; same contract and values.

        A padded key is never attended, so each row's real tokens are moved to the front (in order)
        and its pads to the back. Real queries then need plain causal attention over the packed row:
        sdpa ``is_causal`` without a mask, whose CPU flash kernel skips the upper triangle (an
        explicit mask costs it the full square: 2x the attention time of a B=8, L=3552 training
        step, measured). Only the tail that is not real in every row (the pads, which must still see
        exactly the real tokens before them, as upstream) attends with an explicit mask. Positions
        are permuted with the tokens. Cost: (L-T)^2/2 + T*L scores for a tail of T, always < L^2.
        """
        llama = self.model
        B, L, D = inputs_embeds.shape
        keep = attention_mask.bool()
        order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # [B, L] real first
        n_head = int(keep.sum(1).min())  # packed prefix that is real in every row
        keep_p = keep.gather(1, order)  # [B, L]
        h = inputs_embeds.gather(1, order[..., None].expand(B, L, D))
        cos_sin = llama.rotary_emb(h, position_ids.gather(1, order))
        dtype = _compute_dtype(inputs_embeds)

        def masked(q_orig: Tensor) -> Tensor:
            """q_orig [B, S] original index of each query -> additive [B, 1, S, L] over packed keys:
            a key is visible if real and not after the query in the original order."""
            keep_qk = keep_p[:, None, :] & (order[:, None, :] <= q_orig[:, :, None])
            return torch.zeros(keep_qk.shape, dtype=dtype, device=h.device).masked_fill_(
                ~keep_qk, torch.finfo(dtype).min)[:, None]

        tail_mask = masked(order[:, n_head:]) if n_head < L else None
        for layer in llama.layers[:-1]:
            h = _packed_layer(layer, h, cos_sin, n_head, tail_mask)
        if out_positions is None:
            out_positions = torch.arange(L, device=h.device)
        sel = torch.argsort(order, dim=1)[:, out_positions]  # [B, S] packed index of each read position
        mask_sel = masked(out_positions[None].expand(B, -1))
        return llama.norm(_last_layer_at(llama.layers[-1], h, sel, cos_sin, mask_sel, None))

    def heads(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """hidden [..., D] -> (logits [..., K, V] in fp32, task-loss predictions [..., K] in fp32).

        Softmax-bound values are upcast here so bf16 autocast never reaches log-softmax.
        """
        logits = self.lm_head(hidden).float().unflatten(-1, (self.num_multi_token_pred, self.vocab_size))
        return logits, self.task_loss_prediction_head(hidden).float()


@dataclass
class SequenceLayout:
    """Where each token sits in the interleaved teacher-forcing sequence of one batch.

    gaze_pos:   LongTensor [N]  sequence index of gaze slot n.
    vision_pos: LongTensor [T*V_tok]  sequence index of each vision token (frame-major).
    slot_in_frame: LongTensor [N]  index of slot n inside its frame (0, 1, ...).
    length:     int  L = T * V_tok + N.
    """

    gaze_pos: Tensor
    vision_pos: Tensor
    slot_in_frame: Tensor
    length: int


def sequence_layout(num_per_frame: Tensor, tokens_per_frame_vision: int) -> SequenceLayout:
    """num_per_frame [T] gaze slots per frame -> SequenceLayout (all index tensors on its device)."""
    dev = num_per_frame.device
    T, Vt = num_per_frame.numel(), tokens_per_frame_vision
    gaze_start = torch.cumsum(num_per_frame, 0) - num_per_frame  # [T] first slot of each frame
    frame_start = gaze_start + torch.arange(T, device=dev) * Vt  # [T] sequence index of V_t
    vision_pos = (frame_start[:, None] + torch.arange(Vt, device=dev)).flatten()
    frame_of_slot = torch.repeat_interleave(torch.arange(T, device=dev), num_per_frame)
    slot_in_frame = torch.arange(int(num_per_frame.sum()), device=dev) - gaze_start[frame_of_slot]
    gaze_pos = frame_start[frame_of_slot] + Vt + slot_in_frame
    return SequenceLayout(gaze_pos, vision_pos, slot_in_frame, T * Vt + int(num_per_frame.sum()))


def build_teacher_forcing_inputs(decoder: GazeDecoder, vision_tokens: Tensor, gazes: Gazes,
                                 layout: SequenceLayout) -> tuple[Tensor, Tensor]:
    """vision_tokens [B, T, V_tok, D], gazes [B, N] -> (inputs_embeds [B, L, D], attention_mask [B, L] long).

    Padded slots are embedded as EOS and masked (attention 0), as upstream.
    """
    B, T, Vt, D = vision_tokens.shape
    local = torch.where(gazes.is_padded, torch.full_like(gazes.ids, decoder.eos_id), gazes.local_ids())
    gaze_embeds = decoder.embed(local).to(vision_tokens.dtype)  # [B, N, D]
    embeds = vision_tokens.new_empty(B, layout.length, D)
    embeds[:, layout.vision_pos] = vision_tokens.reshape(B, T * Vt, D)
    embeds[:, layout.gaze_pos] = gaze_embeds
    mask = torch.ones(B, layout.length, dtype=torch.long, device=vision_tokens.device)
    mask[:, layout.gaze_pos] = (~gazes.is_padded).long()
    return embeds, mask


def additive_mask_4d(full_mask: Tensor, q_len: int, dtype: torch.dtype) -> Tensor:
    """Our own attention mask, so transformers skips its generic (vmap-based) mask builder.

    full_mask [B, L_kv] (1 = real token; the last q_len entries are the queries) ->
    additive [B, 1, q_len, L_kv] in ``dtype``: 0 where attention is allowed (causal, real keys),
    the dtype's minimum elsewhere (as transformers' eager masks; no NaN for an all-masked row).
    """
    B, L = full_mask.shape
    q_pos = torch.arange(L - q_len, L, device=full_mask.device)
    causal = torch.arange(L, device=full_mask.device)[None, :] <= q_pos[:, None]  # [q, L]
    keep = full_mask.bool()[:, None, None, :] & causal  # [B, 1, q, L]
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, torch.finfo(dtype).min)


def _rows(x: Tensor, sel: Tensor) -> Tensor:
    """x [B', L, ...] at positions sel: [S] (shared by every row) or [B, S] (per row) -> [B or B', S, ...]."""
    if sel.dim() == 1:
        return x[:, sel]
    x = x.expand(sel.shape[0], *x.shape[1:])
    return x.gather(1, sel.view(*sel.shape, *[1] * (x.dim() - 2)).expand(*sel.shape, *x.shape[2:]))


def _qkv(attn, x: Tensor, cos_sin) -> tuple[Tensor, Tensor, Tensor]:
    """x [B, L, D] (normed) -> q, k, v [B, H, L, d] with RoPE applied, as LlamaAttention does."""
    B, L, _ = x.shape
    q, k, v = (proj(x).view(B, L, -1, attn.head_dim).transpose(1, 2)  # [B, H, L, d]
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    q, k = apply_rotary_pos_emb(q, k, *cos_sin)
    return q, k, v


def _packed_layer(layer, h: Tensor, cos_sin, n_head: int, tail_mask: Tensor | None) -> Tensor:
    """A LlamaDecoderLayer over packed rows (see GazeDecoder._body_packed), composed from its own
    sub-modules: queries < n_head causal without a mask, the tail with tail_mask [B, 1, L-n_head, L].
    h [B, L, D] -> [B, L, D]."""
    attn = layer.self_attn
    B, L, _ = h.shape
    q, k, v = _qkv(attn, layer.input_layernorm(h), cos_sin)
    o = F.scaled_dot_product_attention(q[:, :, :n_head], k[:, :, :n_head], v[:, :, :n_head], is_causal=True,
                                       scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1])
    if tail_mask is not None:
        o_tail = F.scaled_dot_product_attention(q[:, :, n_head:], k, v, attn_mask=tail_mask.to(q.dtype),
                                                scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1])
        o = torch.cat([o, o_tail], dim=2)
    h = h + attn.o_proj(o.transpose(1, 2).reshape(B, L, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


def _last_layer_at(layer, h: Tensor, sel: Tensor, cos_sin, mask4: Tensor | None, cache) -> Tensor:
    """A LlamaDecoderLayer evaluated only for the queries ``sel`` (keys/values for all L tokens),
    composed from the layer's own sub-modules. h [B, L, D], sel [S] or [B, S] (per row, then with
    ``mask4`` [B, 1, S, L_kv] given for the selected queries) -> [B, S, D]."""
    attn = layer.self_attn
    B, L, _ = h.shape
    S = sel.shape[-1]
    x = layer.input_layernorm(h)
    cos, sin = cos_sin
    q = attn.q_proj(_rows(x, sel)).view(B, S, -1, attn.head_dim).transpose(1, 2)  # [B, H, S, d]
    k = attn.k_proj(x).view(B, L, -1, attn.head_dim).transpose(1, 2)  # [B, H_kv, L, d]
    v = attn.v_proj(x).view(B, L, -1, attn.head_dim).transpose(1, 2)
    q, _ = apply_rotary_pos_emb(q, q, _rows(cos, sel), _rows(sin, sel))
    k, _ = apply_rotary_pos_emb(k, k, cos, sin)
    if cache is not None:
        k, v = cache.update(k, v, attn.layer_idx)
    if mask4 is None:  # causal without pads: query at new-token index i sees keys 0..past+i
        idx = torch.arange(k.shape[2], device=h.device)
        keep = idx[None, :] <= (k.shape[2] - L + sel)[:, None]  # [S, L_kv]
        mask = torch.zeros(keep.shape, dtype=q.dtype, device=h.device).masked_fill_(~keep, torch.finfo(q.dtype).min)
    elif sel.dim() == 2:
        mask = mask4
    else:
        mask = mask4[:, :, sel]
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=attn.scaling,
                                       enable_gqa=q.shape[1] != k.shape[1])
    o = attn.o_proj(o.transpose(1, 2).reshape(B, S, -1))
    h_sel = _rows(h, sel) + o
    return h_sel + layer.mlp(layer.post_attention_layernorm(h_sel))


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype attention runs in: the autocast dtype when autocast is on, else x's."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


def positions_from_mask(mask: Tensor, past_mask: Tensor | None = None) -> Tensor:
    """RoPE positions ``cumsum(mask) - 1`` for the new tokens; mask [B, L], past_mask [B, L_past]."""
    base = 0 if past_mask is None else past_mask.sum(-1, keepdim=True)
    return (base + mask.cumsum(-1) - 1).clamp_min(0)
