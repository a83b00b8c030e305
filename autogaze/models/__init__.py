"""Gaze models. ``AutoGaze`` is the released architecture (spec section 4)."""
from autogaze.models.autogaze import AutoGaze, AutoGazeConfig, AutoGazeImageProcessor

__all__ = ["AutoGaze", "AutoGazeConfig", "AutoGazeImageProcessor"]
