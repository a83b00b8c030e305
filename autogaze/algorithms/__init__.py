"""Training algorithms: pure loss cores plus the :class:`Algorithm` adapters the trainer calls."""
from autogaze.algorithms.adamae import AdaMAEAlgorithm
from autogaze.algorithms.base import Algorithm, GazePolicy, Pass, StepInfo, StepResult, UpdateContext
from autogaze.algorithms.dummy import Dummy
from autogaze.algorithms.grpo import GRPO
from autogaze.algorithms.ntp import NTP
from autogaze.algorithms.tats_ppo import TATSPPO

__all__ = ["AdaMAEAlgorithm", "Algorithm", "Dummy", "GazePolicy", "GRPO", "NTP", "Pass", "StepInfo", "StepResult",
           "TATSPPO", "UpdateContext"]
