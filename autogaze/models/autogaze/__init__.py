"""AutoGaze gaze model: config, processor, model."""
from autogaze.models.autogaze.config import AutoGazeConfig
from autogaze.models.autogaze.modeling import AutoGaze
from autogaze.models.autogaze.processor import AutoGazeImageProcessor
from autogaze.models.autogaze.speed import SpeedOptions, speed_options
from autogaze.models.autogaze.token_space import TokenSpace

__all__ = ["AutoGaze", "AutoGazeConfig", "AutoGazeImageProcessor", "SpeedOptions", "TokenSpace", "speed_options"]
