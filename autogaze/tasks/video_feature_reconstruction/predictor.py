"""The predictor and its losses.

``FeaturePredictor`` is the VideoMAE task's ``MultiScaleViTMAE`` (block-causal encoder over the gazed tokens,
decoder over the context gazes plus mask tokens at every position of the predicted frames) with its pixel
head swapped for a linear head to the tower's width Df. Nothing of the MAE is re-implemented here: the
encoder, the decoder layout and the masks are the MAE task's own code.

Losses, per predicted frame f and target position k (the K finest-scale patches):

* ``l2``:    l_fk = mean_c (z_fkc - h_fkc)^2, raw targets (the MSE that upstream's key names).
* ``ln_l1``: l_fk = mean_c |z_fkc - LN(h_fk)_c|, LN without affine parameters: V-JEPA's loss with
             loss_exp = 1 on layer-normed targets (Bardes et al. 2024, "Revisiting feature prediction
             for learning visual representations from video").

A frame's loss is the weighted mean over its positions, ``sum_k w_k l_fk / sum_k w_k``, with w_k =
``gazed_patch_loss_weight`` where a real gaze of the context frame covers k (its pixel box contains k's
centre, at any scale) and ``patch_reconstruction_loss_weight`` elsewhere. Weights 1 and 1 give the plain
mean over all positions; 0 and 1 give V-JEPA's "predict only what was not seen".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from autogaze.tasks.video_mae_reconstruction.config import MultiScaleViTMAEConfig
from autogaze.tasks.video_mae_reconstruction.model import MultiScaleViTMAE
from autogaze.types import Gazes


class FeaturePredictor(MultiScaleViTMAE):
    """MultiScaleViTMAE with ``decoder.decoder_pred``: Linear(Dd, Df) instead of Linear(Dd, p*p*3)."""

    def __init__(self, config: MultiScaleViTMAEConfig, feature_dim: int, grad_checkpointing: bool = False):
        super().__init__(config)
        self.decoder.decoder_pred = nn.Linear(config.decoder_hidden_size, feature_dim)
        self._init_weights(self.decoder.decoder_pred)  # ViT-MAE's init (normal, std initializer_range)
        self.grad_checkpointing = grad_checkpointing

    def _run_layers(self, layers: nn.ModuleList, x: Tensor, mask: Tensor) -> Tensor:
        if not (self.grad_checkpointing and self.training and torch.is_grad_enabled()):
            return super()._run_layers(layers, x, mask)
        for layer in layers:  # activations are recomputed in the backward pass: memory for time
            x = checkpoint(layer, x, mask, use_reentrant=False)
        return x

    def forward(self, video: Tensor, gazes: Gazes, frame_ids: Tensor) -> Tensor:
        """video [B, T, 3, S, S], gazes [B, N], frame_ids [F] sorted -> predictions [B, F, K, Df]."""
        latent = self.forward_encoder(video, gazes)  # [B, 1+N, D]
        return self.forward_decoder(latent, gazes, frame_ids, video.shape[1])


def position_losses(name: str, pred: Tensor, target: Tensor) -> Tensor:
    """pred, target [B, F, K, Df] -> per-position loss [B, F, K] (float32)."""
    pred, target = pred.float(), target.float()
    if name == "l2":
        return (pred - target).pow(2).mean(-1)
    if name == "ln_l1":
        return (pred - F.layer_norm(target, target.shape[-1:])).abs().mean(-1)
    raise ValueError(f"unknown feature loss {name!r}")


def covered_positions(gazes: Gazes, frame_ids: Tensor, grid_sides: list[int]) -> Tensor:
    """BoolTensor [B, F, K]: finest patch k of frame ``frame_ids[f]`` lies under a real gaze of that frame.

    A gaze at a coarser scale covers the finest patches whose centres fall inside its pixel box; with grid g
    and finest grid G that is patch floor((i + 0.5) * g / G) along each axis, which is what
    ``nearest-exact`` upsampling computes (it also handles G not a multiple of g, e.g. 4 -> 14).
    """
    mask = gazes.to_mask()[:, frame_ids]  # [B, F, P]
    B, F_, _ = mask.shape
    G = grid_sides[-1]
    covered = torch.zeros(B * F_, 1, G, G, device=mask.device)
    offset = 0
    for g in grid_sides:
        m = mask[..., offset: offset + g * g].reshape(B * F_, 1, g, g)
        covered = torch.maximum(covered, F.interpolate(m, size=(G, G), mode="nearest-exact"))
        offset += g * g
    return covered.view(B, F_, G * G) > 0


def frame_losses(per_position: Tensor, covered: Tensor, gazed_weight: float, ungazed_weight: float) -> Tensor:
    """per_position [B, F, K], covered [B, F, K] -> [B, F]: the weighted mean over positions.

    When no position has weight (gazed weight 0 and every position covered) the frame's loss is 0: nothing
    was left to predict."""
    w = torch.where(covered, gazed_weight, ungazed_weight).to(per_position.dtype)  # [B, F, K]
    return (w * per_position).sum(-1) / w.sum(-1).clamp_min(1e-12)
