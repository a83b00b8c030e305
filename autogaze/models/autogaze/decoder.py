"""Gaze decoder: a transformers ``LlamaModel`` body plus K-token heads.

The sequence interleaves frames and gazes, ``[V_0 | G_0 | V_1 | G_1 | ...]``; padded gazes get
attention-mask 0 and ``position_ids = cumsum(mask) - 1`` so they do not advance RoPE positions.
This module owns that layout for teacher forcing; generation (generation.py) grows the same
sequence chunk by chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import inspect

import torch
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaModel
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from autogaze.models.autogaze.layers import additive, last_layer_at, layer_cached, layer_packed, norm, rope_tables
from autogaze.models.autogaze.speed import SpeedOptions
from autogaze.types import Gazes
from autogaze.utils.linear import linear

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
        # Per-model code-path choices (speed.py): fast_decoder selects body's path (see there) and
        # greedy_host_rows the greedy pick (generation.py). Set through speed.apply_speed_options.
        self.speed = SpeedOptions()

    def embed(self, local_ids: Tensor) -> Tensor:
        """Frame-local ids [...] (pad = EOS id) -> embeddings [..., D]."""
        return self.model.embed_tokens(local_ids)

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
             past_key_values=None, out_positions: Tensor | None = None) -> Tensor:
        """Run the decoder layers; return final hidden states only where they are read.

        inputs_embeds [B, L, D]; attention_mask [B, L_past + L] (2-D padding mask); position_ids
        [B, L]; out_positions [S] indices into the L new tokens (None = all) -> hidden [B, S, D]
        after the final RMSNorm.

        Why not ``LlamaModel.forward``: the loss and the sampler read few positions (the sources of
        the gazes), so the last layer runs its queries, attention and MLP only there (its keys and
        values still cover every token), about a quarter of the decoder's work. The fast path
        (``speed.fast_decoder``, sdpa) evaluates each layer from its sub-modules (layers.py); without
        a cache, padded rows are packed so attention stays causal and mask-free (``_body_packed``).
        ``fast_decoder=False`` is the reference: the layers' own forward with one additive mask.
        """
        if out_positions is None:
            out_positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        if not self.speed.fast_decoder or self.model.config._attn_implementation != "sdpa":
            return self._body_reference(inputs_embeds, attention_mask, position_ids, past_key_values, out_positions)
        if past_key_values is None:
            return self._body_packed(inputs_embeds, attention_mask, position_ids, out_positions)
        llama = self.model
        L = inputs_embeds.shape[1]
        # One query and no pad anywhere: every cached key is visible, so no mask at all.
        mask4 = (None if L == 1 and bool(attention_mask.all())
                 else additive_mask_4d(attention_mask, L, _compute_dtype(inputs_embeds)))
        cos, sin = rope_tables(llama.rotary_emb, inputs_embeds, position_ids)
        h = inputs_embeds
        for layer in llama.layers[:-1]:
            h = layer_cached(layer, h, cos, sin, past_key_values, mask4)
        return norm(llama.norm, last_layer_at(llama.layers[-1], h, out_positions, cos, sin, mask4, past_key_values))

    def _body_reference(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                        past_key_values, out_positions: Tensor) -> Tensor:
        """``body`` through each ``LlamaDecoderLayer``'s own forward and one additive mask (a 2-D
        padding mask for flash_attention_2, untested here: no GPU in CI). Same contract."""
        llama = self.model
        L = inputs_embeds.shape[1]
        past = attention_mask.shape[1] - L
        if llama.config._attn_implementation == "flash_attention_2":
            layer_mask = None if bool(attention_mask.all()) else attention_mask
        else:
            layer_mask = additive_mask_4d(attention_mask, L, _compute_dtype(inputs_embeds))
        cache_position = torch.arange(past, past + L, device=inputs_embeds.device)
        cos_sin = llama.rotary_emb(inputs_embeds, position_ids)
        h = inputs_embeds
        for layer in llama.layers:
            out = layer(h, attention_mask=layer_mask, position_ids=position_ids, use_cache=past_key_values is not None,
                        cache_position=cache_position, position_embeddings=cos_sin,
                        **{_CACHE_KWARG: past_key_values})
            h = out[0] if isinstance(out, tuple) else out
        return llama.norm(h[:, out_positions])

    def _body_packed(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                     out_positions: Tensor) -> Tensor:
        """``body`` without a cache (teacher forcing); same contract and values.

        A padded key is never attended, so each row's real tokens are moved to the front (in order)
        and its pads to the back. Real queries then need plain causal attention over the packed row:
        sdpa ``is_causal`` without a mask, whose CPU flash kernel skips the upper triangle (an
        explicit mask costs it the full square: 2x the attention time of a B=8, L=3552 training
        step, measured). Only the tail that is not real in every row (the pads, which must still see
        exactly the real tokens before them, as upstream) attends with an explicit mask. Positions
        are permuted with the tokens. Cost: (L-T)^2/2 + T*L scores for a tail of T, always < L^2.
        Rows without pads are not permuted at all.
        """
        llama = self.model
        B, L, D = inputs_embeds.shape
        keep = attention_mask.bool()
        if bool(keep.all()):
            cos, sin = rope_tables(llama.rotary_emb, inputs_embeds, position_ids)
            h = inputs_embeds
            for layer in llama.layers[:-1]:
                h = layer_packed(layer, h, cos, sin, L, None)
            return norm(llama.norm, last_layer_at(llama.layers[-1], h, out_positions, cos, sin, None, None))
        order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices  # [B, L] real first
        n_head = int(keep.sum(1).min())  # packed prefix that is real in every row
        keep_p = keep.gather(1, order)  # [B, L]
        h = inputs_embeds.gather(1, order[..., None].expand(B, L, D))
        cos, sin = rope_tables(llama.rotary_emb, h, position_ids.gather(1, order))
        dtype = _compute_dtype(inputs_embeds)

        def masked(q_orig: Tensor) -> Tensor:
            """q_orig [B, S] original index of each query -> additive [B, 1, S, L] over packed keys:
            a key is visible if real and not after the query in the original order."""
            return additive(keep_p[:, None, :] & (order[:, None, :] <= q_orig[:, :, None]), dtype)[:, None]

        tail_mask = masked(order[:, n_head:]) if n_head < L else None
        for layer in llama.layers[:-1]:
            h = layer_packed(layer, h, cos, sin, n_head, tail_mask)
        sel = torch.argsort(order, dim=1)[:, out_positions]  # [B, S] packed index of each read position
        mask_sel = masked(out_positions[None].expand(B, -1))
        return norm(llama.norm, last_layer_at(llama.layers[-1], h, sel, cos, sin, mask_sel, None))

    def heads(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """hidden [..., D] -> (logits [..., K, V] in fp32, task-loss predictions [..., K] in fp32).

        Softmax-bound values are upcast here so bf16 autocast never reaches log-softmax.
        """
        logits = linear(hidden, self.lm_head.weight).float().unflatten(-1, (self.num_multi_token_pred, self.vocab_size))
        return logits, self.task_loss_prediction_head(hidden).float()

    def head_logits(self, hidden: Tensor, head: Tensor) -> Tensor:
        """hidden [B, N, D], head [N] (0..K-1) -> logits [B, N, V] in fp32 of each slot's own head.

        Equals ``heads(hidden)[0]`` gathered at ``head``, but each head's product runs on its own
        slots only: K times fewer FLOPs and no [B, N, K, V] tensor (nor its zero-filled gradient).
        """
        K = self.num_multi_token_pred
        weight = self.lm_head.weight.view(K, self.vocab_size, -1)  # [K, V, D]
        order = torch.argsort(head, stable=True)
        counts = torch.bincount(head, minlength=K).tolist()
        groups = hidden[:, order].split(counts, dim=1)
        logits = torch.cat([linear(g, weight[r]) for r, g in enumerate(groups) if counts[r]], dim=1)
        return logits.float()[:, torch.argsort(order)]


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
    additive [B, 1, q_len, L_kv] in ``dtype`` (``layers.additive``): causal, real keys only.
    """
    B, L = full_mask.shape
    q_pos = torch.arange(L - q_len, L, device=full_mask.device)
    causal = torch.arange(L, device=full_mask.device)[None, :] <= q_pos[:, None]  # [q, L]
    return additive(full_mask.bool()[:, None, None, :] & causal, dtype)  # [B, 1, q, L]


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype attention runs in: the autocast dtype when autocast is on, else x's."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


def positions_from_mask(mask: Tensor, past_mask: Tensor | None = None) -> Tensor:
    """RoPE positions ``cumsum(mask) - 1`` for the new tokens; mask [B, L], past_mask [B, L_past]."""
    base = 0 if past_mask is None else past_mask.sum(-1, keepdim=True)
    return (base + mask.cumsum(-1) - 1).clamp_min(0)
