"""Typed contracts between the trainer and its plug-ins: gaze model, task, algorithm and dataset.

The trainer, checkpoints, validation and evaluation call the members below directly and never probe
for optional ones, so every member must exist. A component either subclasses the matching base
(:class:`GazeModelBase`, :class:`TaskBase`, :class:`DatasetBase`; algorithms subclass the ABC
:class:`autogaze.algorithms.base.Algorithm`, re-exported here), which supplies the defaults, or
defines every member itself. ``autogaze.build`` checks each component once, when it is built
(:func:`require`), and raises a ConfigError that names what is missing.

Shapes follow autogaze/types.py: B clips, G group copies, T frames, P tokens per frame, N gaze slots,
F rebuilt frames, S the task's frame side; for the tubelet samplers T' = T / tubelet and N_tok = T' P.

Keyword options. Every implementation accepts the keywords its Protocol method lists (one it has no
use for is ignored, usually through ``**_``). Two more are capabilities, accepted only by the models
that declare them: ``tokens=`` X [B, N_tok, D] when ``uses_task_tokens``, and ``vision_tokens=``
[B, T, V, D] (plus ``score(group_size=G)``) when ``encode_video`` returns tokens.
:class:`~autogaze.algorithms.base.GazePolicy` passes an option only when it is set.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from autogaze.types import Budget, GazeRollout, Gazes, GazeScores, TaskOutput
from autogaze.utils.parsing import ConfigError

if TYPE_CHECKING:
    from autogaze.algorithms.base import Algorithm

__all__ = ["Algorithm", "Configurable", "DatasetBase", "DeviceTransformDataset", "GazeModel", "GazeModelBase",
           "ImageProcessor", "ModuleLike", "StepItem", "Task", "TaskBase", "TrainDataset", "conformance_problems",
           "require"]


def __getattr__(name: str):
    # The Algorithm ABC lives with the algorithms, which import the models, which import this module:
    # a lazy re-export keeps one definition without an import cycle.
    if name == "Algorithm":
        from autogaze.algorithms.base import Algorithm
        return Algorithm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------- Protocols
@runtime_checkable
class ModuleLike(Protocol):
    """The ``nn.Module`` members the trainer uses on a gaze model and a task (every nn.Module has them)."""

    training: bool

    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, *args: Any, **kwargs: Any) -> Any: ...
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
    def requires_grad_(self, requires_grad: bool = True) -> Any: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any: ...


@runtime_checkable
class ImageProcessor(Protocol):
    """A gaze model's preprocessor: resized by autogaze.build, saved next to the weights."""

    size: dict

    def save_pretrained(self, save_directory: str | os.PathLike) -> Any: ...


@runtime_checkable
class GazeModel(ModuleLike, Protocol):
    """A gaze model: budgets, free-running gazing, teacher-forced scores, save and load.

    Token space: ``tokens_per_frame`` P ids per frame; a gaze id is ``t * P + local`` (types.Gazes).
    Loading is ``load_state_dict`` of the ``model.safetensors`` that ``save_pretrained`` writes
    (``checkpoint.load_gaze_weights``), so a checkpoint written by the trainer always reloads.
    """

    tokens_per_frame: int
    #: True: reads the task's tubelet embedding, ``tokens=task.embed_tokens(video_for_task)`` [B, N_tok, D].
    uses_task_tokens: bool
    #: True: sample_budget / generate take ``video_for_task`` (the greedy oracle searches with the task).
    uses_task_video: bool
    #: False: ``score`` has no distribution to score and raises (baselines); evaluation skips the model.
    can_score: bool
    #: Resized to the task's largest scale by autogaze.build and saved with the weights; None = none.
    image_processor: ImageProcessor | None

    def sample_budget(self, video: Tensor, *, training: bool, group_size: int = 1, gazing_ratio: Any = None,
                      task_loss_requirement: Any = None, generator: torch.Generator | None = None,
                      temperature: float | None = None) -> Budget:
        """Budget for ``video`` [G*B, T, 3, H, W] (G group-major copies of B clips).

        Returns max_gazes [G*B, T] (per-frame caps, each >= 1), and where the model uses them
        task_loss_requirement [G*B, T] or total [G*B]. ``gazing_ratio`` (scalar, [T], [B] or [B, T])
        and ``task_loss_requirement`` override the strategies configured for the mode ``training``;
        random draws come from ``generator`` (else the global RNG), one per clip, shared by its copies.
        """

    def generate(self, video: Tensor, budget: Budget, *, generator: torch.Generator | None = None,
                 temperature: float | None = None, do_sample: bool | None = None) -> GazeRollout:
        """Free-running gazing without grad: video [B, T, 3, H, W], budget [B, T] -> GazeRollout with
        gazes [B, N] and, where the model gives them, scores [B, N] and sample_log_probs [B, N].
        ``temperature`` None keeps the model's own; ``do_sample`` None follows the model's default."""

    def score(self, video: Tensor, gazes: Gazes, *, temperature: float | None = None,
              masked: bool | None = None) -> GazeScores:
        """Teacher-forced scores of ``gazes`` [B, N], with grad -> GazeScores [B, N] (log_probs,
        task_loss_prediction; set samplers also token_log_probs [B, N_tok]). ``masked``: under the
        sampling distribution (earlier gazes removed) instead of the plain softmax."""

    def encode_video(self, video: Tensor) -> Tensor | None:
        """video [B, T, 3, H, W] -> vision tokens [B, T, V, D], accepted back as ``vision_tokens=`` so a
        step encodes each clip once; None: the model has no reusable encoder."""

    def save_pretrained(self, save_directory: str | os.PathLike) -> Any:
        """Write ``model.safetensors`` (the state dict; plus ``config.json`` for HF models) into the folder."""


@runtime_checkable
class Task(ModuleLike, Protocol):
    """A task scores gazes: ``task(video_for_task, gazes) -> TaskOutput`` (loss, reward, targets).

    Token space: ``tokens_per_frame`` P and ``scales`` equal the gaze model's. Input normalisation:
    ``video_for_task`` [B, T, 3, S, S], S = max(scales), is normalised by the dataset's task transform
    (``TASK_PREPROCESSING`` in datasets/video_folder.py), whatever the gaze model's preprocessing.
    Trainable state: ``set_trainable`` decides which parameters train; ``trainable_state_dict`` is what
    a checkpoint stores and ``load_trainable_state_dict`` restores on resume.
    """

    tokens_per_frame: int
    scales: list[int]
    #: X = embed_tokens(video_for_task) [B, N_tok, D], with grad when trainable: the tokeniser a sampler
    #: with ``uses_task_tokens`` reads (``forward`` then accepts ``tokens=X``). None: nothing to share.
    embed_tokens: Callable[[Tensor], Tensor] | None

    def forward(self, video_for_task: Tensor, gazes: Gazes, *, frame_ids: Tensor | Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> TaskOutput:
        """gazes [B, N] -> TaskOutput: loss [B], loss_per_frame and reward [B, F], frame_ids [F], ...
        ``frame_ids`` fixes the F rebuilt frames; otherwise the task picks them (from ``generator``)."""

    def set_trainable(self, trainable: bool) -> Any:
        """``trainer.train_task``: which parameters get gradients (fixed tables stay frozen)."""

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores (``checkpoint_*_task.pt``): the trained weights only."""

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> Any:
        """Restore :meth:`trainable_state_dict` (resume)."""

    def load_task_weights(self, path: str | os.PathLike, *, allow_missing: bool = False,
                          allow_unexpected: bool = False) -> Any:
        """Load pre-trained weights (``trainer.task_weights``)."""

    def visualize(self, video_for_task: Tensor, gazes: Gazes, reconstruction: Tensor | None, frame_ids: Tensor,
                  path: str | os.PathLike) -> str | os.PathLike | None:
        """Draw one clip to ``path`` (its folder created) and return it; None: the task draws nothing.
        video_for_task [T, 3, S, S], gazes [1, N], reconstruction [F, 3, S, S] or None, frame_ids [F]."""


@runtime_checkable
class StepItem(Protocol):
    """One item of an optimizer step: a micro-batch (Batch, or a loader batch) or an algorithm's minibatch."""

    batch_size: int                # rows; 0 = empty (every clip of it was undecodable)
    skipped_paths: Sequence[str]   # videos dropped from it, counted by the trainer


@runtime_checkable
class TrainDataset(Protocol):
    """A dataset the trainer loads: items, their ``collate``, and an epoch hook."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...

    def collate(self, items: list) -> Any:
        """Items -> a StepItem whose ``.to(device)`` is a :class:`~autogaze.types.Batch`."""

    def set_epoch(self, epoch: int) -> None:
        """Called before every epoch (epoch-seeded draws)."""


@runtime_checkable
class DeviceTransformDataset(Protocol):
    """A dataset that can hand over uint8 frames for ``trainer.transform_on_device``."""

    def set_transform_on_device(self, on: bool) -> None: ...


@runtime_checkable
class Configurable(Protocol):
    """What a ``_target_`` names: a class that parses and builds from its own config group."""

    def from_config(self, cfg: dict) -> Any: ...

    def validate_config(self, cfg: dict) -> Any:
        """Parse and check the group without building anything (fails before any work)."""


# ---------------------------------------------------------------------------------- bases
class GazeModelBase(nn.Module):
    """The GazeModel defaults. A subclass defines ``tokens_per_frame``, ``sample_budget``,
    ``generate``, ``from_config`` and, with a distribution over gazes, ``score`` and ``can_score = True``."""

    uses_task_tokens: bool = False
    uses_task_video: bool = False
    can_score: bool = False
    image_processor: ImageProcessor | None = None

    @classmethod
    def validate_config(cls, cfg: dict) -> Any:
        """Default: nothing to check before ``from_config``."""
        return None

    def score(self, video: Tensor, gazes: Gazes, *, temperature: float | None = None,
              masked: bool | None = None) -> GazeScores:
        raise NotImplementedError(f"{type(self).__name__} has no gaze distribution to score (can_score=False): "
                                  "train the task with it (algorithm=dummy) or use a gaze model with a policy")

    def encode_video(self, video: Tensor) -> Tensor | None:
        return None

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """The state dict as ``model.safetensors``, the file ``checkpoint.load_gaze_weights`` reads."""
        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out / "model.safetensors"))


class TaskBase(nn.Module):
    """The Task defaults. A subclass defines ``tokens_per_frame``, ``scales``, ``forward`` and ``from_config``."""

    embed_tokens: Callable[[Tensor], Tensor] | None = None

    @classmethod
    def validate_config(cls, cfg: dict) -> Any:
        """Default: nothing to check before ``from_config``."""
        return None

    def set_trainable(self, trainable: bool) -> "TaskBase":
        """Default: every parameter follows ``trainable``."""
        self.requires_grad_(bool(trainable))
        return self

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return self.state_dict()

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        self.load_state_dict(state)

    def load_task_weights(self, path: str | os.PathLike, *, allow_missing: bool = False,
                          allow_unexpected: bool = False) -> Any:
        raise ConfigError("trainer.task_weights", str(path),
                          f"{type(self).__name__} has no pre-trained weights to load",
                          "leave trainer.task_weights unset, or define load_task_weights on the task")

    def visualize(self, video_for_task: Tensor, gazes: Gazes, reconstruction: Tensor | None, frame_ids: Tensor,
                  path: str | os.PathLike) -> str | os.PathLike | None:
        return None


class DatasetBase(Dataset):
    """The TrainDataset defaults. A subclass defines ``__len__``, ``__getitem__``, ``collate`` and
    ``from_config(cfg, split, **build_kwargs)`` (autogaze.build.build_datasets)."""

    @classmethod
    def validate_config(cls, cfg: dict) -> Any:
        """Default: nothing to check before ``from_config``."""
        return None

    def set_epoch(self, epoch: int) -> None:
        """Default: items do not depend on the epoch."""


# ---------------------------------------------------------------------------------- conformance
def _members(protocol: type) -> dict[str, Any]:
    """Name -> the Protocol's function (a method) or None (a data member), over its Protocol bases."""
    out: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
            continue
        for name in base.__dict__.get("__annotations__", {}):
            out[name] = None
        for name, value in base.__dict__.items():
            if inspect.isfunction(value) and (not name.startswith("_") or name in ("__len__", "__getitem__")):
                out[name] = value
    return out


def _missing_parameters(spec: Callable, impl: Any) -> list[str]:
    """Parameters of the Protocol method ``spec`` that the bound ``impl`` cannot take."""
    try:
        have = list(inspect.signature(impl).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return []
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in have)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in have)
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in have)
    named = {p.name for p in have if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing, n = [], 0
    for p in list(inspect.signature(spec).parameters.values())[1:]:  # [1:]: self
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
            if n > positional and not var_pos:
                missing.append(p.name)
        elif p.kind is p.KEYWORD_ONLY and p.name not in named and not var_kw:
            missing.append(p.name)
    return missing


def conformance_problems(obj: Any, protocol: type) -> list[str]:
    """What ``obj`` (an instance, or a class for :class:`Configurable`) lacks to be a ``protocol``:
    missing members, non-callable methods and method parameters it cannot take. Empty = conforms."""
    problems = []
    for name, spec in _members(protocol).items():
        if not hasattr(obj, name):
            problems.append(f"no `{name}`")
        elif spec is not None:
            impl = getattr(obj, name)
            if not callable(impl):
                problems.append(f"`{name}` is not a method")
            elif missing := _missing_parameters(spec, impl):
                problems.append(f"`{name}` takes no {', '.join(f'`{m}`' for m in missing)}")
    return problems


def require(obj: Any, protocol: type, group: str, base: str) -> None:
    """Raise a ConfigError on ``{group}._target_`` naming what ``obj`` lacks to be a ``protocol``;
    ``base`` names the class whose subclasses get the defaults."""
    problems = conformance_problems(obj, protocol)
    if problems:
        cls = obj if isinstance(obj, type) else type(obj)
        raise ConfigError(f"{group}._target_", f"{cls.__module__}.{cls.__qualname__}",
                          f"is not a {protocol.__name__}: {'; '.join(problems)}",
                          f"subclass {base} (it supplies the defaults) or add what is missing")
