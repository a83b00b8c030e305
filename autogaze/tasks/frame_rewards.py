"""What every per-frame reward task shares: the token-space check against the gaze model, the
choice of rebuilt frames, and the packing of per-frame losses into a ``TaskOutput`` (reward,
trajectory lengths and per-gaze task-loss targets).

A subclass provides ``scales``, ``patch_size``, ``tokens_per_frame``, ``frame_size`` and
``config.recon_sample_rate``; its ``forward`` computes loss_per_frame [B, F] for the frames ``fids``
and returns ``self._output(...)``. The pixel MAE task and the feature-prediction task both do.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from autogaze.interfaces import TaskBase
from autogaze.types import Gazes, TaskOutput
from autogaze.utils.parsing import ConfigError, parse_scales


class FrameRewardTask(TaskBase):
    """Base of tasks whose reward is minus a loss per rebuilt frame."""

    @property
    def frame_size(self) -> int:
        """Side of the square frames the task takes (the largest scale)."""
        return self.scales[-1]

    @property
    def gaze_model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the gaze model's forward: the task's scales and patch."""
        return {"target_scales": self.scales, "target_patch_size": self.patch_size}

    def _set_mae_trainable(self, mae: nn.Module, trainable: bool) -> None:
        """``trainer.train_task`` for a MultiScaleViTMAE-shaped module: every parameter but the fixed
        sin-cos position tables (requires_grad=False in ViT-MAE too)."""
        self.trainable = bool(trainable)
        for name, p in mae.named_parameters():
            p.requires_grad_(self.trainable and not name.endswith(("position_embeddings", "decoder_pos_embed")))

    def check_compatible(self, gaze_scales: Any, gaze_tokens_per_frame: int, frame_size: int | None = None) -> None:
        """Raise ConfigError unless the gaze model and the task share one token space."""
        task_scales = "+".join(map(str, self.scales))
        g = parse_scales("model.scales", gaze_scales)
        if g != self.scales:
            raise ConfigError("task.scales", task_scales,
                              f"must equal model.scales={'+'.join(map(str, g))}; a mismatch makes the gaze model "
                              "resample its gazes and drop their log-probs, breaking NTP/GRPO",
                              f"set task.scales={'+'.join(map(str, g))}")
        if int(gaze_tokens_per_frame) != self.tokens_per_frame:
            raise ConfigError("task.recon_model_config.patch_size", self.patch_size,
                              f"gives {self.tokens_per_frame} tokens per frame at task.scales={task_scales}, but the "
                              f"gaze model has {gaze_tokens_per_frame}",
                              "use the gaze model's patch size (16 for 265 tokens per frame)")
        if frame_size is not None:
            self._check_frame(int(frame_size), int(frame_size))

    def _check_frame(self, H: int, W: int) -> None:
        if H != W or H != self.frame_size:
            raise ConfigError("task.scales", "+".join(map(str, self.scales)),
                              f"take square frames of side {self.frame_size} (the largest scale), got "
                              f"video_for_task frames of {H}x{W}",
                              f"resize the task input (dataset transform) to {self.frame_size}, or change task.scales")

    def _check_inputs(self, video_for_task: Tensor, gazes: Gazes) -> None:
        """A forward's inputs: square frames of the task's size, gazes over the same frames and token space."""
        B, T, C, H, W = video_for_task.shape
        self._check_frame(H, W)
        if gazes.tokens_per_frame != self.tokens_per_frame or gazes.num_frames != T:
            raise ValueError(f"gazes have {gazes.tokens_per_frame} tokens/frame over {gazes.num_frames} frames; "
                             f"the task expects {self.tokens_per_frame} over T={T}")

    def sample_frame_ids(self, num_frames: int, generator: torch.Generator | None, device) -> Tensor:
        """F = max(1, int(T * recon_sample_rate)) frames by randperm, sorted; [F] long."""
        F_ = max(1, int(num_frames * self.config.recon_sample_rate))
        gen_device = generator.device if generator is not None else "cpu"
        perm = torch.randperm(num_frames, generator=generator, device=gen_device)
        return perm[:F_].sort().values.to(device)

    def _frame_ids(self, frame_ids: Tensor | Sequence[int], T: int, device) -> Tensor:
        ids = torch.as_tensor(frame_ids, dtype=torch.long, device=device).flatten().sort().values
        if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= T or ids.unique().numel() != ids.numel():
            raise ValueError(f"frame_ids={ids.tolist()} must be distinct frames in [0, {T})")
        return ids

    def _output(self, loss_per_frame: Tensor, recon: Tensor, gazes: Gazes, fids: Tensor) -> TaskOutput:
        """Reward, trajectory lengths and per-gaze task-loss targets."""
        B, N = gazes.ids.shape
        T, P = gazes.num_frames, self.tokens_per_frame
        device = gazes.ids.device
        frame_of_slot = gazes.frame_index().expand(B, N)  # [B, N]
        slot = torch.arange(N, device=device).expand(B, N)
        is_real = ~gazes.is_padded
        # Last *non-padded* slot of each frame. Early stopping can leave a pad between real gazes
        #; upstream's shifted-pad mask would then also mark the gaze before that pad.
        last_real = torch.full((B, T), -1, dtype=torch.long, device=device).scatter_reduce(
            1, frame_of_slot, torch.where(is_real, slot, -1), reduce="amax")  # [B, T]
        is_last = slot == last_real.gather(1, frame_of_slot)  # [B, N]
        pos_in_rec = torch.full((T,), -1, dtype=torch.long, device=device)
        pos_in_rec[fids] = torch.arange(fids.numel(), device=device)
        rec_of_slot = pos_in_rec[frame_of_slot]  # [B, N], -1 = frame not rebuilt
        mask = is_last & is_real & (rec_of_slot >= 0)
        lpf = loss_per_frame.detach()
        targets = torch.where(mask, lpf.gather(1, rec_of_slot.clamp_min(0)), lpf.new_zeros(()))
        traj_len = gazes.num_per_frame.to(device).cumsum(0)[fids]  # slots up to and including f
        metrics = {"reconstruction_loss": lpf.mean(),
                   "avg_gazing_ratio_per_frame": is_real.sum().float() / (B * T * P)}
        return TaskOutput(loss=loss_per_frame.mean(1), loss_per_frame=loss_per_frame, reward=-lpf,
                          frame_ids=fids, traj_len=traj_len, task_loss_targets=targets, task_loss_mask=mask,
                          reconstruction=recon, metrics=metrics)
