"""The VideoMAE reconstruction task: reward = -(per-frame reconstruction loss) of gazed clips.

    task = VideoMAEReconstruction.from_config(cfg.task)          # Hydra `task` group dict
    task.check_compatible(model_scales, model_tokens_per_frame)  # fail early
    task.load_task_weights("videomae.pt")                        # MAE + frozen feature models
    out = task(batch.video_for_task, rollout.gazes, generator=g) # TaskOutput

Frozen by default (``set_trainable(False)``): eval mode and no_grad inside ``forward``. With
``set_trainable(True)`` (``trainer.train_task=True``) the MAE gets gradients; the feature models stay
frozen and live outside this module's parameters, state_dict and DDP (see losses.py).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Sequence

import torch
from torch import Tensor

from autogaze.tasks.frame_rewards import FrameRewardTask
from autogaze.types import Gazes, TaskOutput
from autogaze.utils.parsing import ConfigError

from .config import TaskConfig, build_mae_config, parse_task_config
from .losses import FeatureLoss, build_feature_loss, l1_loss
from .model import MultiScaleViTMAE
from .weights import LoadReport, load_stock_vit_mae, load_task_state_dict, read_state_dict


class VideoMAEReconstruction(FrameRewardTask):
    """Multi-scale block-causal VideoMAE reward. Submodule ``mae`` carries every saved parameter."""

    def __init__(self, config: TaskConfig | None = None, **task_keys: Any):
        """``config``: a parsed TaskConfig; or the task keys themselves (what Hydra's
        ``instantiate(cfg.task)`` passes through ``_target_``), parsed here."""
        super().__init__()
        if config is None:
            config = parse_task_config(task_keys)
        elif task_keys:
            raise TypeError(f"give a TaskConfig or task keys, not both (got {sorted(task_keys)})")
        self.config = config
        mae_config, weights_dir = build_mae_config(config)
        self.mae = MultiScaleViTMAE(mae_config)
        if weights_dir is not None:
            load_stock_vit_mae(self.mae, weights_dir)
        # A plain dict of plain objects: not registered, so not in parameters()/state_dict()/DDP.
        self.feature_losses: dict[str, FeatureLoss] = {
            s.name: build_feature_loss(s.name, s.model, config.attn_mode) for s in config.losses if s.name != "l1"}
        self.loss_weights: dict[str, float] = {s.name: s.weight for s in config.losses}
        self.trainable = False
        self.set_trainable(False)

    @classmethod
    def validate_config(cls, cfg: Any) -> TaskConfig:
        """Parse and check the ``task`` group without building anything (fails before any work)."""
        return parse_task_config(cfg)

    @classmethod
    def from_config(cls, cfg: Any) -> "VideoMAEReconstruction":
        """Build from the Hydra ``task`` group (dict or DictConfig); see config.py for the keys."""
        return cls(parse_task_config(cfg))

    # ----------------------------------------------------------------- settings the others need
    @property
    def scales(self) -> list[int]:
        return list(self.mae.config.scales)

    @property
    def patch_size(self) -> int:
        return int(self.mae.config.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        return self.mae.tokens_per_frame

    # ----------------------------------------------------------------- modes
    def set_trainable(self, trainable: bool) -> "VideoMAEReconstruction":
        """``trainer.train_task``: True gives the MAE gradients; False = frozen, eval, no_grad."""
        self._set_mae_trainable(self.mae, trainable)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "VideoMAEReconstruction":
        super().train(mode and self.trainable)  # frozen means eval, whatever the trainer asks
        for fl in self.feature_losses.values():
            fl.model.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for fl in getattr(self, "feature_losses", {}).values():  # device moves (.to) reach them too
            fl.apply(fn)
        return self

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores: the MAE only (``mae.*``, the videomae.pt layout), never the GB
        of frozen feature weights. Equal to ``state_dict()``; named for the trainer's intent."""
        return self.state_dict()

    def load_task_weights(self, path: str | os.PathLike, *, allow_missing: bool = False,
                          allow_unexpected: bool = False) -> LoadReport:
        """Load ``videomae.pt`` / ``.safetensors`` / our checkpoints via the explicit map in weights.py."""
        return load_task_state_dict(self, read_state_dict(path), source=str(path),
                                    allow_missing=allow_missing, allow_unexpected=allow_unexpected)

    # ----------------------------------------------------------------- forward
    def compute_loss(self, reconstruction: Tensor, target: Tensor) -> Tensor:
        """[B, F, 3, H, W] x 2 -> [B, F]: sum_k w_k * loss_k per (clip, frame)."""
        B, F_ = reconstruction.shape[:2]
        pred, tgt = reconstruction.flatten(0, 1), target.flatten(0, 1)
        total = 0.0
        for name, w in self.loss_weights.items():
            term = l1_loss(pred, tgt) if name == "l1" else self.feature_losses[name](pred, tgt)
            total = total + w * term
        return total.view(B, F_)

    def forward(self, video_for_task: Tensor, gazes: Gazes, *, frame_ids: Tensor | Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> TaskOutput:
        """video_for_task [B, T, 3, S, S] (task-normalised, S = largest scale), gazes [B, N] ->
        TaskOutput. ``frame_ids`` (any order) overrides the random choice drawn from ``generator``."""
        self._check_inputs(video_for_task, gazes)
        T = video_for_task.shape[1]
        if self.mae.config.time_embed and T > self.mae.config.max_num_frames:
            raise ConfigError("task.recon_model_config.max_num_frames", self.mae.config.max_num_frames,
                              f"is smaller than the clip length {T}", "raise max_num_frames or shorten the clip")
        device = video_for_task.device
        fids = (self.sample_frame_ids(T, generator, device) if frame_ids is None
                else self._frame_ids(frame_ids, T, device))
        for fl in self.feature_losses.values():
            fl.model.to(device)  # no-op once there; covers tasks moved before the models were filled
        grad = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with grad:
            recon = self.mae(video_for_task, gazes, fids)  # [B, F, 3, S, S]
            loss_per_frame = self.compute_loss(recon, video_for_task[:, fids])  # [B, F]
        return self._output(loss_per_frame, recon, gazes, fids)

    def visualize(self, video_for_task: Tensor, gazes: Gazes, reconstruction: Tensor, frame_ids: Tensor,
                  path: str | os.PathLike) -> str:
        """PNG grid of the first sample; see visualize.visualize."""
        from .visualize import visualize
        return visualize(video_for_task, gazes, reconstruction, frame_ids, path,
                         scales=self.scales, patch_size=self.patch_size)
