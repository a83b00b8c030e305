"""The algorithm interface: how a training signal is computed from a batch, and how a step updates.

An algorithm sees the gaze model only through :class:`GazePolicy`, which the trainer builds:
generation runs on the bare model without grad, and scoring runs through the (possibly DDP-wrapped)
scorer so that gradient synchronisation happens. A new method subclasses :class:`Algorithm` and is
selected with ``algorithm=<name>``.

The update hook. A trainer step consumes one global batch; :meth:`Algorithm.update` decides how
many optimizer steps it makes and on what. The default is the joint step every algorithm had
before: one optimizer step whose loss is ``alg.loss.mean() + task.loss.mean()`` over the step's
micro-batches. An algorithm that owns its update (TATS's PPO: an MAE phase, then epochs over a
stored rollout memory) calls :meth:`UpdateContext.optimizer_step` as often as it needs; the trainer
still owns backward, accumulation and DDP sync, non-finite skipping, clipping and ``optimizer.step``,
and it steps the LR scheduler once per trainer step, after ``update`` returns.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

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
    """What an algorithm may do with the gaze model (and the task's tokeniser) during a step."""

    def __init__(self, model: nn.Module, scorer: Callable[..., GazeScores],
                 task_embed: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.model = model
        self._scorer = scorer
        self._task_embed = task_embed

    @property
    def training(self) -> bool:
        return self.model.training

    @property
    def uses_task_tokens(self) -> bool:
        """True for samplers that read the task's tubelet embedding (``model.embedding=shared``)."""
        return bool(getattr(self.model, "uses_task_tokens", False))

    def task_tokens(self, video_for_task: torch.Tensor) -> torch.Tensor | None:
        """X [B, N, D] = ``task.embed_tokens(video_for_task)`` (with grad when the task trains), or
        None when the sampler has its own embedding. Raises when the sampler needs one and the task
        has none."""
        if not self.uses_task_tokens:
            return None
        if self._task_embed is None:
            raise ValueError("model.embedding=shared needs a task with embed_tokens (task=tube_video_mae)")
        return self._task_embed(video_for_task)

    @torch.no_grad()
    def sample_budget(self, video: torch.Tensor, **kwargs) -> Budget:
        return self.model.sample_budget(video, training=self.model.training, **kwargs)

    @torch.no_grad()
    def generate(self, video: torch.Tensor, budget: Budget, **kwargs) -> GazeRollout:
        return self.model.generate(video, budget, **kwargs)

    def score(self, video: torch.Tensor, gazes: Gazes, **kwargs) -> GazeScores:
        return self._scorer(video, gazes, **kwargs)


@dataclass(frozen=True)
class StepInfo:
    """Where training stands when a trainer step starts (``Algorithm.on_step_start``).

    step:            optimizer-step index of the trainer (train_step before this step; 0-based).
    epoch:           data epoch of the step's first micro-batch.
    total_steps:     trainer steps of the run.
    steps_per_epoch: trainer steps per data epoch (micro-batches per epoch // acc_steps, >= 1).
    seed:            trainer.seed (for generators an algorithm seeds per step).
    temperature:     the trainer's sampling temperature at this step.
    """

    step: int
    epoch: int
    total_steps: int
    steps_per_epoch: int
    seed: int
    temperature: float


@dataclass
class Pass:
    """One micro-batch's forward inside an optimizer step.

    loss:    scalar tensor (with grad) to back-propagate, before the 1/len(items) weight.
    metrics: detached scalars, averaged over the step's passes.
    record:  anything the algorithm keeps past the step (PPO episodes); dropped for the weight-0
             replays DDP needs, so a replay never enters a memory twice.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    record: Any = None


@dataclass
class StepResult:
    """What one :meth:`UpdateContext.optimizer_step` did.

    metrics: means over the passes of their metrics, plus ``loss`` and ``grad_norm``.
    stepped: False when the step was skipped (a non-finite loss or gradient on any rank).
    records: one entry per item, aligned with the items: the pass's ``record``, or None for an
             empty item (no clips) or a replay.
    """

    metrics: dict[str, float]
    stepped: bool
    records: list[Any]


class UpdateContext(Protocol):
    """What the trainer offers :meth:`Algorithm.update` (implemented by ``Trainer``)."""

    info: StepInfo
    policy: GazePolicy
    device: torch.device

    def forward(self, batch: Batch) -> Pass:
        """The joint forward of one micro-batch: prepare -> rollout -> task -> loss, under autocast."""

    def optimizer_step(self, items: Sequence[Any], loss_fn: Callable[[Any], Pass] | None = None,
                       kind: str = "batch") -> StepResult:
        """One optimizer step over ``items`` (each has ``batch_size``; one pass per item, weighted
        1/len(items), DDP-synchronised on the last). ``loss_fn`` defaults to :meth:`forward`;
        ``kind`` names the item type, so a DDP replay of an empty item reuses one of the same kind."""

    def autocast(self) -> AbstractContextManager:
        """The trainer's precision context (bf16 autocast or nothing)."""


class Algorithm(ABC):
    """Base class. Subclasses set ``needs_task`` and implement ``rollout`` and ``loss``; they may
    override ``update`` (own the step), ``on_step_start`` (phases) and ``state_dict`` (memory)."""

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

    def on_step_start(self, info: StepInfo) -> None:
        """Called by the trainer before every step's rollouts (warm-up phases read ``info``)."""

    def update(self, ctx: UpdateContext, micro_batches: list[Batch]) -> dict[str, float]:
        """One trainer step; returns its metrics. Default: one joint optimizer step."""
        return ctx.optimizer_step(micro_batches).metrics

    def state_dict(self) -> dict:
        """State that outlives a step (a rollout memory), on the CPU; saved per rank in checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (resume)."""
