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

from autogaze.interfaces import GazeModel, StepItem
from autogaze.types import AlgorithmOutput, Batch, Budget, GazeRollout, Gazes, GazeScores, TaskOutput


def _set(**options: Any) -> dict[str, Any]:
    """The options a caller set (None = unset). A model receives only those, so it keeps its own
    defaults and never sees a capability keyword (``tokens``, ``vision_tokens``) it does not declare."""
    return {k: v for k, v in options.items() if v is not None}


class ScoreAdapter(nn.Module):
    """Routes ``forward`` to ``model.score`` so DDP can wrap teacher-forced scoring.

    DDP only synchronises gradients for work done inside its ``forward``; the gaze model's training
    forward is ``score``, so this adapter is what the trainer wraps (the parameters are shared).
    """

    def __init__(self, model: GazeModel):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor, gazes: Gazes, *, temperature: float | None = None,
                masked: bool | None = None, group_size: int | None = None,
                tokens: torch.Tensor | None = None, with_logits: bool | None = None) -> GazeScores:
        """See :meth:`GazePolicy.score`."""
        return self.model.score(video, gazes, **_set(temperature=temperature, masked=masked, group_size=group_size,
                                                     tokens=tokens, with_logits=with_logits))


class GazePolicy:
    """What an algorithm may do with the gaze model (and the task's tokeniser) during a step.

    The model itself stays private: an algorithm reaches it only through these methods, so any
    :class:`~autogaze.interfaces.GazeModel` works. An option left None is not passed on (the model's
    default applies); ``tokens`` and ``vision_tokens`` are passed only to models that take them.
    """

    def __init__(self, model: GazeModel, scorer: Callable[..., GazeScores],
                 task_embed: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self._model = model
        self._scorer = scorer
        self._task_embed = task_embed

    @property
    def training(self) -> bool:
        return self._model.training

    @property
    def tokens_per_frame(self) -> int:
        """P, the model's per-frame vocabulary (a tube-frame's tokens for the set samplers)."""
        return self._model.tokens_per_frame

    @property
    def uses_task_tokens(self) -> bool:
        """True for samplers that read the task's tubelet embedding (``model.embedding=shared``)."""
        return bool(self._model.uses_task_tokens)

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
    def encode_video(self, video: torch.Tensor) -> torch.Tensor | None:
        """Vision tokens [B, T, V, D] of ``video`` [B, T, 3, H, W], no grad, for ``vision_tokens=``; None
        when the model has no reusable encoder."""
        return self._model.encode_video(video)

    @torch.no_grad()
    def sample_budget(self, video: torch.Tensor, *, group_size: int | None = None, temperature: float | None = None,
                      tokens: torch.Tensor | None = None, vision_tokens: torch.Tensor | None = None) -> Budget:
        """Budget for ``video`` [G*B, T, ...] in the model's current mode (train: the training strategies)."""
        return self._model.sample_budget(video, training=self._model.training, **_set(
            group_size=group_size, temperature=temperature, tokens=tokens, vision_tokens=vision_tokens))

    @torch.no_grad()
    def generate(self, video: torch.Tensor, budget: Budget, *, temperature: float | None = None,
                 tokens: torch.Tensor | None = None, vision_tokens: torch.Tensor | None = None) -> GazeRollout:
        """Free-running gazes [B, N] under ``budget``, no grad (sampling in train mode)."""
        return self._model.generate(video, budget, **_set(temperature=temperature, tokens=tokens,
                                                          vision_tokens=vision_tokens))

    def score(self, video: torch.Tensor, gazes: Gazes, *, temperature: float | None = None, masked: bool | None = None,
              group_size: int | None = None, tokens: torch.Tensor | None = None,
              with_logits: bool | None = None) -> GazeScores:
        """Teacher-forced scores [B, N] with grad, through the (possibly DDP-wrapped) scorer. ``group_size``
        G: ``video`` holds G group-major copies and the encoder runs on the first one only.
        ``with_logits``: also the scored logits [B, N, V] (models with a per-slot softmax only)."""
        return self._scorer(video, gazes, **_set(temperature=temperature, masked=masked, group_size=group_size,
                                                 tokens=tokens, with_logits=with_logits))


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

    def optimizer_step(self, items: Sequence[StepItem], loss_fn: Callable[[Any], Pass] | None = None,
                       kind: str = "batch") -> StepResult:
        """One optimizer step over ``items`` (StepItems: ``batch_size``, ``skipped_paths``; one pass per item, weighted
        1/len(items), DDP-synchronised on the last). ``loss_fn`` defaults to :meth:`forward`;
        ``kind`` names the item type, so a DDP replay of an empty item reuses one of the same kind."""

    def autocast(self) -> AbstractContextManager:
        """The trainer's precision context (bf16 autocast or nothing)."""


class Algorithm(ABC):
    """Base class and contract (``autogaze.interfaces.Algorithm``). Subclasses set ``needs_task`` and
    implement ``from_config``, ``rollout`` and ``loss``; they may override ``validate_config`` and
    ``check_experiment`` (config checks), ``update`` (own the step), ``on_step_start`` (phases) and
    ``state_dict`` (memory)."""

    #: whether the trainer must run the task on the rollout before ``loss``.
    needs_task: bool = True

    @classmethod
    def validate_config(cls, cfg: dict) -> Any:
        """Parse and check the ``algorithm`` group without building anything; default: nothing to check."""
        return None

    @classmethod
    def from_config(cls, cfg: dict) -> "Algorithm":
        """Build from the Hydra ``algorithm`` group: ``cls(validate_config(cfg))``."""
        return cls(cls.validate_config(dict(cfg)))

    @staticmethod
    def check_experiment(exp) -> None:
        """Rules about the other groups (an ExperimentConfig), checked before any work; default: none."""

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
