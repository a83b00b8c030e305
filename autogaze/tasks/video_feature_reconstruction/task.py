"""Video feature reconstruction: predict a frozen tower's features at every patch position from the gazes.

    task = VideoFeatureReconstruction.from_config(cfg.task)      # Hydra `task` group dict
    task.load_task_weights("exps/<exp>/checkpoint_latest_task.pt")  # the trained predictor
    out = task(batch.video_for_task, rollout.gazes, generator=g)   # TaskOutput, reward = -loss per frame

A latent-prediction reward in the spirit of V-JEPA (Bardes et al. 2024): instead of rebuilding pixels, the
predictor rebuilds what a frozen vision tower sees when it is given *every* patch of the clip, from the
gazed patches only. Targets h [B, F, K, Df] are the tower's features at the K finest-scale positions of each
predicted frame; predictions z come from ``FeaturePredictor`` (the MAE task's block-causal model with a
feature head). Reward, trajectory lengths and task-loss targets are laid out exactly as the MAE task's,
so GRPO, NTP, the greedy labeller and autogaze.evaluate use this task unchanged.

Choices the sources leave open, made here (TRAINING.md, "Feature reconstruction task", lists them too):

* Targets: the tower runs once per clip with full gaze (all P patches of every frame, its own attention
  type, block-causal by default), and only its finest-scale rows are kept, like the MAE's pixel output.
  Its input is the task video converted to the tower's own normalisation (SigLIP: mean/std 0.5; DINOv2:
  ImageNet); a VideoMAE tower reads the task video as is. ``layer_with_reconstruction_loss`` = -1 is the
  tower's output after its final norm; another index k is layer k's output, before any final norm.
* horizon 1 (world-model variant): the decoder tokens of frame f, which see gazes of frames <= f only,
  predict frame f+1's features. ``frame_ids`` and the rewards keep naming f, the last frame whose gazes
  are used, so GRPO's credit (traj_len) and the task-loss head target stay at frame f's last gaze.
  **The last frame** has no next frame: its target is its own features (the clip is extended by
  repeating its last frame, as the data loader repeats the last frame of short videos). So every frame
  stays a valid ``frame_ids`` entry (evaluation scores all T frames) and F is never empty.
* Position weights (``loss_weights``): "gazed" means covered by a real gaze of the context frame f (the
  predicted frame itself when horizon = 0), never by gazes of later frames, which would break
  block-causality; see predictor.py.
* The predictor's dimensions left null follow the tower: the encoder copies its width, depth, heads and
  MLP, the decoder its width (upstream's decoder keys give depth, heads and MLP: 3, 16, 3072); the patch
  size is the tower's and must give the gaze model's tokens per frame. The predictor is always
  block-causal: GRPO's per-frame credit and the greedy labeller both assume frame f ignores later gazes.
* Upstream's ``vision_model_config.{scale_embed, time_embed, max_num_frames}`` only describe a VideoMAE
  tower; a stock SigLIP / DINOv2 tower is used as released (a frozen zero table would add nothing).
* The tower is frozen in every mode and held outside the module tree (not in parameters, state_dict,
  checkpoints or DDP); ``set_trainable`` only ever trains the predictor. The trainer draws the predicted
  frames with randperm from ``generator`` (F = max(1, int(T * recon_sample_rate))), as the MAE task does.
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import Tensor

from autogaze.tasks.tower_task import TowerTask
from autogaze.tasks.video_mae_reconstruction.config import TaskConfig, build_mae_config
from autogaze.types import Gazes, TaskOutput
from autogaze.utils.parsing import ConfigError

from .config import FeatureTaskConfig, parse_feature_task_config
from .predictor import FeaturePredictor, covered_positions, frame_losses, position_losses
from .towers import FrozenTower, build_tower

# Upstream's decoder defaults (its siglip feature-reconstruction config); the width follows the tower.
UPSTREAM_DECODER = dict(decoder_num_hidden_layers=3, decoder_num_attention_heads=16, decoder_intermediate_size=3072)


class VideoFeatureReconstruction(TowerTask):
    """Reward = -(feature-prediction loss per frame). Submodule ``predictor`` carries every saved parameter;
    ``tower`` (a FrozenTower) is a plain attribute."""

    trained_part = "predictor (same recon_model_config)"

    def __init__(self, config: FeatureTaskConfig | None = None, **task_keys: Any):
        """``config``: a parsed FeatureTaskConfig; or the task keys themselves (Hydra's ``_target_`` call)."""
        super().__init__()
        if config is None:
            config = parse_feature_task_config(task_keys)
        elif task_keys:
            raise TypeError(f"give a FeatureTaskConfig or task keys, not both (got {sorted(task_keys)})")
        self.config = config
        self.tower: FrozenTower = build_tower(config.tower, config.scales, config.arch_overrides.get("patch_size"))
        dims = {**self.tower.dims, "decoder_hidden_size": self.tower.feature_dim, **UPSTREAM_DECODER,
                **config.arch_overrides}
        # The MAE task's config builder checks the scales against the patch size, with its errors.
        mae_config, _ = build_mae_config(TaskConfig(
            recon_model="tiny", scales=config.scales, scale_embed=config.scale_embed, time_embed=config.time_embed,
            max_num_frames=config.max_num_frames, causal=True, arch_overrides=dims))
        self.predictor = FeaturePredictor(mae_config, self.tower.feature_dim, config.grad_checkpointing)
        self.trainable = False
        self.set_trainable(False)

    @classmethod
    def validate_config(cls, cfg: Any) -> FeatureTaskConfig:
        """Parse and check the ``task`` group without building anything (fails before any work)."""
        return parse_feature_task_config(cfg)

    @classmethod
    def from_config(cls, cfg: Any) -> "VideoFeatureReconstruction":
        return cls(parse_feature_task_config(cfg))

    # ----------------------------------------------------------------- the token space
    @property
    def scales(self) -> list[int]:
        return list(self.predictor.config.scales)

    @property
    def patch_size(self) -> int:
        return int(self.predictor.config.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        return self.predictor.tokens_per_frame

    # ----------------------------------------------------------------- modes and weights
    def set_trainable(self, trainable: bool) -> "VideoFeatureReconstruction":
        """``trainer.train_task``: True trains the predictor; the tower is frozen whatever the value."""
        self._set_mae_trainable(self.predictor, trainable)
        return self.train(self.training)

    # ----------------------------------------------------------------- forward
    def targets(self, video_for_task: Tensor, frame_ids: Tensor) -> Tensor:
        """video_for_task [B, T, 3, S, S], frame_ids [F] -> tower features [B, F, K, Df] of frames
        ``min(f + horizon, T - 1)`` (no grad)."""
        T = video_for_task.shape[1]
        target_frames = (frame_ids + self.config.horizon).clamp_max(T - 1)  # last frame: its own features
        return self.tower_features(video_for_task, finest_only=True)[:, target_frames]

    def compute_loss(self, pred: Tensor, target: Tensor, gazes: Gazes, frame_ids: Tensor) -> Tensor:
        """pred, target [B, F, K, Df] -> [B, F]: sum_j w_j * (position-weighted loss_j) per (clip, frame)."""
        covered = covered_positions(gazes, frame_ids, self.tower.grid_sides)  # [B, F, K]
        total = 0.0
        for name, w in self.config.losses:
            per_position = position_losses(name, pred, target)  # [B, F, K]
            total = total + w * frame_losses(per_position, covered, self.config.gazed_weight,
                                             self.config.ungazed_weight)
        return total

    def forward(self, video_for_task: Tensor, gazes: Gazes, *, frame_ids: Tensor | Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> TaskOutput:
        """video_for_task [B, T, 3, S, S] (task-normalised), gazes [B, N] -> TaskOutput with loss [B],
        loss_per_frame / reward [B, F] for the context frames ``frame_ids`` [F] (any order, else drawn)."""
        self._check_inputs(video_for_task, gazes)
        T = video_for_task.shape[1]
        if self.predictor.config.time_embed and T > self.config.max_num_frames:
            raise ConfigError("task.recon_model_config.max_num_frames", self.config.max_num_frames,
                              f"is smaller than the clip length {T}", "raise max_num_frames or shorten the clip")
        device = video_for_task.device
        fids = (self.sample_frame_ids(T, generator, device) if frame_ids is None
                else self._frame_ids(frame_ids, T, device))
        target = self.targets(video_for_task, fids)  # [B, F, K, Df]
        grad = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with grad:
            pred = self.predictor(video_for_task, gazes, fids)  # [B, F, K, Df]
            loss_per_frame = self.compute_loss(pred, target, gazes, fids)  # [B, F]
        out = self._output(loss_per_frame, None, gazes, fids)
        # Spreads expose a collapsed target (a dead tower) or a predictor stuck at the mean.
        out.metrics.update(target_std=target.std(dim=2).mean(), prediction_std=pred.detach().float().std(dim=2).mean())
        return out
