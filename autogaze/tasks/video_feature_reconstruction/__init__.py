"""Video feature reconstruction task: from the gazed patches only, a block-causal predictor rebuilds the
features a frozen vision tower computes with every patch gazed; the reward is minus the per-frame loss.

Modules: config (the task keys), towers (frozen SigLIP / DINOv2 / VideoMAE targets), predictor (the MAE
task's model with a feature head, and the losses), task (the public ``VideoFeatureReconstruction``).
"""
from .config import FeatureTaskConfig, parse_feature_task_config
from .predictor import FeaturePredictor
from .task import VideoFeatureReconstruction
from .towers import FrozenTower, GazedTower, VideoMAETower, build_tower

__all__ = ["VideoFeatureReconstruction", "FeaturePredictor", "FeatureTaskConfig", "parse_feature_task_config",
           "FrozenTower", "GazedTower", "VideoMAETower", "build_tower"]
