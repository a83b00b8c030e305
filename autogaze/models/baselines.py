"""Baseline gaze models with AutoGaze's interface (``sample_budget`` / ``generate``).

Selected with ``model=random|grid|framediff|full``. They read the same ``model`` keys as AutoGaze
(scales, budget strategies), so an experiment can swap them in for training the task
(``algorithm=dummy``) or for evaluation. They have no parameters and no policy: ``score`` is not
defined, a task-loss requirement is ignored (no predictor), and the ``self`` per-frame strategy
(which needs a policy) is rejected.

Every baseline fills each frame up to its budget ``max_gazes[b, t]``; ``num_per_frame`` is the
batch maximum and shorter rows are padded (``is_padded``), as AutoGaze's output is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autogaze.models.autogaze.budget import BudgetSampler, expand_groups, ratios_to_budget
from autogaze.models.autogaze.config import GAZE_PATCH_SIZE, AutoGazeConfig
from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.types import Budget, GazeRollout, Gazes
from autogaze.utils.parsing import ConfigError


class BaselineGaze(nn.Module):
    """Shared budget handling; subclasses implement ``token_scores`` or override ``pick``."""

    def __init__(self, config: AutoGazeConfig):
        super().__init__()
        self.config = config
        for mode in (True, False):
            if config.budget.frame_strategy[mode] == "self":
                raise ConfigError("model.gazing_ratio_each_frame_config.sample_strategy_during_"
                                  + ("training" if mode else "inference"), "self",
                                  "the `self` split needs a gaze policy; baselines have none",
                                  "use uniform or dirichlet with a baseline model")
        self.token_space = TokenSpace(tuple(config.scale_list), GAZE_PATCH_SIZE)
        self.budget_sampler = BudgetSampler(config.budget, config.tokens_per_frame)

    @classmethod
    def validate_config(cls, cfg: dict) -> AutoGazeConfig:
        return AutoGazeConfig.from_hydra(cfg)

    @classmethod
    def from_config(cls, cfg: dict) -> "BaselineGaze":
        return cls(cls.validate_config(cfg))

    @property
    def tokens_per_frame(self) -> int:
        return self.token_space.tokens_per_frame

    def sample_budget(self, video: Tensor, *, training: bool, group_size: int = 1, gazing_ratio=None,
                      task_loss_requirement=None, generator: torch.Generator | None = None, **_) -> Budget:
        """As ``AutoGaze.sample_budget`` (spec 4.8) minus ``self``; tau is dropped (no predictor)."""
        rows, T = video.shape[:2]
        B = rows // group_size
        if gazing_ratio is not None:
            budget = self.budget_sampler.from_user(B, T, video.device, gazing_ratio, None)
        else:
            ratio = self.budget_sampler.video_ratio(training, video.device, generator)
            ratios = self.budget_sampler.frame_ratios(ratio, B, T, training, generator)
            budget = Budget(ratios_to_budget(ratios, self.tokens_per_frame))
        return budget.map(lambda t: expand_groups(t, group_size))

    def token_scores(self, video: Tensor, generator: torch.Generator | None) -> Tensor:
        """FloatTensor [B, T, P]: higher = gazed first."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, video: Tensor, budget: Budget, *, generator: torch.Generator | None = None,
                 **_) -> GazeRollout:
        """Top-``max_gazes[b, t]`` tokens of ``token_scores`` per frame -> GazeRollout.

        video [B, T, 3, H, W]; budget.max_gazes [B, T] -> gazes with n_t = max_b max_gazes[b, t]
        slots in frame t (rows below the maximum padded).
        """
        B, T = video.shape[:2]
        P = self.tokens_per_frame
        caps = budget.max_gazes.clamp(1, P)                                   # [B, T]
        n_t = caps.max(0).values                                              # [T]
        n = int(n_t.max())
        order = self.token_scores(video, generator).argsort(-1, descending=True)[..., :n]  # [B, T, n]
        slot = torch.arange(n, device=video.device)
        is_padded = slot[None, None, :] >= caps[..., None]                    # [B, T, n]
        # Padded slots keep an in-range id of their own frame (types.py convention).
        ids = order + torch.arange(T, device=video.device)[None, :, None] * P
        keep = slot[None, :] < n_t[:, None]                                   # [T, n] frame-major slots
        gazes = Gazes(ids[:, keep], is_padded[:, keep], n_t.cpu(), P)
        return GazeRollout(gazes, budget=budget)


class RandomGaze(BaselineGaze):
    """Uniformly random distinct patches per frame (all scales equally likely)."""

    def token_scores(self, video, generator):
        B, T = video.shape[:2]
        dev = generator.device if generator is not None else "cpu"
        return torch.rand(B, T, self.tokens_per_frame, generator=generator, device=dev).to(video.device)


class GridGaze(BaselineGaze):
    """Coarse-to-fine uniform coverage, the same for every frame.

    Whole scales are taken coarsest first while the budget allows (full coverage at the coarsest
    resolution), and the remainder is spread evenly (row-major stride) over the next scale.
    """

    def token_scores(self, video, generator):
        B, T = video.shape[:2]
        P = self.tokens_per_frame
        rank = torch.empty(P)
        pos = 0
        for off, cnt in zip(self.token_space.offsets, self.token_space.counts):
            # within a scale, an even stride first: positions spread over the grid come early
            spread = torch.linspace(0, cnt - 1, cnt).long()
            order = torch.cat([spread[i::4] for i in range(4)])
            rank[off + order] = torch.arange(pos, pos + cnt, dtype=torch.float)
            pos += cnt
        return (-rank).to(video.device).expand(B, T, P)


class FrameDiffGaze(BaselineGaze):
    """Patches where the frame changed most since the previous frame (RGB absolute difference).

    Frame 0 has no predecessor, so it takes GridGaze's coarse-to-fine coverage (the whole frame is
    new). In later frames each token's score is the mean change inside its pixel square; patches
    with equal change (e.g. an unchanged static background) fall back to the coverage order.
    """

    def token_scores(self, video, generator):
        B, T, C, H, W = video.shape
        P = self.tokens_per_frame
        coverage = GridGaze.token_scores(self, video[:, :1], generator)[:, 0]  # [B, P], higher = earlier
        tie = (coverage - coverage.min()) / (coverage.max() - coverage.min() + 1e-9) * 1e-6  # [B, P] in [0, 1e-6]
        diff = (video[:, 1:] - video[:, :-1]).abs().mean(2).flatten(0, 1)[:, None]  # [B*(T-1), 1, H, W]
        pooled = [F.adaptive_avg_pool2d(diff, side).flatten(1) for side in self.token_space.grid_sides]
        later = torch.cat(pooled, 1).view(B, T - 1, P) + tie[:, None]        # [B, T-1, P]
        first = (coverage[:, None] - coverage.min()) * 10.0                  # [B, 1, P], any order-preserving map
        return torch.cat([first, later], 1)


class FullGaze(BaselineGaze):
    """Every patch of every frame (ratio 1); the budget is ignored."""

    def sample_budget(self, video, *, group_size: int = 1, **_) -> Budget:
        rows, T = video.shape[:2]
        return Budget(torch.full((rows, T), self.tokens_per_frame, dtype=torch.long, device=video.device))

    def token_scores(self, video, generator):
        B, T = video.shape[:2]
        return torch.zeros(B, T, self.tokens_per_frame, device=video.device)

    def generate(self, video, budget=None, **kwargs) -> GazeRollout:
        return super().generate(video, self.sample_budget(video), **kwargs)
