"""The greedy labeller as a gaze model: the ceiling that NTP imitates, for evaluation.

It has the baselines' interface (``sample_budget`` / ``generate``), so ``evaluate.py`` can score
the greedy labels of held-out clips exactly like AutoGaze or RandomGaze. It searches with the MAE,
so ``generate`` takes the task-side video; ``uses_task_video`` tells evaluate.py to pass
``batch.video_for_task`` instead of the gaze-model input.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from autogaze.interfaces import GazeModelBase

from autogaze.models.autogaze.budget import BudgetSampler
from autogaze.labeling.budgets import LabelBudget
from autogaze.labeling.greedy import label_clip
from autogaze.types import Budget, GazeRollout, Gazes


class GreedyOracle(GazeModelBase):
    """Greedy MAE-loss search (paper section 3.2) behind the gaze-model interface."""

    uses_task_video = True

    def __init__(self, task: nn.Module, candidate_batch: int = 64, precision: str = "fp32"):
        super().__init__()
        self.task, self.candidate_batch, self.precision = task, candidate_batch, precision
        self.tokens_per_frame = task.tokens_per_frame

    def sample_budget(self, video: Tensor, *, gazing_ratio: float, **_) -> Budget:
        """Budget [B, T] of ``max(int(ratio * P), 1)`` per frame (explicit ratio only)."""
        B, T = video.shape[:2]
        sampler = BudgetSampler(LabelBudget().settings(T), self.tokens_per_frame)
        return sampler.from_user(B, T, video.device, gazing_ratio)

    @torch.no_grad()
    def generate(self, video_for_task: Tensor, budget: Budget, **_) -> GazeRollout:
        """video_for_task [B, T, 3, S, S] -> gazes [B, N] with n_t = max_b budget[b, t] slots per frame."""
        B, T = video_for_task.shape[:2]
        P = self.tokens_per_frame
        caps = budget.max_gazes.clamp(1, P)  # [B, T]
        n_t = caps.max(0).values  # [T]
        ids = torch.zeros(B, int(n_t.sum()), dtype=torch.long, device=video_for_task.device)
        is_padded = torch.ones_like(ids, dtype=torch.bool)
        starts = torch.cat([n_t.new_zeros(1), n_t.cumsum(0)[:-1]]).tolist()
        for b in range(B):
            labels = label_clip(self.task, video_for_task[b], caps[b].tolist(), self.candidate_batch, self.precision)
            for t, frame in enumerate(labels.gazing_pos):
                s = starts[t]
                ids[b, s:s + len(frame)] = torch.tensor(frame, device=ids.device)
                ids[b, s + len(frame):s + int(n_t[t])] = t * P  # padded slots: an id of their own frame
                is_padded[b, s:s + len(frame)] = False
        return GazeRollout(Gazes(ids, is_padded, n_t.cpu(), P), budget=budget)
