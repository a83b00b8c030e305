"""Random token masks as a gaze model: the VideoMAE baselines of the TATS / AdaMAE comparisons.

    model=random_tube model.masking=random   uniform space-time masking: N_v = int(N (1 - rho)) tokens
                                             drawn uniformly without replacement from all N = T' P
                                             tubelets of the clip (TATS's warm-up masks)
    model=random_tube model.masking=tube     VideoMAE's tube masking (Tong et al., NeurIPS 2022): the
                                             same n = max(1, N_v // T') spatial positions are visible
                                             in every tube-frame (so n T' <= N_v tokens are visible)

No parameters and no policy; with ``algorithm=dummy trainer.train_gaze=false trainer.train_task=true``
the tube VideoMAE trains on these masks (the ``tube_video_mae_random`` experiment). ``score`` gives
the uniform distribution's log-probs (log 1/N), so evaluation code can read them.

Keys: the token samplers' geometry keys (``preset``, ``scales``, ``max_num_frames``, ``patch_size``,
``tubelet_size``, ``mask_ratio``; see models/adamae/config.py) plus ``masking``. The width keys are
accepted and unused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autogaze.models.adamae.config import ADAMAE_PRESETS, SamplerConfig, parse_sampler_config
from autogaze.models.adamae.sampling import gazes_from_visible, sample_without_replacement, visible_mask
from autogaze.models.adamae.token_sampler import TokenDistribution, TokenSampler
from autogaze.types import Budget, GazeRollout
from autogaze.utils.parsing import ConfigError, check_choice

MASKINGS = ("random", "tube")


@dataclass
class RandomTubeConfig(SamplerConfig):
    masking: str = "random"           # random (uniform space-time) | tube (same positions every tube-frame)


def random_visible(batch: int, tube_frames: int, tokens_per_frame: int, total: Tensor, *, tube: bool = False,
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Uniform random visible sets -> is_visible [B, T', P] bool.

    total: LongTensor [B] visible tokens per clip. ``tube=False``: ``total[b]`` tokens uniformly
    without replacement among all T' P. ``tube=True``: ``max(1, total[b] // T')`` spatial positions,
    visible in every tube-frame. The uniforms come from ``generator`` (or the global RNG).
    """
    T_, P = tube_frames, tokens_per_frame
    gen_dev = generator.device if generator is not None else device
    if tube:
        per_frame = (total.to(device) // T_).clamp(1, P)                                  # [B]
        keys = torch.rand(batch, P, generator=generator, device=gen_dev).to(device)       # [B, P]
        rank = keys.argsort(-1).argsort(-1)                                               # uniform ranks
        is_visible = rank < per_frame[:, None]                                            # [B, P]
        return is_visible[:, None, :].expand(batch, T_, P).contiguous()
    N = T_ * P
    uniform = torch.full((batch, N), -math.log(N), device=device)                         # log 1/N
    k = int(total.max())
    ids = sample_without_replacement(uniform, k, generator)                               # [B, k]
    return visible_mask(ids, total.to(device).clamp(1, N), N).view(batch, T_, P)


class RandomTube(TokenSampler):
    """Uniform random or tube masks through the ``TokenSampler`` interface; no parameters."""

    def __init__(self, config: RandomTubeConfig | None = None, **model_keys: Any):
        if config is None:
            config = self.validate_config(model_keys)
        super().__init__(config)

    @classmethod
    def validate_config(cls, cfg: Any) -> RandomTubeConfig:
        c = parse_sampler_config(RandomTubeConfig, {"embedding": "shared", **dict(cfg or {})}, ADAMAE_PRESETS)
        check_choice("model.masking", c.masking, MASKINGS)
        if c.embedding != "shared":
            raise ConfigError("model.embedding", c.embedding, "random masks read no tokens",
                              "drop model.embedding for model=random_tube")
        return c

    @classmethod
    def from_config(cls, cfg: Any) -> "RandomTube":
        return cls(cls.validate_config(cfg))

    @property
    def uses_task_tokens(self) -> bool:
        return False

    def distribution(self, video: Tensor, tokens: Tensor | None = None,
                     temperature: float | None = None) -> TokenDistribution:
        """Uniform log p = log 1/N [B, N]; reads only the clip's shape."""
        x = video if tokens is None else tokens
        N = self.num_tube_frames(video, tokens) * self.tokens_per_frame
        return TokenDistribution(torch.full((x.shape[0], N), -math.log(N), device=x.device))

    @torch.no_grad()
    def generate(self, video: Tensor, budget: Budget, *, generator: torch.Generator | None = None,
                 tokens: Tensor | None = None, **_) -> GazeRollout:
        """Random (or tube) visible sets of ``budget.total`` tokens; a budget without a total (the
        per-frame budgets of autogaze.evaluate) is drawn frame by frame, uniformly."""
        if self.config.masking == "random" or budget.total is None:
            return super().generate(video, budget, generator=generator, tokens=tokens, do_sample=True)
        dist = self.distribution(video, tokens)
        B, N = dist.log_probs.shape
        T_ = N // self.tokens_per_frame
        is_visible = random_visible(B, T_, self.tokens_per_frame, budget.total, tube=True, generator=generator,
                                    device=dist.log_probs.device)
        gazes = gazes_from_visible(is_visible)
        scores = self._scores(dist, gazes)
        return GazeRollout(gazes, scores=scores, budget=budget, sample_log_probs=scores.log_probs)
