"""Build components from the parsed config.

Every group names its class with ``_target_`` (upstream's keys) and the class parses its own group
with a ``from_config(dict)`` classmethod. A new model, task, algorithm or dataset is a new class
plus a yaml file in the matching ``autogaze/configs/`` group; nothing here dispatches on class names.

This is where a component meets its contract (autogaze/interfaces.py), once: a class that cannot
parse its group, or a built component that lacks a member the trainer calls, stops the run here with
a ConfigError naming what is missing, so the trainer and the evaluation call members directly.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from autogaze.config import ExperimentConfig
from autogaze.interfaces import Configurable, GazeModel, Task, TrainDataset, require
from autogaze.utils.parsing import ConfigError, parse_scales

if TYPE_CHECKING:
    from autogaze.algorithms.base import Algorithm

#: The base class whose subclasses get each group's defaults (named in the errors).
BASES = {"model": "autogaze.interfaces.GazeModelBase", "task": "autogaze.interfaces.TaskBase",
         "dataset": "autogaze.interfaces.DatasetBase", "algorithm": "autogaze.algorithms.Algorithm"}


def resolve_target(group: str, cfg: dict) -> type:
    """Import ``cfg['_target_']`` with an error that names the key and the fix."""
    target = cfg.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{group}._target_", target, "must be a dotted class path",
                          f"e.g. {group}._target_=autogaze.algorithms.NTP")
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{group}._target_", target, f"cannot be imported ({e})",
                          f"check the class path, or pick another `{group}=` config") from None


def component_class(group: str, cfg: dict) -> type:
    """``resolve_target`` plus the class-level contract: ``from_config`` and ``validate_config``
    (algorithms: a subclass of the Algorithm ABC)."""
    from autogaze.algorithms.base import Algorithm

    cls = resolve_target(group, cfg)
    if group == "algorithm" and not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ConfigError("algorithm._target_", cfg["_target_"], "is not a subclass of autogaze.algorithms.Algorithm",
                          "subclass it (it supplies prepare, update, state_dict and the config hooks)")
    require(cls, Configurable, group, BASES[group])
    return cls


def _body(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k != "_target_"}


def build_gaze_model(exp: ExperimentConfig) -> GazeModel:
    model = component_class("model", exp.model).from_config(_body(exp.model))
    require(model, GazeModel, "model", BASES["model"])
    if model.image_processor is not None:  # as upstream's trainer: the gaze transform resizes to the largest task scale
        model.image_processor.size = {"shortest_edge": max(parse_scales("task.scales", exp.task.get("scales", "224")))}
    return model


def build_task(exp: ExperimentConfig) -> Task:
    task = component_class("task", exp.task).from_config(_body(exp.task))
    require(task, Task, "task", BASES["task"])
    return task


def build_algorithm(exp: ExperimentConfig) -> Algorithm:
    return component_class("algorithm", exp.algorithm).from_config(_body(exp.algorithm))


def build_datasets(exp: ExperimentConfig):
    """(train, val, collate_fn). The gaze transform is the model's ``preprocessing`` block with the
    resize forced to the largest task scale."""
    cls = component_class("dataset", exp.dataset)
    preprocessing = dict(exp.model.get("preprocessing") or {})
    size = max(parse_scales("task.scales", exp.task.get("scales", "224")))
    tokens = exp.model.get("num_vision_tokens_each_frame")
    kwargs = dict(preprocessing=preprocessing, size=size, seed=exp.trainer.seed, tokens_per_frame=tokens)
    train = cls.from_config(_body(exp.dataset), split="train", **kwargs)
    val = cls.from_config(_body(exp.dataset), split="val", **kwargs)
    # transform_on_device's extra capability is checked by parse_config (and by the trainer).
    require(train, TrainDataset, "dataset", BASES["dataset"])
    return train, val, train.collate


def validate_components(exp: ExperimentConfig) -> None:
    """Parse every component's group without building weights, so bad configs fail before work."""
    for group, cfg in (("model", exp.model), ("task", exp.task), ("algorithm", exp.algorithm),
                       ("dataset", exp.dataset)):
        component_class(group, cfg).validate_config(_body(cfg))
    # Rules an algorithm has about the other groups (TATS's PPO needs a trained, shared-token sampler).
    component_class("algorithm", exp.algorithm).check_experiment(exp)
