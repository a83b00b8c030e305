"""DINOv2-with-registers tower that encodes only the gazed patches of a video.

The second family on ``GazedViTMixin``: a subclass of transformers' ``Dinov2WithRegistersModel``
(stock keys, no new parameters) whose hooks differ from SigLIP's in three ways, which is what
makes it a test of the mixin:
* its position table has a CLS row and is interpolated with antialias (the stock rule, kept so
  that one fully gazed frame equals the stock model);
* it has **prefix tokens**: CLS (+ its position row) and the registers. Every frame gets its own
  copy, placed before that frame's slots, so under ``block_causal`` they obey the same rule as the
  slots: frame t's CLS sees frames <= t. (One shared CLS that saw every frame would leak later
  frames into earlier ones through the second layer.)
* its layers take the mask through ``head_mask`` (one entry per layer).

Outputs: ``last_hidden_state`` [B, N, D] (slots), ``prefix_hidden_state`` [B, T, 1+R, D] (per-frame
CLS then registers) and ``pooler_output`` [B, D] = the **last** frame's CLS, which has seen the whole
clip under block_causal, causal and bidirectional attention (only its own frame under
frame_independent; take ``prefix_hidden_state[:, :, 0]`` for per-frame CLS features).
"""
from __future__ import annotations

import torch
from torch import Tensor
from transformers import Dinov2WithRegistersConfig
from transformers import Dinov2WithRegistersModel as StockDinov2WithRegistersModel

from autogaze.types import Gazes

from ..attention import GazedAttention
from ..gazed import GazedViTMixin, GazedVisionOutput


class Dinov2WithRegistersModel(GazedViTMixin, StockDinov2WithRegistersModel):
    """``model(pixel_values [B, T, C, H, W], gazing_info)`` -> GazedVisionOutput; see the module doc.

    ``Dinov2WithRegistersModel.from_pretrained(path_or_id, scales=..., attn_type=...)`` loads a stock
    checkpoint (e.g. facebook/dinov2-with-registers-base, patch 14: scales 28+56+98+196 by default).
    """

    def __init__(self, config: Dinov2WithRegistersConfig):
        super().__init__(config)
        self.init_gazing()

    def _gazed_patch_linear(self) -> tuple[Tensor, Tensor | None]:
        conv = self.embeddings.patch_embeddings.projection  # Conv2d(C, D, p, stride=p)
        return conv.weight.flatten(1), conv.bias  # [D, C*p*p], [D]

    def _gazed_position_rows(self, side: int) -> Tensor:
        """[side*side, D]: the stock method (bicubic with antialias, in float32), CLS row dropped.
        It reads only the stub's shape."""
        emb = self.embeddings
        stub = emb.position_embeddings[:, :1].expand(-1, 1 + side * side, -1)  # [1, 1+side^2, D], no copy
        p = self.gazing.patch_size
        return emb.interpolate_pos_encoding(stub, side * p, side * p)[0, 1:]

    def _gazed_prefix_rows(self) -> Tensor:
        """[1+R, D]: CLS + its position row, then the registers (which have no position), the stock order."""
        emb = self.embeddings
        cls = emb.cls_token[0] + emb.position_embeddings[0, :1]  # [1, D]
        return torch.cat([cls, emb.register_tokens[0]], dim=0)

    def _gazed_encode(self, hidden: Tensor, attention: GazedAttention) -> Tensor:
        hidden = self.embeddings.dropout(hidden)  # the stock model drops out its whole embedding
        per_layer = (attention,) * self.config.num_hidden_layers  # the encoder indexes head_mask[i]
        out = self.encoder(hidden, head_mask=per_layer).last_hidden_state
        return self.layernorm(out)

    def forward(self, pixel_values: Tensor, gazing_info: dict | Gazes, **kwargs) -> GazedVisionOutput:
        """pixel_values [B, T, C, H, W] (DINOv2-normalised); gazing_info: upstream's dict or Gazes."""
        hidden, prefix, gazes = self.encode_gazed(pixel_values, gazing_info)
        return GazedVisionOutput(last_hidden_state=hidden, pooler_output=prefix[:, -1, 0], is_padded=gazes.is_padded,
                                 prefix_hidden_state=prefix)


__all__ = ["Dinov2WithRegistersModel"]
