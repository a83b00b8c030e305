"""TATS (ICCVW 2025): a trajectory-aware token sampler trained by PPO against the MAE's error.

Schedule (one trainer step = one global batch; ``Algorithm.update`` owns it):

  warm-up   while epoch < ``warmup_epochs`` (or step < ``warmup_steps``): MAE-only steps on L_rec with
            uniform random space-time masks; the sampler is not run.
  phase 1   (MAE, every later step) the sampler is frozen: M ~ p (N_v tokens drawn without
            replacement), one MAE step on L_rec = mean_{b, i in M_b} e_i, and each clip is stored in
            the memory D as an episode (X detached, M, log p_old, R, V_old).
  phase 2   (PPO, after every ``update_steps_mae`` = K MAE steps) the MAE is frozen: ``update_steps_ppo``
            = P_s epochs over D in ``ppo_minibatches`` minibatches, one sampler optimizer step each,
            p_theta and V_theta recomputed on the stored X; then D is cleared.

PPO loss per episode b (Schulman et al. 2017, with TATS's value and entropy terms):

    r_i    = exp(log p_theta(i) - log p_old(i))                       i in M_b
    A_i    = R_i - V_old,b
    L_clip = mean_{i in M_b} min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i)
    L_vf   = (V_theta,b - Rbar_b)^2,        Rbar_b = mean_{i in M_b} R_i
    H      = -sum_{j <= N} p_j log p_j
    L_s    = -(c1 L_clip - c2 L_vf + c3 H)          (the trainer takes the mean over episodes)

Choices the TATS text leaves open (inferred; TRAINING.md lists them too):
  * R_i is the *per-token* detached error e_i of masked token i under the MAE before its phase-1
    update (not the clip mean); V is one number per clip, so A_i = R_i - V_old,b broadcasts it.
  * The value target is the clip mean Rbar_b; its gradient equals that of mean_{i in M_b}(V - R_i)^2.
  * No advantage normalisation by default (the text writes A = R - V_old); ``normalize_advantage``
    standardises A over the masked tokens of each minibatch pass, as cleanrl's ppo.py does.
  * eps = 0.2 (PPO's default); no value clipping, no KL penalty, no GAE or discount (one-step episodes).
  * Means over masked tokens, then over episodes (not sums).
  * The sampler is in train mode when it samples (TATS has no dropout, so p does not depend on it).
  * Sampling uses the model's temperature tau (1); the trainer's temperature schedule is not applied.
At K = P_s = 1 (the defaults) r = 1 at the only PPO step and the clip never acts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from autogaze.algorithms.adamae import check_token_geometry
from autogaze.algorithms.base import Algorithm, GazePolicy, Pass, StepInfo, UpdateContext
from autogaze.algorithms.losses import (explained_variance, masked_mean, ppo_clip_objective, ppo_ratio_stats,
                                        tats_ppo_loss, value_loss)
from autogaze.algorithms.ppo_memory import Episodes, PPOMemory
from autogaze.models.adamae.sampling import gazes_from_visible
from autogaze.models.random_tube import random_visible
from autogaze.types import AlgorithmOutput, Batch, GazeRollout, TaskOutput
from autogaze.utils.parsing import ConfigError, check_keys

#: Health metrics logged under ``train/`` (detached scalars), one line each.
METRICS = {
    "warmup": "1 during the MAE-only warm-up (random masks), else 0",
    "entropy": "phase 1: entropy of p over the clip's N tokens (log N when uniform; collapse -> 0)",
    "value_mean": "phase 1: mean critic output V_old",
    "reward_mean": "phase 1: mean R_i over masked tokens (the MAE's error the sampler is paid)",
    "visible_prob_mass": "phase 1: sum of p over the drawn visible tokens (N_v/N when uniform)",
    "ppo_policy_objective": "PPO steps: L_clip (maximised)",
    "ppo_value_loss": "PPO steps: L_vf = (V - Rbar)^2",
    "ppo_entropy": "PPO steps: H of p_theta",
    "ppo_approx_kl": "PPO steps: mean (r - 1) - log r over masked tokens; 0 at the first step",
    "ppo_clip_frac": "PPO steps: share of masked tokens with |r - 1| > eps; 0 at the first step",
    "ppo_advantage_mean": "PPO steps: mean A_i over masked tokens",
    "ppo_explained_variance": "1 - Var(Rbar - V_old) / Var(Rbar) over the memory (NaN for 1 episode)",
    "ppo_loss / ppo_grad_norm": "PPO steps: mean loss and gradient norm (before clipping)",
    "ppo_steps / ppo_episodes": "sampler optimizer steps this trainer step, episodes in the memory",
}


@dataclass
class TATSPPOConfig:
    """``algorithm`` group for TATS (autogaze/configs/algorithm/tats_ppo.yaml)."""

    warmup_epochs: int = 10              # E: MAE-only epochs with uniform random masks (TATS: 10)
    warmup_steps: int | None = None      # alternatively in trainer steps (overrides warmup_epochs)
    update_steps_mae: int = 1            # K: MAE steps per PPO phase (the memory holds K steps)
    update_steps_ppo: int = 1            # P_s: PPO epochs over the memory
    ppo_minibatches: int = 1             # sampler optimizer steps per PPO epoch (slices of every chunk)
    clip_eps: float = 0.2                # eps of the clipped ratio (inferred: PPO's default)
    policy_coef: float = 1e-4            # c1
    value_coef: float = 1e-4             # c2
    entropy_coef: float = 1e-4           # c3
    normalize_advantage: bool = False    # standardise A per minibatch pass (inferred: off)


def validate_tats_ppo_config(cfg: dict) -> TATSPPOConfig:
    """Check every key; raise ConfigError naming key, value, rule and fix."""
    check_keys("algorithm", cfg.keys(), TATSPPOConfig.__dataclass_fields__)
    c = TATSPPOConfig(**cfg)

    def integer(key: str, low: int, allow_none: bool = False) -> None:
        v = getattr(c, key)
        if allow_none and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"algorithm.{key}", v, f"must be an integer >= {low}" + (" or null" if allow_none else ""),
                              f"e.g. algorithm.{key}={getattr(TATSPPOConfig, key)}")

    integer("warmup_epochs", 0)
    integer("warmup_steps", 0, allow_none=True)
    for key in ("update_steps_mae", "update_steps_ppo", "ppo_minibatches"):
        integer(key, 1)
    for key in ("clip_eps", "policy_coef", "value_coef", "entropy_coef"):
        v = getattr(c, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"algorithm.{key}", v, "must be a number >= 0", f"e.g. algorithm.{key}={getattr(TATSPPOConfig, key)}")
    if not c.clip_eps < 1:
        raise ConfigError("algorithm.clip_eps", c.clip_eps, "must be < 1 (the ratio is clipped to [1 - eps, 1 + eps])",
                          "use algorithm.clip_eps=0.2")
    if not isinstance(c.normalize_advantage, bool):
        raise ConfigError("algorithm.normalize_advantage", c.normalize_advantage, "must be true or false",
                          "algorithm.normalize_advantage=false")
    return c


def ppo_episode_loss(token_log_probs: Tensor, value: Tensor, entropy: Tensor, ep: Episodes,
                     cfg: TATSPPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """The PPO loss of the module docstring on n stored episodes -> (L_s [n], detached metrics).

    token_log_probs [n, N] (p_theta, with grad); value [n] and entropy [n] (with grad); ``ep`` holds
    the stored X, M, log p_old, R [n, N] and V_old [n].
    """
    is_masked = ep.is_masked
    returns = masked_mean(ep.reward, is_masked)                                      # Rbar [n]
    adv = torch.where(is_masked, ep.reward.float() - ep.old_value.float()[:, None], 0.0)  # A_i [n, N]
    if cfg.normalize_advantage:
        a = adv[is_masked]
        adv = torch.where(is_masked, (adv - a.mean()) / (a.std(correction=0) + 1e-8), 0.0)
    clip_obj = ppo_clip_objective(token_log_probs, ep.old_log_probs, adv, is_masked, cfg.clip_eps)  # [n]
    vf = value_loss(value, returns)                                                   # [n]
    loss = tats_ppo_loss(clip_obj, vf, entropy.float(), cfg.policy_coef, cfg.value_coef, cfg.entropy_coef)
    stats = ppo_ratio_stats(token_log_probs, ep.old_log_probs, is_masked, cfg.clip_eps)
    metrics = {"ppo_policy_objective": clip_obj.mean(), "ppo_value_loss": vf.mean(), "ppo_entropy": entropy.mean(),
               "ppo_approx_kl": stats["approx_kl"], "ppo_clip_frac": stats["clip_frac"],
               "ppo_advantage_mean": masked_mean(adv, is_masked).mean()}
    return loss, {k: v.detach().float() for k, v in metrics.items()}


class TATSPPO(Algorithm):
    needs_task = True  # the reward and the MAE phase come from the task

    def __init__(self, cfg: TATSPPOConfig):
        self.cfg = cfg
        self.memory = PPOMemory()
        self.phase = "warmup"  # warmup | mae, set by on_step_start

    @classmethod
    def validate_config(cls, cfg: dict) -> TATSPPOConfig:
        return validate_tats_ppo_config(dict(cfg))


    @staticmethod
    def check_experiment(exp) -> None:
        """TATS trains the sampler on stored, detached task tokens, so it needs a trained sampler that
        reads them."""
        check_token_geometry(exp)
        if exp.model.get("embedding", "shared") != "shared":
            raise ConfigError("model.embedding", exp.model.get("embedding"),
                              "tats_ppo recomputes p on the stored task tokens, so a sampler Conv3d would never train",
                              "use model.embedding=shared")
        if not exp.trainer.train_gaze:
            raise ConfigError("trainer.train_gaze", False, "tats_ppo's PPO phase trains the sampler",
                              "set trainer.train_gaze=true, or train the MAE alone with algorithm=dummy")

    # ------------------------------------------------------------------ phases
    def in_warmup(self, info: StepInfo) -> bool:
        if self.cfg.warmup_steps is not None:
            return info.step < self.cfg.warmup_steps
        return info.epoch < self.cfg.warmup_epochs

    def on_step_start(self, info: StepInfo) -> None:
        self.phase = "warmup" if self.in_warmup(info) else "mae"

    def rollout(self, policy: GazePolicy, batch: Batch, temperature: float) -> GazeRollout:
        """warm-up: uniform random masks of N_v tokens; phase 1: N_v tokens drawn from the frozen p."""
        if self.phase == "warmup":
            budget = policy.sample_budget(batch.video)                              # total [B] = N_v
            B, T_ = budget.max_gazes.shape
            is_visible = random_visible(B, T_, policy.tokens_per_frame, budget.total,
                                        device=batch.video.device)                  # global RNG, as sampling
            return GazeRollout(gazes_from_visible(is_visible), None, budget)
        tokens = policy.task_tokens(batch.video_for_task)                           # X [B, N, D], MAE grad
        if tokens is None:
            raise ValueError("tats_ppo stores the task's tokens: use model.embedding=shared")
        frozen = tokens.detach()                                                    # the sampler is frozen
        budget = policy.sample_budget(batch.video, tokens=frozen)
        sampled = policy.generate(batch.video, budget, tokens=frozen)
        return GazeRollout(sampled.gazes, sampled.scores, budget, sampled.sample_log_probs, tokens=tokens)

    def loss(self, batch: Batch, rollout: GazeRollout, task_out: TaskOutput | None) -> AlgorithmOutput:
        """No sampler loss in the joint pass (phase 1 and warm-up train the MAE only); phase 1 returns
        the micro-batch's episodes as the record the memory stores."""
        if task_out is None or task_out.loss_per_token is None:
            raise ValueError("tats_ppo needs per-token errors: use task=tube_video_mae")
        zero = task_out.loss.detach().new_zeros(batch.batch_size)
        if self.phase == "warmup":
            return AlgorithmOutput(zero, {})
        scores = rollout.scores
        if scores.value is None:
            raise ValueError("tats_ppo needs a critic (GazeScores.value): use model=tats")
        is_masked = task_out.token_is_target
        ep = Episodes(rollout.tokens.detach(), is_masked, scores.token_log_probs.detach().float(),
                      task_out.loss_per_token.detach().float(), scores.value.detach().float(),
                      rollout.gazes.tokens_per_frame)
        p = ep.old_log_probs.exp()
        metrics = {"entropy": scores.clip_entropy.mean(), "value_mean": ep.old_value.mean(),
                   "reward_mean": masked_mean(ep.reward, is_masked).mean(),
                   "visible_prob_mass": (p * ~is_masked).sum(1).mean()}
        return AlgorithmOutput(zero, {k: v.detach().float() for k, v in metrics.items()}, record=ep)

    # ------------------------------------------------------------------ the update
    def update(self, ctx: UpdateContext, micro_batches: list[Batch]) -> dict[str, float]:
        res = ctx.optimizer_step(micro_batches)                 # warm-up or phase 1: one MAE step
        metrics = dict(res.metrics, warmup=float(self.phase == "warmup"))
        if self.phase == "warmup":
            return metrics
        if res.stepped:  # a skipped (non-finite) step stores nothing, on every rank alike
            self.memory.add_step(res.records)
        if self.memory.mae_steps >= self.cfg.update_steps_mae:
            metrics.update(self.ppo_phase(ctx))
            self.memory.clear()
        return metrics

    def ppo_phase(self, ctx: UpdateContext) -> dict[str, float]:
        """P_s epochs x ``ppo_minibatches`` sampler optimizer steps over the memory; mean metrics."""
        episodes = self.memory.to(ctx.device).episodes()  # chunks restored by a resume sit on the CPU
        returns = torch.cat([masked_mean(e.reward, e.is_masked) for e in episodes]) if episodes else torch.zeros(0)
        old_value = torch.cat([e.old_value for e in episodes]) if episodes else torch.zeros(0)
        results = []
        for epoch in range(self.cfg.update_steps_ppo):
            # The split is seeded by (seed, step, epoch): the same on every rank and on resume.
            g = torch.Generator().manual_seed(hash((ctx.info.seed, ctx.info.step, epoch)) % 2**63)
            for minibatch in self.memory.minibatches(self.cfg.ppo_minibatches, g):
                results.append(ctx.optimizer_step(minibatch, lambda ep: self._ppo_pass(ctx, ep), kind="ppo"))
        out: dict[str, float] = {}
        for r in results:
            for k, v in r.metrics.items():
                name = {"loss": "ppo_loss", "grad_norm": "ppo_grad_norm"}.get(k, k)
                out[name] = out.get(name, 0.0) + v / len(results)
        out.update(ppo_steps=float(len(results)), ppo_episodes=float(len(self.memory)),
                   ppo_explained_variance=float(explained_variance(old_value, returns)))
        return out

    def _ppo_pass(self, ctx: UpdateContext, ep: Episodes) -> Pass:
        with ctx.autocast():
            # The sampler reads only ``tokens``; its video argument is unused when they are given.
            scores = ctx.policy.score(ep.tokens, ep.gazes(), tokens=ep.tokens)
            loss, metrics = ppo_episode_loss(scores.token_log_probs, scores.value, scores.clip_entropy, ep, self.cfg)
        return Pass(loss.float().mean(), metrics)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        # Loaded on the CPU; the PPO phase moves the memory to the training device.
        self.memory.load_state_dict(state.get("memory", {}))
