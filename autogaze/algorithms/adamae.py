"""AdaMAE (Bandara et al., CVPR 2023): an adaptive token sampler trained with the MAE, in one step.

For clip b with masked (not visible) tokens M_b, per-token reconstruction error e_i and the
sampler's p = softmax(z) over all N tokens:

    L_r^b = mean_{i in M_b} e_i                           (the task's loss, ``task_out.loss``)
    l_s^b = - mean_{i in M_b} log p_i * sg(e_i)           (:func:`~autogaze.algorithms.losses.score_function_loss`)
    L     = mean_b L_r^b + lambda * mean_b l_s^b          (lambda = ``sampler_loss_weight`` = 1e-4)

The trainer's joint step *is* AdaMAE's schedule: this algorithm returns lambda * l_s^b per clip and
the trainer adds the task's L_r^b, one backward, one optimizer step for both. Raising log p_i where
e_i is large makes hard tokens likely to be *visible* on the next draw.

How this departs from a REINFORCE estimator, as AdaMAE does: the log-prob is each masked token's
own log p_i, not the Plackett-Luce probability of the drawn set, so it is a heuristic score function
(biased); there is no baseline, no entropy term and no clip.

Where this port makes its own choices:
  * Tokens: with ``model.embedding=shared`` the sampler reads X = ``task.embed_tokens(video)``, the
    MAE's Conv3d output, *with* grad, and the task reuses the same X (``GazeRollout.tokens``), so the
    sampler's gradient reaches the Conv3d as in AdaMAE.
  * Two sampler forwards: the draw (no grad) and the scored pass (grad); AdaMAE has one. With
    dropout (0.1 in the sampler block) the two see different masks.
  * Temperature: the model's ``temperature`` (1, as both papers); the trainer's temperature schedule
    is not applied.
"""
from __future__ import annotations

from dataclasses import dataclass

from autogaze.algorithms.base import Algorithm, GazePolicy
from autogaze.algorithms.losses import masked_mean, score_function_loss
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput
from autogaze.utils.parsing import ConfigError, check_keys

#: Health metrics logged under ``train/`` (detached scalars), one line each.
METRICS = {
    "sampler_loss": "mean_b l_s^b before the weight lambda",
    "entropy": "entropy of p over the clip's N tokens (nats); log N at a uniform start, collapse -> 0",
    "max_prob": "largest p_i, mean over clips: 1/N at a uniform start",
    "visible_prob_mass": "sum of p over the drawn visible tokens, mean over clips (N_v/N when uniform)",
    "masked_error": "mean e_i over masked tokens (= the task's reconstruction_loss, as a check)",
}


@dataclass
class AdaMAEConfig:
    """``algorithm`` group for AdaMAE (autogaze/configs/algorithm/adamae.yaml)."""

    sampler_loss_weight: float = 1e-4    # lambda of L = L_r + lambda * l_s (AdaMAE's default)


def _check_weight(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(key, value, "must be a number >= 0", f"e.g. {key}=1e-4")
    return float(value)


def check_token_geometry(exp) -> None:
    """A set sampler and the tube task must share the token space (and the width, when the sampler
    reads the task's tokens); checked before any work."""
    from autogaze.build import resolve_target

    def parsed(group: str, cfg: dict):  # validate_components has checked that the class has it
        return resolve_target(group, cfg).validate_config({k: v for k, v in cfg.items() if k != "_target_"})

    m, t = parsed("model", exp.model), parsed("task", exp.task)
    if not all(hasattr(c, "patch_size") and hasattr(c, "tubelet_size") for c in (m, t)):
        return  # not a token sampler with the tube task: the components check themselves
    keys = ["image_size", "patch_size", "tubelet_size"]
    if getattr(m, "embedding", "own") == "shared":
        keys.append("hidden_size")  # X comes from the task's Conv3d
    for key in keys:
        if getattr(m, key) != getattr(t, key):
            name = "scales" if key == "image_size" else key
            raise ConfigError(f"model.{name}", getattr(m, key), f"must equal task.{name}={getattr(t, key)}",
                              f"set model.{name}: ${{task.{name}}} in the experiment")


class AdaMAEAlgorithm(Algorithm):
    needs_task = True  # the per-token errors come from the task

    def __init__(self, cfg: AdaMAEConfig):
        self.cfg = cfg

    @classmethod
    def validate_config(cls, cfg: dict) -> AdaMAEConfig:
        check_keys("algorithm", cfg.keys(), AdaMAEConfig.__dataclass_fields__)
        c = AdaMAEConfig(**cfg)
        return AdaMAEConfig(_check_weight("algorithm.sampler_loss_weight", c.sampler_loss_weight))


    @staticmethod
    def check_experiment(exp) -> None:
        check_token_geometry(exp)

    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        """X (shared, with grad) -> budget -> draw N_v tokens (no grad) -> score p with grad."""
        tokens = policy.task_tokens(batch.video_for_task)                    # [B, N, D] or None
        budget = policy.sample_budget(batch.video, tokens=tokens)
        sampled = policy.generate(batch.video, budget, tokens=tokens)
        scores = policy.score(batch.video, sampled.gazes, tokens=tokens)
        return GazeRollout(sampled.gazes, scores, budget, sampled.sample_log_probs, tokens=tokens)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        if task_out is None or task_out.loss_per_token is None:
            raise ValueError("adamae needs per-token errors: use task=tube_video_mae")
        scores = rollout.scores
        if scores is None or scores.token_log_probs is None:
            raise ValueError("adamae needs a set sampler's token_log_probs: use model=adamae or model=tats")
        is_masked, err = task_out.token_is_target, task_out.loss_per_token          # [B, N]
        ls = score_function_loss(scores.token_log_probs, err, is_masked)            # [B]
        p = scores.token_log_probs.detach().exp()
        is_visible = ~is_masked
        metrics = {"sampler_loss": ls.mean(), "entropy": scores.clip_entropy.mean(),
                   "max_prob": p.amax(1).mean(), "visible_prob_mass": (p * is_visible).sum(1).mean(),
                   "masked_error": masked_mean(err, is_masked).mean()}
        return AlgorithmOutput(self.cfg.sampler_loss_weight * ls, {k: v.detach().float() for k, v in metrics.items()})
