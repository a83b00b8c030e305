"""The algorithm interface: how a training signal is computed from a batch.

An algorithm sees the gaze model only through :class:`GazePolicy`, which the trainer builds:
generation runs on the bare model without grad, and scoring runs through the (possibly DDP-wrapped)
scorer so that gradient synchronisation happens. A new method (TATS with PPO, AdaMAE with
REINFORCE, ...) subclasses :class:`Algorithm` and is selected with ``algorithm=<name>``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import nn

from autogaze.types import AlgorithmOutput, Batch, Budget, GazeRollout, Gazes, GazeScores, TaskOutput


class ScoreAdapter(nn.Module):
    """Routes ``forward`` to ``model.score`` so DDP can wrap teacher-forced scoring.

    DDP only synchronises gradients for work done inside its ``forward``; the gaze model's training
    forward is ``score``, so this adapter is what the trainer wraps (the parameters are shared).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor, gazes: Gazes, **kwargs) -> GazeScores:
        return self.model.score(video, gazes, **kwargs)


class GazePolicy:
    """What an algorithm may do with the gaze model during a training step."""

    def __init__(self, model: nn.Module, scorer: Callable[..., GazeScores]):
        self.model = model
        self._scorer = scorer

    @property
    def training(self) -> bool:
        return self.model.training

    @torch.no_grad()
    def sample_budget(self, video: torch.Tensor, **kwargs) -> Budget:
        return self.model.sample_budget(video, training=self.model.training, **kwargs)

    @torch.no_grad()
    def generate(self, video: torch.Tensor, budget: Budget, **kwargs) -> GazeRollout:
        return self.model.generate(video, budget, **kwargs)

    def score(self, video: torch.Tensor, gazes: Gazes, **kwargs) -> GazeScores:
        return self._scorer(video, gazes, **kwargs)


class Algorithm(ABC):
    """Base class. Subclasses set ``needs_task`` and implement ``rollout`` and ``loss``."""

    #: whether the trainer must run the task on the rollout before ``loss``.
    needs_task: bool = True

    def prepare(self, batch: Batch) -> Batch:
        """Reshape the batch before the rollout (GRPO expands it into groups)."""
        return batch

    @abstractmethod
    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        """Produce gazes and their scores (with grad) for ``batch``."""

    @abstractmethod
    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        """Per-rollout loss [B'] and metrics."""
