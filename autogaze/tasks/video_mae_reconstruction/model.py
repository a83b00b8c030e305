"""Multi-scale, block-causal ViT-MAE that rebuilds chosen frames from gazed patches.

Composed from transformers' ViT-MAE parts: ``ViTMAEEmbeddings`` (subclassed to add scale/time
tables), ``ViTMAEEncoder``'s ``ViTMAELayer`` stack, ``ViTMAEDecoder`` (subclassed likewise). The
module tree reproduces the upstream parameter names, so ``videomae.pt`` loads key for key after the
``mae.`` prefix: ``vit.embeddings.*``, ``vit.encoder.layer.*``, ``vit.layernorm.*``, ``decoder.*``.

Attention is sdpa with a boolean block-causal mask, handed to each ``ViTMAELayer`` through its
``head_mask`` argument, which transformers' sdpa path forwards as ``attn_mask``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEDecoder, ViTMAEEncoder, ViTMAEPreTrainedModel

from autogaze.types import Gazes

from .config import MultiScaleViTMAEConfig
from .embeddings import MultiScaleViTMAEEmbeddings, decoder_position_rows
from .masks import block_causal_mask


class MultiScaleViTMAEDecoder(ViTMAEDecoder):
    """ViT-MAE decoder plus ``decoder_scale_embed`` [S, Dd] and ``time_embed`` [max_num_frames, Dd]
    (zero-initialised, see MultiScaleViTMAEEmbeddings)."""

    def __init__(self, config: MultiScaleViTMAEConfig, num_patches: int):
        super().__init__(config, num_patches)
        Dd = config.decoder_hidden_size
        self.decoder_scale_embed = nn.Parameter(torch.zeros(len(config.scales), Dd)) if config.scale_embed else None
        self.time_embed = nn.Parameter(torch.zeros(config.max_num_frames, Dd)) if config.time_embed else None


class MultiScaleViTMAEEncoder(nn.Module):
    """The ``vit`` half: embeddings, a ViTMAEEncoder layer stack and the final LayerNorm."""

    def __init__(self, config: MultiScaleViTMAEConfig):
        super().__init__()
        self.embeddings = MultiScaleViTMAEEmbeddings(config)
        self.encoder = ViTMAEEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class MultiScaleViTMAE(ViTMAEPreTrainedModel):
    """Encoder over gazed tokens, decoder over context gazes + all tokens of the rebuilt frames."""

    config_class = MultiScaleViTMAEConfig

    def __init__(self, config: MultiScaleViTMAEConfig):
        super().__init__(config)
        self.vit = MultiScaleViTMAEEncoder(config)
        self.decoder = MultiScaleViTMAEDecoder(config, num_patches=self.vit.embeddings.num_patches)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Linear) and self.config.weight_init == "xavier":
            nn.init.xavier_uniform_(module.weight)
        if isinstance(module, MultiScaleViTMAEDecoder):
            # HF zeroes decoder_pos_embed here (stock weights overwrite it); a fresh model needs the
            # fixed sin-cos table instead, so re-run the decoder's own initialisation.
            module.initialize_weights(self.vit.embeddings.num_patches)

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def num_output_patches(self) -> int:
        """Tokens of the largest scale (the reconstructed grid), e.g. 196."""
        return (self.config.scales[-1] // self.config.patch_size) ** 2

    def _run_layers(self, layers: nn.ModuleList, x: Tensor, mask: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x, mask)  # ViTMAELayer(hidden_states, head_mask) -> sdpa attn_mask
        return x

    def forward_encoder(self, video: Tensor, gazes: Gazes) -> Tensor:
        """video [B, T, 3, H, W], gazes [B, N] -> latent [B, 1+N, D] (CLS first)."""
        emb = self.vit.embeddings
        tokens = emb(video)  # [B, T, P, D]
        B, T, P, D = tokens.shape
        # Padded slots gather global id 0 as a dummy; the mask hides them as keys.
        idx = gazes.ids.masked_fill(gazes.is_padded, 0)
        x = tokens.reshape(B, T * P, D).gather(1, idx[..., None].expand(-1, -1, D))  # [B, N, D]
        x = torch.cat([emb.cls_embedding().to(x.dtype).expand(B, -1, -1), x], dim=1)  # [B, 1+N, D]
        mask = block_causal_mask(gazes.frame_index(), ~gazes.is_padded, self.config.causal)
        x = self._run_layers(self.vit.encoder.layer, x, mask)
        return self.vit.layernorm(x)

    def forward_decoder(self, latent: Tensor, gazes: Gazes, frame_ids: Tensor, num_frames: int) -> Tensor:
        """latent [B, 1+N, D] -> patch predictions [B, F, K, p*p*3] of the largest scale (K = 196).

        Sequence: CLS, the gazed slots of frames *not* rebuilt, then all P tokens of each rebuilt
        frame (gazed ones carry encoder features, the rest are mask tokens). Order inside the
        sequence is irrelevant (attention is permutation-equivariant); the mask uses frames only.
        """
        dec, P, T = self.decoder, self.tokens_per_frame, num_frames
        x = dec.decoder_embed(latent)  # [B, 1+N, Dd]
        B, _, Dd = x.shape
        # Scatter real gazes into a full grid of mask tokens; padded slots land on a throw-away
        # extra row TP, so a pad never overwrites anything (our fix).
        idx = gazes.ids.masked_fill(gazes.is_padded, T * P)
        full = dec.mask_token.to(x.dtype).expand(B, T * P + 1, Dd)
        full = torch.scatter(full, 1, idx[..., None].expand(-1, -1, Dd), x[:, 1:])  # [B, TP+1, Dd]
        full = full[:, : T * P].view(B, T, P, Dd) + decoder_position_rows(dec, self.config).to(x.dtype)
        if dec.time_embed is not None:
            full = full + dec.time_embed[:T].to(x.dtype)[None, :, None]
        full = full.reshape(B, T * P, Dd)

        frame_of_slot = gazes.frame_index()  # [N]
        is_rebuilt = torch.zeros(T, dtype=torch.bool, device=x.device)
        is_rebuilt[frame_ids] = True
        keep = ~is_rebuilt[frame_of_slot]  # [N] context slots (shared by the batch)
        ctx_pad = gazes.is_padded[:, keep]  # [B, Nc]
        ctx_idx = gazes.ids[:, keep].masked_fill(ctx_pad, 0)
        ctx = full.gather(1, ctx_idx[..., None].expand(-1, -1, Dd))  # [B, Nc, Dd]
        F_ = frame_ids.numel()
        rec_idx = (frame_ids[:, None] * P + torch.arange(P, device=x.device)).reshape(-1)  # [F*P]
        cls = x[:, :1] + dec.decoder_pos_embed[:, :1].to(x.dtype)
        seq = torch.cat([cls, ctx, full[:, rec_idx]], dim=1)  # [B, 1+Nc+F*P, Dd]

        frames = torch.cat([frame_of_slot[keep], frame_ids.repeat_interleave(P)])
        valid = torch.cat([~ctx_pad, ctx_pad.new_ones(B, F_ * P)], dim=1)
        mask = block_causal_mask(frames, valid, self.config.causal)
        seq = self._run_layers(dec.decoder_layers, seq, mask)

        K = self.num_output_patches
        out = seq[:, -F_ * P:].reshape(B, F_, P, Dd)[:, :, P - K:]  # largest scale = last K ids
        return dec.decoder_pred(dec.decoder_norm(out))  # [B, F, K, p*p*3]

    def patchify(self, frame: Tensor) -> Tensor:
        """[C, H, W] -> [h*w, p*p*C], the inverse of ``unpatchify`` for one frame (row-major patches,
        (row, col, channel) inside a patch)."""
        p = self.config.patch_size
        C, H, W = frame.shape
        x = frame.reshape(C, H // p, p, W // p, p).permute(1, 3, 2, 4, 0)  # [h, w, p, p, C]
        return x.reshape((H // p) * (W // p), p * p * C)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """[B, F, h*w, p*p*C] -> [B, F, C, h*p, w*p]; the patch vector is laid out (row, col, channel)
        as in HF ViT-MAE's ``patchify``."""
        B, F_, K, _ = patches.shape
        p, C = self.config.patch_size, self.config.num_channels
        h = w = int(round(K ** 0.5))
        x = patches.reshape(B, F_, h, w, p, p, C)
        return x.permute(0, 1, 6, 2, 4, 3, 5).reshape(B, F_, C, h * p, w * p)

    def forward(self, video: Tensor, gazes: Gazes, frame_ids: Tensor) -> Tensor:
        """video [B, T, 3, H, W], gazes [B, N], frame_ids [F] sorted -> reconstruction [B, F, 3, H, W]."""
        latent = self.forward_encoder(video, gazes)
        return self.unpatchify(self.forward_decoder(latent, gazes, frame_ids, video.shape[1]))
