"""``TokenSampler``: the gaze-model interface for samplers that pick a clip's visible tubelets.

AdaMAE (CVPR 2023) and TATS (ICCVW 2025) score every tubelet token of a clip with one softmax,
p = softmax(z / tau) over all N = T' * P tokens, and draw the visible set without replacement.
Subclasses only map tokens to logits (and, for TATS, to a value); this class adds what the trainer,
algorithms and evaluation call:

* ``sample_budget(video, ...) -> Budget`` with ``total`` [B] = N_v = int(N (1 - rho)) and
  per-frame caps of P (no per-frame constraint);
* ``generate(video, budget, generator=...) -> GazeRollout``, no grad: a Plackett-Luce draw of
  ``total`` tokens (Gumbel-top-k, sampling.py), laid out as ``Gazes`` over the T' tube-frames;
* ``score(video, gazes) -> GazeScores`` with grad: full ``token_log_probs`` [B, N], ``clip_entropy``
  [B], ``value`` [B] (TATS) and per-slot ``log_probs`` [B, K] = log p(id) (0 on padded slots).

Choices where the papers are silent:

* ``log_probs`` / ``sample_log_probs`` of a slot are the token's single-draw log p(id), not the
  Plackett-Luce conditional: the losses of both methods read per-token log p, and the gazes are
  re-sorted by frame, so the draw order is not kept. ``sampling.plackett_luce_log_prob`` gives the
  set probability for a caller that keeps the order.
* A budget without ``total`` (the per-frame budgets of ``autogaze.evaluate``) is drawn frame by
  frame: each tube-frame's caps ``max_gazes[b, t']`` from that frame's tokens.
* ``do_sample=False`` takes the top-N_v tokens of p (evaluation); the default samples in train and
  eval mode alike. Dropout follows the module's mode (the algorithm decides), so in train mode
  ``generate`` and a later ``score`` see different dropout masks, unlike AdaMAE's single forward.
* ``temperature`` (a trainer schedule) overrides the config's tau when given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import VideoMAEConfig
from transformers.models.videomae.modeling_videomae import VideoMAEPatchEmbeddings

from autogaze.interfaces import GazeModelBase
from autogaze.types import Budget, GazeRollout, Gazes, GazeScores, repeat_groups

from .config import SamplerConfig
from .sampling import gazes_from_visible, gumbel_keys, sample_without_replacement, visible_mask


@dataclass
class TokenDistribution:
    """One forward of a sampler.

    log_probs: FloatTensor [B, N]  log softmax(z / tau) over the clip's tokens (float32).
    value:     FloatTensor [B] or None  critic output (TATS).
    """

    log_probs: Tensor
    value: Tensor | None = None

    @property
    def entropy(self) -> Tensor:
        """[B]: -sum_j p_j log p_j."""
        return -(self.log_probs.exp() * self.log_probs).sum(-1)


class TokenSampler(GazeModelBase):
    """Base of AdaMAE and TATS; subclasses implement ``token_logits`` (and maybe ``token_value``)."""

    can_score = True

    def __init__(self, config: SamplerConfig):
        super().__init__()
        self.config = config
        # "own": a Conv3d tubelet embedding like the MAE's; "shared": tokens arrive from the task.
        self.patch_embed = VideoMAEPatchEmbeddings(self.videomae_config()) if config.embedding == "own" else None

    def videomae_config(self, **overrides: Any) -> VideoMAEConfig:
        """A transformers VideoMAEConfig with this sampler's geometry and block width."""
        c = self.config
        cfg = VideoMAEConfig(image_size=c.image_size, num_frames=c.max_num_frames, patch_size=c.patch_size,
                             tubelet_size=c.tubelet_size, hidden_size=c.hidden_size,
                             num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                             layer_norm_eps=1e-6, initializer_range=c.initializer_range, **overrides)
        cfg._attn_implementation = "sdpa"
        return cfg

    def init_weights(self) -> None:
        """Normal(0, initializer_range) Linear / Conv3d weights, zero biases, unit LayerNorms
        (transformers' VideoMAE init); Parameters outside modules (position tables) are untouched."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ token space
    @property
    def uses_task_tokens(self) -> bool:
        """True with ``embedding=shared``: callers pass ``tokens=task.embed_tokens(video_for_task)``."""
        return self.patch_embed is None

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def scales(self) -> list[int]:
        return [self.config.image_size]

    def num_tube_frames(self, video: Tensor, tokens: Tensor | None = None) -> int:
        """T' of the clip: from ``tokens`` [B, N, D] when given, else from video [B, T, ...]."""
        if tokens is not None:
            N = tokens.shape[1]
            if N % self.tokens_per_frame:
                raise ValueError(f"{N} tokens are not whole tube-frames of {self.tokens_per_frame}")
            return N // self.tokens_per_frame
        T, u = video.shape[1], self.config.tubelet_size
        if T % u:
            raise ValueError(f"clips of {T} frames do not split into tubelets of {u}")
        return T // u

    def _tokens(self, video: Tensor, tokens: Tensor | None) -> Tensor:
        """X [B, N, D]: ``tokens`` (shared embedding) or this sampler's own Conv3d of ``video``."""
        if tokens is None:
            if self.patch_embed is None:
                raise ValueError("model.embedding=shared: pass tokens=task.embed_tokens(video_for_task) "
                                 "[B, N, D], or set model.embedding=own")
            tokens = self.patch_embed(video)
        N, D = tokens.shape[1:]
        if D != self.config.hidden_size or N > self.config.max_tokens:
            raise ValueError(f"tokens {tuple(tokens.shape)} need width {self.config.hidden_size} (model.hidden_size "
                             f"= the task's hidden_size) and at most {self.config.max_tokens} tokens "
                             "(model.max_num_frames)")
        return tokens

    # ------------------------------------------------------------------ the policy
    def token_logits(self, tokens: Tensor) -> Tensor:
        """tokens X [B, N, D] -> logits z [B, N]."""
        raise NotImplementedError

    def token_value(self, tokens: Tensor) -> Tensor | None:
        """tokens X [B, N, D] -> value [B], or None (no critic)."""
        return None

    def distribution(self, video: Tensor, tokens: Tensor | None = None,
                     temperature: float | None = None) -> TokenDistribution:
        """video [B, T, 3, S, S] (or ``tokens`` [B, N, D]) -> log p [B, N] and value [B]."""
        x = self._tokens(video, tokens)
        tau = float(self.config.temperature if temperature is None else temperature)
        # nan_to_num as AdaMAE does: a non-finite logit must not poison the whole softmax.
        z = torch.nan_to_num(self.token_logits(x).float())
        return TokenDistribution(F.log_softmax(z / tau, dim=-1), self.token_value(x))

    def _scores(self, dist: TokenDistribution, gazes: Gazes) -> GazeScores:
        lp = dist.log_probs.gather(1, gazes.ids).masked_fill(gazes.is_padded, 0.0)  # [B, K]
        ent = dist.entropy                                                          # [B]
        return GazeScores(log_probs=lp, task_loss_prediction=torch.zeros_like(lp),
                          entropy=ent[:, None].expand_as(lp), token_log_probs=dist.log_probs,
                          clip_entropy=ent, value=dist.value)

    # ------------------------------------------------------------------ gaze-model interface
    def sample_budget(self, video: Tensor, *, training: bool = True, group_size: int = 1, gazing_ratio=None,
                      generator: torch.Generator | None = None, tokens: Tensor | None = None, **_) -> Budget:
        """Budget for ``video`` [G*B, T, ...]: ``total`` [G*B] = int(N * (1 - rho)), clamped to [1, N],
        and caps ``max_gazes`` [G*B, T'] = P. ``gazing_ratio`` (1 - rho; a scalar or [B] per clip,
        repeated group-major) overrides the config's rho; the budget is the same in train and eval."""
        rows, T_ = video.shape[0], self.num_tube_frames(video, tokens)
        N, dev = T_ * self.tokens_per_frame, video.device
        if gazing_ratio is None:
            total = torch.full((rows,), int(N * (1 - float(self.config.mask_ratio))), dtype=torch.long, device=dev)
        else:
            ratio = torch.as_tensor(gazing_ratio).detach().cpu().double().flatten()  # float64 on CPU: any device
            if ratio.numel() not in (1, rows) and ratio.numel() * group_size == rows:
                ratio = repeat_groups(ratio, group_size)  # one ratio per clip -> its G copies
            if ratio.numel() not in (1, rows):
                raise ValueError(f"gazing_ratio has {ratio.numel()} values; give 1, one per clip or one per "
                                 f"row ({rows})")
            total = (N * ratio).long().expand(rows).to(dev)
        caps = torch.full((rows, T_), self.tokens_per_frame, dtype=torch.long, device=dev)
        return Budget(caps, total=total.clamp(1, N))

    @torch.no_grad()
    def generate(self, video: Tensor, budget: Budget, *, generator: torch.Generator | None = None,
                 tokens: Tensor | None = None, temperature: float | None = None, do_sample: bool | None = None,
                 **_) -> GazeRollout:
        """Draw the visible set -> GazeRollout (gazes [B, K], scores, budget, sample_log_probs [B, K]).

        video [B, T, 3, S, S] (or ``tokens`` [B, N, D]); budget.total [B] tokens anywhere in the clip,
        or, without a total, budget.max_gazes [B, T'] per tube-frame.
        """
        dist = self.distribution(video, tokens, temperature)
        B, N = dist.log_probs.shape
        T_, P = N // self.tokens_per_frame, self.tokens_per_frame
        sample = True if do_sample is None else bool(do_sample)
        if budget.total is not None:
            if bool((budget.max_gazes < P).any()):
                raise ValueError("a budget with a clip total must leave the per-frame caps at P (no caps)")
            total = budget.total.to(dist.log_probs.device).clamp(1, N)
            k = int(total.max())
            ids = (sample_without_replacement(dist.log_probs, k, generator) if sample
                   else dist.log_probs.topk(k, dim=-1).indices)                          # [B, k] draw order
            is_visible = visible_mask(ids, total, N).view(B, T_, P)
        else:
            keys = gumbel_keys(dist.log_probs, generator) if sample else dist.log_probs
            rank = keys.view(B, T_, P).argsort(-1, descending=True).argsort(-1)          # [B, T', P]
            is_visible = rank < budget.max_gazes.to(rank.device).clamp(1, P)[..., None]
        gazes = gazes_from_visible(is_visible)
        scores = self._scores(dist, gazes)
        return GazeRollout(gazes, scores=scores, budget=budget, sample_log_probs=scores.log_probs)

    def score(self, video: Tensor, gazes: Gazes, *, tokens: Tensor | None = None,
              temperature: float | None = None, **_) -> GazeScores:
        """Scores of ``gazes`` [B, K] with grad: per-slot log p(id), full token log-probs [B, N],
        clip entropy [B] and value [B] (None without a critic)."""
        dist = self.distribution(video, tokens, temperature)
        N = dist.log_probs.shape[1]
        if gazes.tokens_per_frame != self.tokens_per_frame or gazes.num_frames * self.tokens_per_frame != N:
            raise ValueError(f"gazes cover {gazes.num_frames} x {gazes.tokens_per_frame} tokens, the clip has "
                             f"{dist.log_probs.shape[1]} ({self.tokens_per_frame} per tube-frame)")
        return self._scores(dist, gazes)
