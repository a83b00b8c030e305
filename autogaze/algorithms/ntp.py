"""Stage 1: next-token prediction on ground-truth gaze sequences.

    L = mean_b [ ntp_b + tlp_b ]
    ntp_b = - sum_n m_bn log p(g_bn | g_<n, video) / (sum m / B)       (teacher forcing)
    tlp_b = sum_n m_bn (yhat_bn - y_bn)^2 / (sum m / B)                  (if optimize_task_loss_prediction)

m = real (non-padded) label slots; y = the label file's per-gaze task loss.
Deviations from upstream: log p is ``log_softmax`` (upstream: log(softmax + 1e-8)). Like upstream,
there is no EOS term (padding is masked), no label smoothing and no KL.

Option (ours, off by default): ``soft_label_temperature`` tau > 0 replaces ntp_b by the cross-entropy
against the labeller's best candidates of each step, weighted softmax(-(L_m - L_pick) / tau) (labels
written with ``python -m autogaze.label --top-candidates M``; ``losses.soft_label_nll``).
"""
from __future__ import annotations

from dataclasses import dataclass

from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.algorithms.losses import masked_nll, soft_label_nll, task_loss_prediction_mse
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput
from autogaze.utils.parsing import ConfigError, check_keys


@dataclass
class NTPConfig:
    optimize_task_loss_prediction: bool = False  # also fit the task-loss head to the labels' losses
    # > 0: soft targets over the labeller's recorded candidates, in task-loss units (0 = the hard pick)
    soft_label_temperature: float = 0.0


class NTP(Algorithm):
    needs_task = False  # teacher forcing on labels: the task only runs at validation

    def __init__(self, cfg: NTPConfig):
        self.cfg = cfg

    @classmethod
    def validate_config(cls, cfg: dict) -> NTPConfig:
        check_keys("algorithm", cfg.keys(), NTPConfig.__dataclass_fields__)
        out = NTPConfig(**cfg)
        if not out.soft_label_temperature >= 0:
            raise ConfigError("algorithm.soft_label_temperature", out.soft_label_temperature, "must be >= 0",
                              "use 0 (hard labels, upstream) or a loss-scale value such as 0.005")
        return out


    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        if batch.labels is None:
            raise ConfigError("dataset.gt_gazing_pos_paths.train", None, "NTP trains on gaze labels",
                              "point it at a gazing_labels.json (python -m autogaze.label writes one)")
        soft = self.cfg.soft_label_temperature > 0
        if soft and batch.labels.candidate_ids is None:
            raise ConfigError("algorithm.soft_label_temperature", self.cfg.soft_label_temperature,
                              "soft targets need the labeller's candidates, and these labels have none",
                              "relabel with python -m autogaze.label --top-candidates 8, or set it to 0")
        scores = policy.score(batch.video, batch.labels.gazes, with_logits=True if soft else None)
        return GazeRollout(batch.labels.gazes, scores)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        gazes, scores = rollout.gazes, rollout.scores
        is_real = ~gazes.is_padded
        hard = masked_nll(scores.log_probs, is_real)
        ntp = hard
        if self.cfg.soft_label_temperature > 0:
            labels = batch.labels
            ntp = soft_label_nll(scores.logits, labels.candidate_ids % gazes.tokens_per_frame,
                                 labels.candidate_losses, self.cfg.soft_label_temperature, is_real)
        pred = scores.task_loss_prediction
        if self.cfg.optimize_task_loss_prediction:
            tlp = task_loss_prediction_mse(pred, batch.labels.task_losses, is_real)
        else:
            # Keeps the head in the graph so DDP sees a gradient for every parameter.
            tlp = 0.0 * pred.float().mean(1)
        metrics = {"ntp_loss": hard.mean().detach(), "task_loss_prediction_loss": tlp.mean().detach(),
                   "label_gazes_per_frame": is_real.float().sum(1).mean() / gazes.num_frames}
        if ntp is not hard:
            metrics["soft_ntp_loss"] = ntp.mean().detach()
        return AlgorithmOutput(ntp + tlp, metrics)
