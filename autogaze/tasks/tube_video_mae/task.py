"""The tube VideoMAE task: rebuild the masked tubelets of a clip from the gazed (visible) ones.

    task = TubeVideoMAE.from_config({"preset": "tiny"})       # Hydra `task` group dict
    task.check_compatible(model_scales, model.tokens_per_frame)
    out = task(batch.video_for_task, rollout.gazes)           # TaskOutput

The reward task of TATS (ICCVW 2025) and AdaMAE (CVPR 2023): a plain VideoMAE (NeurIPS 2022) with
2 x p x p tubelets, trained jointly with the sampler (``set_trainable(True)``).

Token space: a *tube-frame* t' covers frames [u t', u t' + u) (u = tubelet); a gaze id is
``t' * P + local`` with P = (S / p)^2, so ``gazes.num_frames`` must be T / u. Visible = the real gaze
slots (distinct ids); every other token is masked and is a reconstruction target.

Loss: per-token error e_i = mean_d (yhat_id - y_id)^2 against the normalised-pixel target
(targets.py). ``TaskOutput`` fields, and how they depart from the per-frame AutoGaze task:

* ``loss`` [B]: mean of e_i over the clip's masked tokens (the MAE's L_rec); with grad when trainable.
* ``loss_per_frame`` [B, T']: the same mean per tube-frame (0 for a tube-frame with nothing masked),
  detached (the MAE trains on ``loss``); ``reward`` = -loss_per_frame; ``frame_ids`` = all T'.
* ``loss_per_token`` [B, N] = e_i (detached, **+error**, 0 on visible tokens) and
  ``token_is_target`` [B, N]: what TATS / AdaMAE reward their sampler with.
* no task-loss predictor: ``task_loss_targets`` are zeros and ``task_loss_mask`` all False.
* ``reconstruction`` is None: the predictions are normalised per tubelet, not pixels, and
  ``visualize`` is TaskBase's (it draws nothing), so validation logs no picture for this task.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import Tensor

from autogaze.interfaces import TaskBase
from autogaze.tasks.video_mae_reconstruction.weights import LoadReport, WeightsError, read_state_dict
from autogaze.types import Gazes, TaskOutput
from autogaze.utils.parsing import ConfigError, parse_scales

from .config import TubeMAEConfig, parse_task_config
from .model import TubeMAE
from autogaze.utils.normalization import PixelNormalization

from .targets import tubelet_targets


class TubeVideoMAE(TaskBase):
    """Trainable tube VideoMAE reward. Submodule ``mae`` (a ``TubeMAE``) holds every parameter."""

    def __init__(self, config: TubeMAEConfig | None = None, **task_keys: Any):
        """``config``: a parsed TubeMAEConfig, or the task keys themselves (parsed here)."""
        super().__init__()
        if config is None:
            config = parse_task_config(task_keys)
        elif task_keys:
            raise TypeError(f"give a TubeMAEConfig or task keys, not both (got {sorted(task_keys)})")
        self.config = config
        self.mae = TubeMAE(config.to_videomae(), weight_init=config.weight_init)
        self.pixel_norm = PixelNormalization(config.pixel_mean, config.pixel_std, config.pixel_rescale, config.pixel_offset)
        self.trainable = False
        self.set_trainable(False)

    @classmethod
    def validate_config(cls, cfg: Any) -> TubeMAEConfig:
        """Parse and check the ``task`` group without building anything."""
        return parse_task_config(cfg)

    @classmethod
    def from_config(cls, cfg: Any) -> "TubeVideoMAE":
        return cls(parse_task_config(cfg))

    # ----------------------------------------------------------------- token space
    @property
    def scales(self) -> list[int]:
        return [self.config.image_size]

    @property
    def frame_size(self) -> int:
        return self.config.image_size

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def tubelet_size(self) -> int:
        return self.config.tubelet_size

    @property
    def tokens_per_frame(self) -> int:
        """P tokens per tube-frame."""
        return self.config.tokens_per_frame

    @property
    def hidden_size(self) -> int:
        """Width D of ``embed_tokens`` (a sampler sharing the embedding must have this width)."""
        return self.config.hidden_size

    def num_tube_frames(self, num_frames: int) -> int:
        """T' = T / u; raises unless the clip splits into whole tubelets within the tables."""
        u, T = self.tubelet_size, int(num_frames)
        if T % u or not 0 < T <= self.config.max_num_frames:
            raise ValueError(f"clips of {T} frames do not fit: need a multiple of task.tubelet_size={u} "
                             f"and at most task.max_num_frames={self.config.max_num_frames}")
        return T // u

    def check_compatible(self, gaze_scales: Any, gaze_tokens_per_frame: int, frame_size: int | None = None) -> None:
        """Raise ConfigError unless the gaze model works in this task's token space."""
        g = parse_scales("model.scales", gaze_scales)
        if g != self.scales:
            raise ConfigError("task.scales", self.frame_size, f"must equal model.scales={g}",
                              f"set task.scales={'+'.join(map(str, g))} (or the model's to {self.frame_size})")
        if int(gaze_tokens_per_frame) != self.tokens_per_frame:
            raise ConfigError("task.patch_size", self.patch_size,
                              f"gives {self.tokens_per_frame} tokens per tube-frame but the gaze model has "
                              f"{gaze_tokens_per_frame}", "use the same patch size and frame size in both")
        if frame_size is not None and int(frame_size) != self.frame_size:
            raise ConfigError("task.scales", self.frame_size, f"the task takes {self.frame_size}px frames, "
                              f"got {frame_size}", f"resize the task input to {self.frame_size}")

    # ----------------------------------------------------------------- modes and weights
    def set_trainable(self, trainable: bool) -> "TubeVideoMAE":
        """True: the MAE gets gradients (TATS / AdaMAE train it jointly). False: frozen, eval, no_grad."""
        self.trainable = bool(trainable)
        self.mae.requires_grad_(self.trainable)  # the sin-cos tables are buffers, not parameters
        return self.train(self.training)

    def train(self, mode: bool = True) -> "TubeVideoMAE":
        return super().train(mode and self.trainable)  # frozen means eval, whatever the trainer asks

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores: the MAE (``mae.*``); equal to ``state_dict()``."""
        return self.state_dict()

    def load_task_weights(self, path: str | os.PathLike, *, allow_missing: bool = False,
                          allow_unexpected: bool = False) -> LoadReport:
        """Load our checkpoint (``mae.*``) or a ``VideoMAEForPreTraining`` state dict (no prefix).

        One DDP ``module.`` prefix is stripped. Missing / unexpected keys raise WeightsError unless
        allowed; a shape mismatch always raises.
        """
        sd = read_state_dict(path)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        sd = {k.removeprefix("mae."): v for k, v in sd.items()}
        report = LoadReport(source=str(path))
        own = self.mae.state_dict()
        report.missing = sorted(f"mae.{k}" for k in own if k not in sd)
        report.unexpected = sorted(f"mae.{k}" for k in sd if k not in own)
        bad = [f"mae.{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
               for k, v in sd.items() if k in own and v.shape != own[k].shape]
        if bad:
            raise WeightsError(f"{path}: shape mismatch (other preset?): {bad[:5]}")
        if (report.missing and not allow_missing) or (report.unexpected and not allow_unexpected):
            raise WeightsError(f"{path}: missing {report.missing[:5]}, unexpected {report.unexpected[:5]}; "
                               "pass allow_missing / allow_unexpected to load anyway")
        self.mae.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
        report.loaded = len(own) - len(report.missing)
        return report

    # ----------------------------------------------------------------- forward
    def embed_tokens(self, video: Tensor) -> Tensor:
        """video [B, T, 3, S, S] -> tubelet embeddings X [B, N, D] (no positions), with grad when
        trainable; AdaMAE's sampler reads these (and its gradient reaches the Conv3d)."""
        self._check_video(video)
        grad = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with grad:
            return self.mae.embed_tokens(video)

    def _check_video(self, video: Tensor) -> int:
        B, T, C, H, W = video.shape
        if C != 3 or H != self.frame_size or W != self.frame_size:
            raise ValueError(f"video_for_task must be [B, T, 3, {self.frame_size}, {self.frame_size}], got "
                             f"{tuple(video.shape)}; resize the task input or change task.scales")
        return self.num_tube_frames(T)

    def _check_gazes(self, gazes: Gazes, tube_frames: int, num_frames: int) -> None:
        if gazes.num_frames != tube_frames or gazes.tokens_per_frame != self.tokens_per_frame:
            raise ValueError(
                f"gazes cover {gazes.num_frames} frames x {gazes.tokens_per_frame} tokens, but the tube MAE "
                f"expects {tube_frames} tube-frames (T={num_frames} / tubelet {self.tubelet_size}) x "
                f"{self.tokens_per_frame} tokens; use a tubelet gaze model (tats / adamae) with the task's "
                "patch, tubelet and frame size")

    def forward(self, video_for_task: Tensor, gazes: Gazes, *, tokens: Tensor | None = None,
                frame_ids: Any = None, generator: torch.Generator | None = None) -> TaskOutput:
        """video_for_task [B, T, 3, S, S] (task-normalised), gazes [B, K] over T' = T / u tube-frames
        -> TaskOutput. ``tokens`` [B, N, D] reuses ``embed_tokens`` output. ``frame_ids`` and
        ``generator`` are accepted for the task interface and unused: every tube-frame is a target."""
        tube_frames = self._check_video(video_for_task)
        self._check_gazes(gazes, tube_frames, video_for_task.shape[1])
        B, N = video_for_task.shape[0], tube_frames * self.tokens_per_frame
        is_target = gazes.to_mask().view(B, N) == 0                                  # [B, N] masked tokens
        target = tubelet_targets(video_for_task, self.pixel_norm, self.patch_size, self.tubelet_size,
                                 self.config.norm_pix_loss)                           # [B, N, u*p*p*3]
        grad = contextlib.nullcontext() if self.trainable else torch.no_grad()
        with grad:
            pred = self.mae(video_for_task, gazes, tokens)                            # [B, N, u*p*p*3]
            err = (pred.float() - target).pow(2).mean(-1) * is_target                 # [B, N] e_i on targets
            loss = err.sum(1) / is_target.sum(1).clamp_min(1)                         # [B]
        return self._output(loss, err, is_target, gazes, tube_frames)

    def _output(self, loss: Tensor, err: Tensor, is_target: Tensor, gazes: Gazes, tube_frames: int) -> TaskOutput:
        B, N = err.shape
        P, dev = self.tokens_per_frame, err.device
        e = err.detach()
        per_frame = e.view(B, tube_frames, P).sum(-1) / is_target.view(B, tube_frames, P).sum(-1).clamp_min(1)
        K = gazes.ids.shape[1]
        n_visible = (~gazes.is_padded).sum(1).float()
        metrics = {"reconstruction_loss": loss.detach().mean(),
                   "visible_ratio": (n_visible / N).mean()}
        return TaskOutput(loss=loss, loss_per_frame=per_frame, reward=-per_frame,
                          frame_ids=torch.arange(tube_frames, device=dev),
                          traj_len=gazes.num_per_frame.to(dev).cumsum(0),
                          task_loss_targets=e.new_zeros(B, K),
                          task_loss_mask=torch.zeros(B, K, dtype=torch.bool, device=dev),
                          metrics=metrics, loss_per_token=e, token_is_target=is_target)
