"""The optimizer: parameter groups (gaze vs task learning rates, weight-decay exemptions) and the
batch-scaled learning rate.

    trainer.optimizer      adam | adamw | sgd
    trainer.gaze_lr        lr of the gaze model's group (null: trainer.lr)
    trainer.task_lr        lr of the task's group (null: trainer.lr)
    trainer.betas          adam / adamw (beta1, beta2)
    trainer.weight_decay   adamw: decoupled (Loshchilov & Hutter 2019); adam / sgd: L2 in the gradient
    trainer.scale_lr_with_batch   every lr (and min_lr) is given per 256 clips and multiplied by
                                  global_batch / 256, the linear scaling rule VideoMAE and AdaMAE use

With neither ``gaze_lr``/``task_lr`` nor weight decay set there is one group holding every trained
parameter, exactly as before these keys existed (so existing runs are bit-identical). Otherwise the
groups are ``gaze`` and ``task`` (each with its own lr) and, when ``weight_decay > 0``, each is split
into ``<name>`` and ``<name>_no_decay``: tensors with ndim <= 1 (biases, LayerNorm gains, scalars)
get no decay, the convention of the MAE / VideoMAE pre-training code. Position tables (ndim 3) are
decayed like any weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParamGroup:
    """One optimizer parameter group before construction.

    name:         ``all`` (single group) | ``gaze`` | ``task`` | ``<name>_no_decay``.
    params:       the parameters (requires_grad ones only).
    lr:           base lr of the group, after batch scaling.
    weight_decay: decay of the group (0 for the exempt tensors).
    """

    name: str
    params: list[nn.Parameter]
    lr: float
    weight_decay: float


def lr_scale(cfg, global_batch: int) -> float:
    """global_batch / 256 with ``scale_lr_with_batch``, else 1."""
    return global_batch / 256 if cfg.scale_lr_with_batch else 1.0


def param_groups(cfg, modules: dict[str, list[nn.Parameter]], scale: float) -> list[ParamGroup]:
    """``modules``: name (gaze | task) -> trained parameters, in the order the groups should take."""
    base = {"gaze": cfg.gaze_lr, "task": cfg.task_lr}
    wd = float(cfg.weight_decay)
    if all(base[name] is None for name in modules) and wd == 0.0:
        everything = [p for params in modules.values() for p in params]
        return [ParamGroup("all", everything, cfg.lr * scale, 0.0)]
    groups = []
    for name, params in modules.items():
        lr = (cfg.lr if base[name] is None else base[name]) * scale
        if wd == 0.0:
            groups.append(ParamGroup(name, list(params), lr, 0.0))
            continue
        groups.append(ParamGroup(name, [p for p in params if p.ndim > 1], lr, wd))
        groups.append(ParamGroup(f"{name}_no_decay", [p for p in params if p.ndim <= 1], lr, 0.0))
    return [g for g in groups if g.params]


def build_optimizer(cfg, groups: list[ParamGroup]) -> torch.optim.Optimizer:
    """The torch optimizer over ``groups`` (a single unnamed group reproduces the historic call)."""
    if len(groups) == 1 and groups[0].name == "all":
        spec: list = groups[0].params
    else:
        spec = [{"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay, "name": g.name} for g in groups]
    lr = groups[0].lr if groups else cfg.lr
    if cfg.optimizer == "adam":
        return torch.optim.Adam(spec, lr=lr, betas=tuple(cfg.betas), weight_decay=float(cfg.weight_decay))
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(spec, lr=lr, betas=tuple(cfg.betas), weight_decay=float(cfg.weight_decay))
    return torch.optim.SGD(spec, lr=lr, weight_decay=float(cfg.weight_decay))
