"""Config of the TATS sampler: AdaMAE's shared keys (adamae/config.py) plus

* ``landmarks``           null = exact trajectory attention; m = Orthoformer approximation with m
                          landmarks (Motionformer's default is 128).
* ``trajectory_values``   True = stage-2 values are the stage-1 trajectories themselves
                          (Motionformer's released code) instead of their projection (its equation).
* ``critic_hidden_size``  hidden width of the value head; null = hidden_size (TATS gives none).
"""
from __future__ import annotations

from dataclasses import dataclass

from autogaze.models.adamae.config import GEOMETRY, SamplerConfig
from autogaze.utils.parsing import ConfigError


@dataclass
class TATSConfig(SamplerConfig):
    """TATS: one trajectory-attention block, actor Linear(D, 1), critic MLP on the mean token."""

    landmarks: int | None = None
    trajectory_values: bool = False
    critic_hidden_size: int | None = None


TATS_PRESETS = {
    "tiny": dict(GEOMETRY["tiny"], hidden_size=64, num_attention_heads=4, intermediate_size=256, mask_ratio=0.9),
    # ViT-B width; 12 heads (TATS does not say; ViT-B's count).
    "base": dict(GEOMETRY["base"], hidden_size=768, num_attention_heads=12, intermediate_size=3072, mask_ratio=0.95),
}


def check_tats(c: TATSConfig) -> TATSConfig:
    """The TATS-only rules (the shared ones ran in ``parse_sampler_config``)."""
    m = c.landmarks
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise ConfigError("model.landmarks", c.landmarks, "must be null (exact) or a positive integer",
                          "use model.landmarks=null at small sizes, 128 as Motionformer")
    if not isinstance(c.trajectory_values, bool):
        raise ConfigError("model.trajectory_values", c.trajectory_values, "must be true or false",
                          "model.trajectory_values=false")
    h = c.critic_hidden_size
    if h is not None and (isinstance(h, bool) or not isinstance(h, int) or h < 1):
        raise ConfigError("model.critic_hidden_size", h, "must be null or a positive integer",
                          "drop it to use hidden_size")
    return c
