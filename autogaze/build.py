"""Build components from the parsed config.

Every group names its class with ``_target_`` (upstream's keys) and the class parses its own group
with a ``from_config(dict)`` classmethod. A new model, task, algorithm or dataset is a new class
plus a yaml file in the matching ``autogaze/configs/`` group; nothing here dispatches on class names.
"""
from __future__ import annotations

import importlib
from typing import Any

from autogaze.config import ExperimentConfig
from autogaze.utils.parsing import ConfigError, parse_scales


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


def _from_config(group: str, cfg: dict, **kwargs) -> Any:
    cls = resolve_target(group, cfg)
    body = {k: v for k, v in cfg.items() if k != "_target_"}
    return cls.from_config(body, **kwargs)


def build_gaze_model(exp: ExperimentConfig):
    model = _from_config("model", exp.model)
    processor = getattr(model, "image_processor", None)
    if processor is not None:  # as upstream's trainer: the gaze transform resizes to the largest task scale
        processor.size = {"shortest_edge": max(parse_scales("task.scales", exp.task.get("scales", "224")))}
    return model


def build_task(exp: ExperimentConfig):
    return _from_config("task", exp.task)


def build_algorithm(exp: ExperimentConfig):
    return _from_config("algorithm", exp.algorithm)


def build_datasets(exp: ExperimentConfig):
    """(train, val, collate_fn). The gaze transform is the model's ``preprocessing`` block with the
    resize forced to the largest task scale."""
    cls = resolve_target("dataset", exp.dataset)
    body = {k: v for k, v in exp.dataset.items() if k != "_target_"}
    preprocessing = dict(exp.model.get("preprocessing") or {})
    size = max(parse_scales("task.scales", exp.task.get("scales", "224")))
    tokens = exp.model.get("num_vision_tokens_each_frame")
    kwargs = dict(preprocessing=preprocessing, size=size, seed=exp.trainer.seed, tokens_per_frame=tokens)
    train = cls.from_config(body, split="train", **kwargs)
    val = cls.from_config(body, split="val", **kwargs)
    return train, val, train.collate


def validate_components(exp: ExperimentConfig) -> None:
    """Parse every component's group without building weights, so bad configs fail before work."""
    for group, cfg in (("model", exp.model), ("task", exp.task), ("algorithm", exp.algorithm),
                       ("dataset", exp.dataset)):
        cls = resolve_target(group, cfg)
        check = getattr(cls, "validate_config", None)
        if check is not None:
            check({k: v for k, v in cfg.items() if k != "_target_"})
    # Rules an algorithm has about the other groups (TATS's PPO needs a trained, shared-token sampler).
    check_experiment = getattr(resolve_target("algorithm", exp.algorithm), "check_experiment", None)
    if check_experiment is not None:
        check_experiment(exp)
