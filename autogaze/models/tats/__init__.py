"""TATS (ICCVW 2025): trajectory-aware token sampler with a critic, as a gaze model.

Modules: config (``TATSConfig``), attention (Motionformer trajectory attention, exact or with
landmarks; ``TrajectoryBlock``), model (``TATS``). Sampling and the gaze-model interface come from
``autogaze.models.adamae`` (TATS extends AdaMAE's sampler).
"""
from .attention import TrajectoryAttention, TrajectoryBlock, frame_attention, landmark_frame_attention
from .config import TATS_PRESETS, TATSConfig
from .model import TATS

__all__ = ["TATS", "TATSConfig", "TATS_PRESETS", "TrajectoryAttention", "TrajectoryBlock", "frame_attention",
           "landmark_frame_attention"]
