"""Tube VideoMAE task: a plain VideoMAE (2 x p x p tubelets, full attention, normalised-pixel MSE on
the masked tokens) rebuilds a clip from the visible tokens a TATS / AdaMAE sampler chose.

Modules: config (presets, task keys), targets (normalised tubelet pixels), model (``TubeMAE`` on
transformers' ``VideoMAEForPreTraining``), task (the public ``TubeVideoMAE``).
"""
from .config import PRESETS, TubeMAEConfig, parse_task_config
from .model import TubeMAE
from .targets import patchify, tubelet_targets
from .task import TubeVideoMAE

__all__ = ["TubeVideoMAE", "TubeMAE", "TubeMAEConfig", "parse_task_config", "PRESETS",
           "patchify", "tubelet_targets"]
