"""Learning-rate and sampling-temperature schedules, stepped once per optimizer step."""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def build_lr_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, lr: float,
                       min_lr: float, warmup_ratio: float = 0.1) -> LambdaLR:
    """Four schedules; each returns a multiplier of every parameter group's own base lr.

    * ``linear``: lr -> min_lr linearly over ``total_steps``, no warm-up.
    * ``linear_w_warmup``: 0 -> lr over ``warmup_ratio`` of the steps, then lr -> 0 (min_lr
      ignored, as upstream).
    * ``cosine_w_warmup`` (ours; the per-step schedule of VideoMAE / AdaMAE pre-training):
      0 -> lr linearly over W = int(total * warmup_ratio) steps, then a half cosine to min_lr,
      ``m(s) = end + (1 - end) * (1 + cos(pi * (s - W) / (total - W))) / 2``, held at min_lr after.
    * ``constant``.

    ``end = min_lr / lr``: with several parameter groups (``trainer.gaze_lr`` / ``task_lr``) each
    group ends at its own lr times that ratio.
    """
    total = max(1, total_steps)
    end = (min_lr / lr) if lr > 0 else 1.0
    warm = int(total * warmup_ratio)

    def linear(step: int) -> float:
        return 1.0 + (end - 1.0) * min(step, total) / total

    def linear_w_warmup(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        return max(0.0, (total - step) / max(1, total - warm))

    def cosine_w_warmup(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        frac = min(step - warm, total - warm) / max(1, total - warm)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * frac))

    fn = {"linear": linear, "linear_w_warmup": linear_w_warmup, "cosine_w_warmup": cosine_w_warmup,
          "constant": lambda step: 1.0}[kind]
    return LambdaLR(optimizer, fn)


def exp_temperature(step: int, total_steps: int, start: float, end: float) -> float:
    """T(s) = T0 * (T1/T0) ** (s / S): geometric decay from ``start`` to ``end``."""
    frac = min(step, total_steps) / max(1, total_steps)
    return float(start * math.exp(frac * math.log(end / start)))
