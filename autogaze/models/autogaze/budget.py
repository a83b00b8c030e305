"""Per-frame gazing budgets and task-loss requirements.

Randomness comes only from an optional ``torch.Generator`` (never Python ``random`` or global
reseeding). Scalars drawn for the whole batch (video ratio, requirement tau) are broadcast from
rank 0 when torch.distributed is initialised, so every rank uses the same values. The ``self``
strategy needs the model and lives in ``AutoGaze.sample_budget``; this module holds the rest.

Group layout: a batch may be group-major expanded, ``(g b)``: G copies of B clips, the copies of
clip b at rows b, b + B, b + 2B, ... Budgets are drawn for rows 0..B-1 and repeated G times, so all
members of a group get the same budget.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from autogaze.models.autogaze.config import BudgetSettings
from autogaze.types import Budget
from autogaze.types import repeat_groups as expand_groups  # noqa: F401  (the one group-layout helper)


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    """n draws from U[0, 1) as float64 on the generator's device (CPU without one)."""
    dev = generator.device if generator is not None else "cpu"
    return torch.rand(n, generator=generator, device=dev, dtype=torch.float64)


def broadcast_from_rank0(t: Tensor) -> Tensor:
    """Make every rank hold rank 0's value (no-op without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, src=0)
    return t


def ratios_to_budget(ratios: Tensor, tokens_per_frame: int) -> Tensor:
    """FloatTensor [B, T] ratios -> LongTensor [B, T] caps, ``max(long(ratio * P), 1)`` as upstream."""
    return (ratios.float() * tokens_per_frame).long().clamp_min(1)


class BudgetSampler:
    """Draws video ratios, per-frame splits and requirements from the config's strategies."""

    def __init__(self, settings: BudgetSettings, tokens_per_frame: int):
        self.s = settings
        self.P = tokens_per_frame

    def video_ratio(self, training: bool, device, generator: torch.Generator | None = None) -> Tensor:
        """Scalar float64 tensor on ``device``: the clip-level gazing ratio."""
        strategy = self.s.ratio_strategy[training]
        if strategy == "fixed":
            value = torch.tensor(self.s.ratio_fixed, dtype=torch.float64)
        elif strategy == "uniform":
            lo, hi = self.s.ratio_uniform
            value = lo + (hi - lo) * _uniform(1, generator)[0]
        else:  # exponential: Exp(lambda) truncated to [lo, hi], drawn by inverse CDF instead of
            # upstream's resample-until-inside loop (same distribution, no unbounded loop).
            lo, hi, lam = self.s.ratio_exponential
            u = _uniform(1, generator)[0]
            value = lo - torch.log1p(-u * (1 - math.exp(-lam * (hi - lo)))) / lam
        return broadcast_from_rank0(value.to(device=device, dtype=torch.float64))

    def requirement(self, training: bool, device, generator: torch.Generator | None = None,
                    force: bool = False) -> Tensor | None:
        """Scalar tau (float64 tensor) or None when the mode has no requirement and not ``force``."""
        if not (force or self.s.has_requirement[training]):
            return None
        if self.s.requirement_strategy[training] == "fixed":
            value = torch.tensor(self.s.requirement_fixed, dtype=torch.float64)
        else:
            lo, hi = self.s.requirement_uniform
            value = lo + (hi - lo) * _uniform(1, generator)[0]
        return broadcast_from_rank0(value.to(device=device, dtype=torch.float64))

    def frame_ratios(self, ratio: Tensor, num_clips: int, num_frames: int, training: bool,
                     generator: torch.Generator | None = None) -> Tensor:
        """Split a clip ratio over frames -> FloatTensor [num_clips, T] ('uniform' or 'dirichlet')."""
        strategy = self.s.frame_strategy[training]
        out = ratio.float().expand(num_clips, num_frames)
        if strategy == "dirichlet":
            alpha = self.s.dirichlet_alpha
            alpha = alpha * num_frames if len(alpha) == 1 else alpha[:num_frames]  # streaming: first T
            # numpy's Dirichlet, seeded from the torch generator, keeps draws reproducible per
            # generator (torch's Dirichlet takes no generator).
            dev = generator.device if generator is not None else "cpu"
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev))
            w = np.random.default_rng(seed).dirichlet(np.asarray(alpha, dtype=np.float64), size=num_clips)
            w = torch.as_tensor(w, dtype=torch.float32, device=ratio.device)
            out = (ratio.float() * num_frames * w).clamp(0, 1)
        return out.clone()

    def from_user(self, num_clips: int, num_frames: int, device, gazing_ratio=None,
                  task_loss_requirement=None) -> Budget:
        """Budget from explicit arguments: ratio and/or tau; tau alone -> ratio 1."""
        ratio = 1.0 if gazing_ratio is None else gazing_ratio
        ratios = _as_frame_tensor(ratio, num_clips, num_frames, device)
        tau = None
        if task_loss_requirement is not None:
            tau = _as_frame_tensor(task_loss_requirement, num_clips, num_frames, device)
        return Budget(ratios_to_budget(ratios, self.P), tau)


def _as_frame_tensor(value: float | Sequence[float] | Tensor, B: int, T: int, device) -> Tensor:
    """A scalar, T values, [B] or [B, T] -> FloatTensor [B, T] on ``device``."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.dim() == 1 and t.numel() == B and t.numel() != T:
        t = t[:, None]
    return t.expand(B, T).clone()
