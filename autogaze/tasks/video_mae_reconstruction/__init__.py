"""VideoMAE reconstruction task: a frozen (or trainable) multi-scale, block-causal
ViT-MAE rebuilds chosen frames from the gazed patches; the reward is minus the per-frame loss.

Modules: config (presets, task keys), embeddings, masks, model, losses (feature models), weights,
task (the public ``VideoMAEReconstruction``), visualize.
"""
from .config import MAE_PRESETS, MultiScaleViTMAEConfig, TaskConfig, parse_task_config
from .losses import FEATURE_PRESETS
from .model import MultiScaleViTMAE
from .task import VideoMAEReconstruction
from .visualize import visualize
from .weights import LoadReport, WeightsError

__all__ = ["VideoMAEReconstruction", "MultiScaleViTMAE", "MultiScaleViTMAEConfig", "TaskConfig",
           "parse_task_config", "MAE_PRESETS", "FEATURE_PRESETS", "LoadReport", "WeightsError", "visualize"]
