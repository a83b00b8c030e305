"""Plain tube VideoMAE (NeurIPS 2022) whose visible set is a ``Gazes`` batch.

Subclasses transformers' ``VideoMAEForPreTraining`` and keeps its module tree, so its weights (and
those of any VideoMAE pre-training checkpoint in that layout) load key for key: ``videomae.*``
(Conv3d tubelet embedding, ``VideoMAELayer`` stack, final LayerNorm), ``encoder_to_decoder``
(no bias), ``mask_token``, ``decoder.*`` (``VideoMAEDecoder``: layers, norm, head). Only ``forward``
is ours, because HF's takes a rectangular boolean mask and the visible set here comes as gaze
slots, possibly padded:

* encoder: the gazed tokens (+ fixed 1-D sin-cos rows of their ids) only, full attention, padded
  slots hidden as keys;
* decoder: the whole clip grid, visible rows = projected encoder output + decoder sin-cos, the rest
  ``mask_token`` + sin-cos. This is HF's ``[visible ; masked]`` sequence in another order, which
  full attention cannot tell apart (positions are explicit).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import VideoMAEConfig, VideoMAEForPreTraining

from autogaze.types import Gazes


class TubeMAE(VideoMAEForPreTraining):
    """VideoMAE encoder over gazed tubelets, decoder over the full clip grid."""

    def __init__(self, config: VideoMAEConfig, weight_init: str = "xavier"):
        """weight_init: ``normal`` keeps transformers' N(0, initializer_range) start; ``xavier`` (the
        default) re-initialises every Linear weight xavier-uniform, as VideoMAE's and MAE's own code
        do. transformers' std 0.02 suits ViT-B's 768 dims; at 64 dims each Linear then shrinks its
        input about sixfold and the encoder's gradients vanish (docs/results.md). Loaded weights
        replace either start."""
        super().__init__(config)
        if weight_init == "xavier":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
        elif weight_init != "normal":
            raise ValueError(f"weight_init must be 'xavier' or 'normal', got {weight_init!r}")
        # HF keeps both sin-cos tables as plain tensor attributes (re-copied to the device every
        # forward); buffers follow ``.to`` instead. Non-persistent: they are fixed, not weights.
        self.register_buffer("encoder_pos", self.videomae.embeddings.position_embeddings.clone(), persistent=False)
        self.register_buffer("decoder_pos", self.position_embeddings.clone(), persistent=False)

    @property
    def max_tokens(self) -> int:
        return int(self.encoder_pos.shape[1])

    def embed_tokens(self, video: Tensor) -> Tensor:
        """video [B, T, 3, H, W] -> tubelet embeddings X [B, N, D] (Conv3d only, no positions),
        tokens ordered (t', h', w'), i.e. id = t' * P + h' * (W / p) + w'."""
        return self.videomae.embeddings.patch_embeddings(video)

    def forward_encoder(self, tokens: Tensor, gazes: Gazes) -> Tensor:
        """tokens X [B, N, D], gazes [B, K] -> latent [B, K, D] (padded slots hold junk)."""
        B, N, D = tokens.shape
        if N > self.max_tokens:
            raise ValueError(f"{N} tokens exceed the position table ({self.max_tokens}); raise task.max_num_frames")
        x = tokens + self.encoder_pos[:, :N].to(tokens.dtype)
        x = x.gather(1, gazes.ids[..., None].expand(-1, -1, D))                     # [B, K, D]
        # Boolean key mask for sdpa (True = attend); None keeps the fused kernel when nothing is padded.
        mask = None if not bool(gazes.is_padded.any()) else (~gazes.is_padded)[:, None, None, :]
        for layer in self.videomae.encoder.layer:
            x = layer(x, mask)  # VideoMAELayer(hidden_states, head_mask) -> sdpa attn_mask
        return self.videomae.layernorm(x)

    def forward_decoder(self, latent: Tensor, gazes: Gazes, num_tokens: int) -> Tensor:
        """latent [B, K, D] -> predictions [B, N, u*p*p*3] for every token (visible rows included;
        the task reads only the masked ones)."""
        B, K, _ = latent.shape
        N = num_tokens
        pos = self.decoder_pos[:, :N].to(latent.dtype)                               # [1, N, Dd]
        vis = self.encoder_to_decoder(latent)                                        # [B, K, Dd]
        Dd = vis.shape[-1]
        vis = vis + pos[0][gazes.ids]
        grid = (self.mask_token.to(vis.dtype) + pos).expand(B, N, Dd)
        # Padded slots scatter into a throw-away extra row N, so they never overwrite a token.
        grid = torch.cat([grid, grid.new_zeros(B, 1, Dd)], dim=1)
        idx = gazes.ids.masked_fill(gazes.is_padded, N)
        grid = grid.scatter(1, idx[..., None].expand(-1, -1, Dd), vis)[:, :N]       # [B, N, Dd]
        return self.decoder(grid, return_token_num=0).logits                         # [B, N, u*p*p*3]

    def forward(self, video: Tensor, gazes: Gazes, tokens: Tensor | None = None) -> Tensor:
        """video [B, T, 3, H, W], gazes [B, K] -> predictions [B, N, u*p*p*3].
        ``tokens`` [B, N, D] (from ``embed_tokens``) skips the Conv3d when the caller has them."""
        x = self.embed_tokens(video) if tokens is None else tokens
        return self.forward_decoder(self.forward_encoder(x, gazes), gazes, x.shape[1])
