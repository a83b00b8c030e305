"""Gaze models. ``AutoGaze`` is the released architecture."""
from autogaze.models.autogaze import AutoGaze, AutoGazeConfig, AutoGazeImageProcessor

__all__ = ["AutoGaze", "AutoGazeConfig", "AutoGazeImageProcessor"]
