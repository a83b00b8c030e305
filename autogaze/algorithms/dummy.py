"""Task-only training: gaze with the current gaze model, train the task, no gaze loss.

Upstream ships an empty ``dummy.yaml``; here it is the recipe for training a task model (our small
VideoMAE) from scratch with ``trainer.train_task=True trainer.train_gaze=False``, typically with the
``random`` baseline gaze model so the MAE sees gazes at many ratios, as MAE pre-training sees
random masks. The task's own loss (``task_out.loss``) is what the trainer optimises.
"""
from __future__ import annotations

from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput
from autogaze.utils.parsing import check_keys


class Dummy(Algorithm):
    needs_task = True

    @classmethod
    def validate_config(cls, cfg: dict) -> None:
        check_keys("algorithm", cfg.keys(), [])

    @classmethod
    def from_config(cls, cfg: dict) -> "Dummy":
        cls.validate_config(cfg)
        return cls()

    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        budget = policy.sample_budget(batch.video)
        return policy.generate(batch.video, budget, temperature=temperature)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        zero = batch.video.new_zeros(batch.batch_size)
        gazes = rollout.gazes
        ratio = (~gazes.is_padded).float().sum(1).mean() / (gazes.num_frames * gazes.tokens_per_frame)
        return AlgorithmOutput(zero, {"gazing_ratio": ratio})
