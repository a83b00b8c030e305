"""Training algorithms: pure loss cores plus the :class:`Algorithm` adapters the trainer calls."""
from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.algorithms.dummy import Dummy
from autogaze.algorithms.grpo import GRPO
from autogaze.algorithms.ntp import NTP

__all__ = ["Algorithm", "Dummy", "GazePolicy", "GRPO", "NTP"]
