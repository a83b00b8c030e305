"""Stage 1: next-token prediction on ground-truth gaze sequences.

    L = mean_b [ ntp_b + tlp_b ]
    ntp_b = - sum_n m_bn log p(g_bn | g_<n, video) / (sum m / B)       (teacher forcing)
    tlp_b = sum_n m_bn (yhat_bn - y_bn)^2 / (sum m / B)                  (if optimize_task_loss_prediction)

m = real (non-padded) label slots; y = the label file's per-gaze task loss.
Deviations from upstream: log p is ``log_softmax`` (upstream: log(softmax + 1e-8)). Like upstream,
there is no EOS term (padding is masked), no label smoothing and no KL.
"""
from __future__ import annotations

from dataclasses import dataclass

from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.algorithms.losses import masked_nll, task_loss_prediction_mse
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput
from autogaze.utils.parsing import ConfigError, check_keys


@dataclass
class NTPConfig:
    optimize_task_loss_prediction: bool = False  # also fit the task-loss head to the labels' losses


class NTP(Algorithm):
    needs_task = False  # teacher forcing on labels: the task only runs at validation

    def __init__(self, cfg: NTPConfig):
        self.cfg = cfg

    @classmethod
    def validate_config(cls, cfg: dict) -> NTPConfig:
        check_keys("algorithm", cfg.keys(), NTPConfig.__dataclass_fields__)
        return NTPConfig(**cfg)


    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        if batch.labels is None:
            raise ConfigError("dataset.gt_gazing_pos_paths.train", None, "NTP trains on gaze labels",
                              "point it at a gazing_labels.json (python -m autogaze.label writes one)")
        scores = policy.score(batch.video, batch.labels.gazes)
        return GazeRollout(batch.labels.gazes, scores)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        gazes, scores = rollout.gazes, rollout.scores
        is_real = ~gazes.is_padded
        ntp = masked_nll(scores.log_probs, is_real)
        pred = scores.task_loss_prediction
        if self.cfg.optimize_task_loss_prediction:
            tlp = task_loss_prediction_mse(pred, batch.labels.task_losses, is_real)
        else:
            # Keeps the head in the graph so DDP sees a gradient for every parameter.
            tlp = 0.0 * pred.float().mean(1)
        metrics = {"ntp_loss": ntp.mean().detach(), "task_loss_prediction_loss": tlp.mean().detach(),
                   "label_gazes_per_frame": is_real.float().sum(1).mean() / gazes.num_frames}
        return AlgorithmOutput(ntp + tlp, metrics)
