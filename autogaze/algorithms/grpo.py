"""Stage 2: group-relative policy gradient against the frozen task reward.

For every clip, G gaze sequences are sampled; the task rebuilds F frames from each and returns
r_{g,i} = -L_{f_i}. With A_i the group-relative advantage of reward i, spread over the real gaze
slots before frame f_i with discount gamma (:func:`~autogaze.algorithms.advantages.discount_advantages`):

    L_gb  = pg_gb + tlp_gb                           (the trainer takes the mean over G*B rollouts)
    pg_gb = - sum_n A_n * exp(logp_n - stopgrad(logp_n))            (= -sum_n A_n, value-wise)
    grad pg_gb = - sum_n A_n * grad logp_n                          (REINFORCE)
    tlp_gb = sum_n m_n (yhat_n - y_n)^2 / (sum m / (G*B))   m = last real gaze of each rebuilt frame

How this "GRPO" departs from the paper's (DeepSeekMath, Shao et al. 2024, eq. 3), as upstream:
  1. No ratio clipping: one gradient step per rollout, so the policy that sampled is the one
     scored and the ratio exp(logp - stopgrad(logp)) is identically 1; only its gradient is used.
  2. No KL penalty and no reference model.
  3. No entropy bonus (entropy is only logged).
  4. Mean-only baseline: A = r - mean_group(r), no division by the group std
     (``normalize_advantage_std=true`` restores the paper's std; Dr. GRPO, Liu et al. 2025,
     argues for leaving it out).
  5. Per-frame rewards, discounted backwards over *real* gaze steps (gamma = discount_factor);
     a gaze after the last rebuilt frame gets no signal in that step.
  6. The loss is summed over slots (not averaged over a sequence's length), then averaged over
     rollouts by the trainer.

Which distribution the log-probabilities come from:
  * Sampling (``policy.generate`` in training mode): per frame, ids gazed earlier in the frame and
    EOS are removed, logits are divided by the trainer's temperature T(step), top-k (model config,
    50 as upstream) is kept, and ids drawn earlier in the same K-token chunk are removed.
  * Scored, default (``score_under_sampling_distribution=false``, upstream): teacher forcing with
    grad, softmax over all P+1 ids at temperature 1, *unmasked*. The gradient is therefore that of
    a related but different distribution from the one that sampled (a biased estimator that
    upstream trains with).
  * Scored, ``score_under_sampling_distribution=true`` (ours): teacher forcing with ``masked=True``
    and the same temperature, i.e. exactly the sampling distribution, so the estimator is the
    on-policy REINFORCE gradient. ``sampling_logp_gap`` logs the mismatch in either mode.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from autogaze.algorithms.advantages import (ADVANTAGE_ESTIMATORS, discount_advantages, expand_groups,
                                            get_advantage_estimator, group_view, zero_std_group_fraction)
from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.algorithms.losses import task_loss_prediction_mse
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput, repeat_groups
from autogaze.utils.parsing import ConfigError, check_keys

#: Health metrics logged under ``train/`` (detached scalars), one line each.
METRICS = {
    "reward_mean": "mean reward (-reconstruction loss) over rollouts and rebuilt frames; should rise",
    "reward_std": "std of the reward over all rollouts and frames (clips differ, so it stays > 0)",
    "reward_group_std": "mean within-group std of the reward: the spread the advantages come from",
    "zero_std_group_frac": "share of (clip, frame) groups whose G rewards tie: they give no gradient",
    "gazes_per_frame": "real (non-padded) gazes per frame, mean over rollouts",
    "entropy": "entropy of the scored distribution at real slots (nats); collapse -> 0",
    "advantage_abs_mean": "mean |A_i| of the per-reward advantages before discounting",
    "sampling_logp_gap": "mean (sampling log p - scored log p) at real slots: 0 when consistent",
    "grpo_loss": "policy-gradient loss; its value is -sum_n A_n (ratio = 1), so only a sanity check",
    "task_loss_prediction_loss": "MSE of the task-loss head at the last real gaze of rebuilt frames",
}


@dataclass
class GRPOConfig:
    """``algorithm`` group for GRPO (autogaze/configs/algorithm/grpo.yaml). Upstream keys first."""

    group_size: int = 4                          # G rollouts per clip (upstream scripts: 12)
    discount_factor: float = 1.0                 # gamma in (0, 1] over real gaze steps (scripts: 0.995)
    optimize_task_loss_prediction: bool = False  # also fit the task-loss head to the task's losses
    # ---- ours ----
    normalize_advantage_std: bool = False        # divide A by the group std + eps (paper; upstream: no)
    score_under_sampling_distribution: bool = False  # re-score masked at the sampling temperature
    advantage_estimator: str = "group_mean"      # baseline; one of ADVANTAGE_ESTIMATORS


def validate_grpo_config(cfg: dict) -> GRPOConfig:
    """Check every key; raise ConfigError naming key, value, rule and fix."""
    check_keys("algorithm", cfg.keys(), GRPOConfig.__dataclass_fields__)
    c = GRPOConfig(**cfg)
    if isinstance(c.group_size, bool) or not isinstance(c.group_size, int) or c.group_size < 1:
        raise ConfigError("algorithm.group_size", c.group_size, "must be an integer >= 1",
                          "use e.g. algorithm.group_size=4 (upstream scripts use 12)")
    if isinstance(c.discount_factor, bool) or not isinstance(c.discount_factor, (int, float)) \
            or not 0 < c.discount_factor <= 1:
        raise ConfigError("algorithm.discount_factor", c.discount_factor, "must lie in (0, 1]",
                          "use 1 (no discount) or e.g. 0.995")
    for key in ("optimize_task_loss_prediction", "normalize_advantage_std", "score_under_sampling_distribution"):
        if not isinstance(getattr(c, key), bool):
            raise ConfigError(f"algorithm.{key}", getattr(c, key), "must be true or false",
                              f"set algorithm.{key}=true or false")
    get_advantage_estimator(c.advantage_estimator)
    if c.advantage_estimator == "leave_one_out" and c.group_size < 2:
        raise ConfigError("algorithm.group_size", c.group_size, "leave_one_out needs at least 2 rollouts",
                          "raise algorithm.group_size or use advantage_estimator=group_mean")
    return replace(c, discount_factor=float(c.discount_factor))  # YAML writes `1`; keep a float


def reinforce_loss(log_probs: Tensor, advantages: Tensor, is_real: Tensor) -> Tensor:
    """Per-rollout REINFORCE loss in GRPO's ratio form.

        loss_r = - sum_n A_rn * exp(logp_rn - stopgrad(logp_rn))      -> grad = - sum_n A_rn grad logp_rn

    log_probs [R, N] (with grad); advantages [R, N] (no grad; zero on padded slots);
    is_real [R, N] bool. Returns [R]. Padded slots are cut out *before* the exponent: a scored
    distribution with masking can give them log p = -inf, and 0 * nan would poison the loss.
    """
    logp = torch.where(is_real, log_probs.float(), torch.zeros_like(log_probs, dtype=torch.float32))
    ratio = torch.exp(logp - logp.detach())  # == 1; carries d logp (on-policy, one step per rollout)
    return -(advantages.detach() * ratio * is_real).sum(-1)


class GRPO(Algorithm):
    needs_task = True  # the reward comes from the task
    #: Encode each clip once per step instead of three times on all G copies (probe, rollout,
    #: re-score); same values and gradients (tests/test_grpo_speed.py), so not a config key. Only
    #: for models with a reusable encoder (``encode_video`` gives tokens: AutoGaze); others run as before.
    share_vision_tokens: bool = True

    def __init__(self, cfg: GRPOConfig):
        self.cfg = cfg
        self.estimate_advantage = ADVANTAGE_ESTIMATORS[cfg.advantage_estimator]

    @classmethod
    def validate_config(cls, cfg: dict) -> GRPOConfig:
        return validate_grpo_config(dict(cfg))


    def prepare(self, batch: Batch) -> Batch:
        return expand_groups(batch, self.cfg.group_size)

    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        """Budget (shared by each group) -> sampled gazes (no grad) -> teacher-forced scores (grad).

        With ``share_vision_tokens`` the B distinct clips (rows :B, the first group copy) are encoded
        once without grad for the probe and the rollout, and the re-score encodes them once with grad
        inside the scorer (so DDP sees it) and repeats the tokens over the G copies.
        """
        G = batch.group_size
        tokens = policy.encode_video(batch.video[: batch.batch_size // G]) if self.share_vision_tokens else None
        shared = None if tokens is None else repeat_groups(tokens, G)   # [B, T, V_tok, D] -> [(g b), T, V_tok, D]
        score_group = None if tokens is None else G                      # the scorer encodes the first copy only
        budget = policy.sample_budget(batch.video, group_size=G, temperature=temperature, vision_tokens=shared)
        sampled = policy.generate(batch.video, budget, temperature=temperature, vision_tokens=shared)
        if self.cfg.score_under_sampling_distribution:
            scores = policy.score(batch.video, sampled.gazes, temperature=temperature, masked=True,
                                  group_size=score_group)
        else:  # upstream: unmasked, temperature 1
            scores = policy.score(batch.video, sampled.gazes, temperature=1.0, masked=False, group_size=score_group)
        return GazeRollout(sampled.gazes, scores, budget, sampled.sample_log_probs)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        if task_out is None:
            raise ValueError("GRPO needs the task's reward: build the trainer with a task")
        cfg, G = self.cfg, batch.group_size
        gazes, scores = rollout.gazes, rollout.scores
        is_real = ~gazes.is_padded                                                   # [G*B, N]
        reward = task_out.reward.detach().float()                                    # [G*B, F]
        adv = self.estimate_advantage(reward, G, normalize_std=cfg.normalize_advantage_std)  # [G*B, F]
        adv_slots = discount_advantages(adv, task_out.traj_len, gazes.is_padded, cfg.discount_factor)
        pg = reinforce_loss(scores.log_probs, adv_slots, is_real)                    # [G*B]

        pred = scores.task_loss_prediction                                           # [G*B, N]
        if cfg.optimize_task_loss_prediction:
            tlp = task_loss_prediction_mse(pred, task_out.task_loss_targets.detach(),
                                           task_out.task_loss_mask & is_real)
        else:
            # Keeps the head in the graph so DDP sees a gradient for every parameter.
            tlp = 0.0 * pred.float().mean(1)
        metrics = self.health_metrics(reward, adv, rollout, pg, tlp, G)
        return AlgorithmOutput(pg + tlp, metrics)

    @staticmethod
    def health_metrics(reward: Tensor, adv: Tensor, rollout: GazeRollout, pg: Tensor, tlp: Tensor,
                       group_size: int) -> dict[str, Tensor]:
        """The detached scalars documented in :data:`METRICS`."""
        gazes, scores = rollout.gazes, rollout.scores
        is_real = ~gazes.is_padded
        n_real = is_real.sum().clamp_min(1)
        m = {
            "reward_mean": reward.mean(),
            "reward_std": reward.std(correction=0),
            "reward_group_std": group_view(reward, group_size).std(0, correction=0).mean(),
            "zero_std_group_frac": zero_std_group_fraction(reward, group_size),
            "gazes_per_frame": is_real.float().sum(1).mean() / gazes.num_frames,
            "advantage_abs_mean": adv.abs().mean(),
            "grpo_loss": pg.mean(),
            "task_loss_prediction_loss": tlp.mean(),
        }
        if scores.entropy is not None:
            m["entropy"] = (scores.entropy.float() * is_real).sum() / n_real
        if rollout.sample_log_probs is not None:
            gap = torch.where(is_real, rollout.sample_log_probs.float() - scores.log_probs.float(), 0.0)
            m["sampling_logp_gap"] = gap.sum() / n_real
        return {k: v.detach().float() for k, v in m.items()}
