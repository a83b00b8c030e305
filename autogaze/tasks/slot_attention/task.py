"""Slot attention task: object slots inferred from the gazed patches only; reward = -feature loss per frame.

    task = SlotAttentionTask.from_config(cfg.task)                   # Hydra `task` group dict
    task.load_task_weights("exps/<exp>/checkpoint_latest_task.pt")   # a trained slot model
    out = task(batch.video_for_task, rollout.gazes)                  # TaskOutput, reward = -L_featrec per frame
    state = task.slots(batch.video_for_task, rollout.gazes)          # SlotState: slots, masks, recon

SlotContrast (Manasyan et al. 2024) on gazed tokens: a frozen tower gives full-gaze patch features f; the
slot model reads f only at the gazed patches of each frame (plus learned scale and position embeddings of
the gazed ids), runs slot attention (Locatello et al. 2020) frame after frame with a learned predictor
between frames, and decodes every finest-scale position from the slots with an alpha-mixed MLP decoder.
Its training loss is SlotContrast's, L = L_featrec + contrast_weight * L_ss (losses.py). The reward given
to the gaze model is minus L_featrec of each rebuilt frame: how well the slots of the gazed patches
explain the whole frame. Reward, trajectory lengths and task-loss targets are laid out as the MAE task's,
so GRPO, NTP, the greedy labeller and autogaze.evaluate use this task unchanged.

Choices the papers leave open, made here (TRAINING.md, "Slot attention task", lists them too):

* The tower (the feature task's ``FrozenTower``, reused) runs once per clip on every patch of every frame;
  the slot inputs are its rows at the gazed ids (any scale), the targets its finest-scale rows.
* Slots recur over all T frames, whatever ``recon_sample_rate`` picks (so every parameter, the predictor
  included, gets a gradient under DDP); only the rebuilt frames are decoded and rewarded. The contrast
  covers every consecutive pair of frames. Frames after f cannot change frame f's value (block-causal).
* ``TaskOutput.loss`` [B] = mean_f L_featrec + contrast_weight * L_ss of the clip, where L_ss is a clip's
  share of the batch contrast (its slots' cross-entropies; the negatives come from the whole batch).
  ``loss_per_frame`` and the task-loss targets are L_featrec alone, so a frame's value does not depend on
  the other clips of the batch (GRPO groups, labeller candidate rows).
* The tower is frozen in every mode and held outside the module tree; ``set_trainable`` trains the slot
  model (all of it: it has no fixed tables).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor

from autogaze.tasks.tower_task import TowerTask
from autogaze.tasks.video_feature_reconstruction.towers import FrozenTower, build_tower
from autogaze.types import Gazes, TaskOutput

from .config import SlotTaskConfig, parse_slot_task_config
from .losses import feature_reconstruction, slot_contrast
from .model import GazedSlotModel, SlotState


class SlotAttentionTask(TowerTask):
    """Reward = -(feature reconstruction loss of the slots, per frame). Submodule ``slot_model`` carries every
    saved parameter; ``tower`` (a FrozenTower) is a plain attribute."""

    trained_part = "slot model (same slot keys)"

    def __init__(self, config: SlotTaskConfig | None = None, **task_keys: Any):
        """``config``: a parsed SlotTaskConfig; or the task keys themselves (Hydra's ``_target_`` call)."""
        super().__init__()
        if config is None:
            config = parse_slot_task_config(task_keys)
        elif task_keys:
            raise TypeError(f"give a SlotTaskConfig or task keys, not both (got {sorted(task_keys)})")
        self.config = config
        self.tower: FrozenTower = build_tower(config.tower, config.scales, None)
        self.slot_model = GazedSlotModel(config, self.tower.feature_dim, self.tower.grid_sides)
        self.trainable = False
        self.set_trainable(False)

    @classmethod
    def validate_config(cls, cfg: Any) -> SlotTaskConfig:
        """Parse and check the ``task`` group without building anything (fails before any work)."""
        return parse_slot_task_config(cfg)

    @classmethod
    def from_config(cls, cfg: Any) -> "SlotAttentionTask":
        return cls(parse_slot_task_config(cfg))

    # ----------------------------------------------------------------- the token space
    @property
    def scales(self) -> list[int]:
        return list(self.tower.scales)

    @property
    def patch_size(self) -> int:
        return int(self.tower.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        return self.tower.tokens_per_frame

    # ----------------------------------------------------------------- modes and weights
    def set_trainable(self, trainable: bool) -> "SlotAttentionTask":
        """``trainer.train_task``: True trains the slot model; the tower is frozen whatever the value."""
        self.trainable = bool(trainable)
        self.slot_model.requires_grad_(self.trainable)
        return self.train(self.training)

    # ----------------------------------------------------------------- forward
    def features(self, video_for_task: Tensor) -> Tensor:
        """video_for_task [B, T, 3, S, S] -> tower features [B, T, P, Df] at every token (no grad)."""
        return self.tower_features(video_for_task, finest_only=False)

    def slots(self, video_for_task: Tensor, gazes: Gazes) -> SlotState:
        """video_for_task [B, T, 3, S, S], gazes [B, N] -> SlotState over all T frames (no grad)."""
        self._check_inputs(video_for_task, gazes)
        T = video_for_task.shape[1]
        with torch.no_grad():
            feats = self.features(video_for_task)
            slots, attn = self.slot_model(feats, gazes, T)
            dec = self.slot_model.decode(slots)
        return SlotState(slots=slots, attn=attn, masks=dec.masks, recon=dec.recon)

    def forward(self, video_for_task: Tensor, gazes: Gazes, *, frame_ids: Tensor | Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> TaskOutput:
        """video_for_task [B, T, 3, S, S] (task-normalised), gazes [B, N] -> TaskOutput with loss [B],
        loss_per_frame / reward [B, F] for the rebuilt frames ``frame_ids`` [F] (any order, else drawn)."""
        self._check_inputs(video_for_task, gazes)
        T, device = video_for_task.shape[1], video_for_task.device
        fids = (self.sample_frame_ids(T, generator, device) if frame_ids is None
                else self._frame_ids(frame_ids, T, device))
        feats = self.features(video_for_task)                       # [B, T, P, Df]
        Pf = self.tower.num_finest
        target = feats[:, fids, -Pf:]                               # [B, F, Pf, Df]: the largest scale's ids
        grad = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with grad:
            slots, _ = self.slot_model(feats, gazes, T)            # [B, T, K, D]
            dec = self.slot_model.decode(slots[:, fids])            # recon [B, F, Pf, Df]
            featrec = feature_reconstruction(dec.recon, target)     # [B, F]
            contrast = slot_contrast(slots, self.config.contrast_temperature)  # [B]
        out = self._output(featrec, None, gazes, fids)
        out = replace(out, loss=featrec.mean(1) + self.config.contrast_weight * contrast)
        # The target spread exposes a dead tower; slots in use (max mask share per slot) expose a collapse
        # onto one slot, the failure the contrast guards against.
        usage = dec.masks.detach().mean(dim=(1, 3))                 # [B, K]: share of positions per slot
        out.metrics.update(contrast_loss=contrast.detach().mean(),  # reconstruction_loss: L_featrec
                           target_std=target.std(dim=2).mean(),
                           slots_used=(usage > 0.5 / self.config.num_slots).float().sum(1).mean())
        return out
