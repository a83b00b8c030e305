"""SigLIP / SigLIP2 vision tower that encodes only the gazed patches of a video.

A subclass of transformers' ``SiglipVisionModel``: same modules and state-dict keys, so a stock
checkpoint (e.g. google/siglip2-base-patch16-224) loads as is, and no parameter is added. What
changes is ``forward``: it takes a video and gazes instead of one image (see ``gazed.py``).

SigLIP has no CLS token and no scale or time embedding: a slot's feature depends only on its
pixels, its position row and what the mask lets it see.

Deviation from upstream: the attention-pooling head ignores padded slots (upstream pools over
them too, so its ``pooler_output`` depends on meaningless rows whenever a frame stops early).
Where no slot is padded the two agree.
"""
from __future__ import annotations

from torch import Tensor
from transformers import SiglipVisionConfig
from transformers import SiglipVisionModel as StockSiglipVisionModel

from autogaze.types import Gazes

from ..attention import GazedAttention
from ..gazed import GazedViTMixin, GazedVisionOutput


class SiglipVisionModel(GazedViTMixin, StockSiglipVisionModel):
    """``model(pixel_values [B, T, C, H, W], gazing_info)`` -> GazedVisionOutput with
    last_hidden_state [B, N, D] (every slot; padded ones are zero rows) and pooler_output [B, D].

    ``SiglipVisionModel.from_pretrained(path_or_id, scales="32+64+112+224", attn_type="block_causal",
    attn_implementation="sdpa", max_embed_batch_size=None)``. Pixels are SigLIP-normalised frames
    (the stock ``SiglipImageProcessor``), ideally already at the largest scale.
    """

    def __init__(self, config: SiglipVisionConfig):
        super().__init__(config)
        self.init_gazing()

    # ---------------------------------------------------------------- hooks

    def _gazed_patch_linear(self) -> tuple[Tensor, Tensor | None]:
        conv = self.vision_model.embeddings.patch_embedding  # Conv2d(C, D, p, stride=p)
        return conv.weight.flatten(1), conv.bias  # [D, C*p*p], [D]

    def _gazed_position_rows(self, side: int) -> Tensor:
        """[side*side, D] via the stock rule: the table itself when side matches it, else bicubic
        (align_corners=False, no antialias). The stock method reads only the stub's shape."""
        emb = self.vision_model.embeddings
        stub = emb.position_embedding.weight[:1].expand(side * side, -1)[None]  # [1, side^2, D], no copy
        p = self.gazing.patch_size
        return emb.interpolate_pos_encoding(stub, side * p, side * p)[0]

    def _gazed_encode(self, hidden: Tensor, attention: GazedAttention) -> Tensor:
        vm = self.vision_model
        out = vm.encoder(inputs_embeds=hidden, attention_mask=attention).last_hidden_state
        return vm.post_layernorm(out)

    # ---------------------------------------------------------------- forward

    def pool(self, hidden: Tensor, is_padded: Tensor) -> Tensor:
        """The stock attention-pooling head with padded slots hidden: [B, N, D], [B, N] -> [B, D].

        A clip whose slots are all padded keeps them (its output is meaningless but finite)."""
        head = self.vision_model.head
        hide = is_padded & ~is_padded.all(1, keepdim=True)
        probe = head.probe.expand(hidden.shape[0], -1, -1)  # [B, 1, D]
        pooled = head.attention(probe, hidden, hidden, key_padding_mask=hide if bool(hide.any()) else None,
                                need_weights=False)[0]  # [B, 1, D]
        pooled = pooled + head.mlp(head.layernorm(pooled))
        return pooled[:, 0]

    def forward(self, pixel_values: Tensor, gazing_info: dict | Gazes, **kwargs) -> GazedVisionOutput:
        """pixel_values [B, T, C, H, W]; gazing_info: upstream's dict or Gazes with ids [B, N]."""
        if kwargs.get("interpolate_pos_encoding") is False:
            raise ValueError("the gazed tower always interpolates position rows to each scale's grid")
        hidden, _, gazes = self.encode_gazed(pixel_values, gazing_info)
        pooled = self.pool(hidden, gazes.is_padded) if self.vision_model.use_head else None
        return GazedVisionOutput(last_hidden_state=hidden, pooler_output=pooled, is_padded=gazes.is_padded)


__all__ = ["SiglipVisionModel"]
