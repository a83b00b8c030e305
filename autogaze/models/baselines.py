"""Baseline gaze models with AutoGaze's interface (``sample_budget`` / ``generate``).

Selected with ``model=random|grid|framediff|full``. They read the same ``model`` keys as AutoGaze
(scales, budget strategies), so an experiment can swap them in for training the task
(``algorithm=dummy``) or for evaluation. They have no parameters and no policy: ``can_score`` is
False and ``score`` raises, a task-loss requirement is ignored (no predictor), and the ``self``
per-frame strategy (which needs a policy) is rejected.

Every baseline fills each frame up to its budget ``max_gazes[b, t]``; ``num_per_frame`` is the
batch maximum and shorter rows are padded (``is_padded``), as AutoGaze's output is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autogaze.interfaces import GazeModelBase
from autogaze.models.autogaze.budget import BudgetSampler, expand_groups, ratios_to_budget
from autogaze.models.autogaze.config import GAZE_PATCH_SIZE, AutoGazeConfig
from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.types import Budget, GazeRollout, Gazes
from autogaze.utils.parsing import ConfigError


class BaselineGaze(GazeModelBase):
    """Shared budget handling; subclasses implement ``token_scores`` or override ``generate``."""

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
        """As ``AutoGaze.sample_budget`` minus ``self``; tau is dropped (no predictor)."""
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
        return self._rollout(self.token_scores(video, generator), budget)

    def _rollout(self, scores: Tensor, budget: Budget) -> GazeRollout:
        """scores [B, T, P] (higher = gazed first) -> the top-``max_gazes[b, t]`` tokens per frame."""
        B, T, P = scores.shape
        dev = scores.device
        caps = budget.max_gazes.clamp(1, P)                                   # [B, T]
        n_t = caps.max(0).values                                              # [T]
        n = int(n_t.max())
        order = scores.argsort(-1, descending=True)[..., :n]                  # [B, T, n]
        slot = torch.arange(n, device=dev)
        is_padded = slot[None, None, :] >= caps[..., None]                    # [B, T, n]
        # Padded slots keep an in-range id of their own frame (types.py convention).
        ids = order + torch.arange(T, device=dev)[None, :, None] * P
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
        return coverage_scores(self.token_space).to(video.device).expand(B, T, -1)


def coverage_scores(space: TokenSpace, finest_first: bool = False) -> Tensor:
    """FloatTensor [P]: GridGaze's coverage order, higher = earlier (coarsest scale first, or the finest
    with ``finest_first``; within a scale an even stride first, so positions spread over the grid come early)."""
    rank = torch.empty(space.tokens_per_frame)
    pos = 0
    blocks = list(zip(space.offsets, space.counts))
    for off, cnt in (reversed(blocks) if finest_first else blocks):
        spread = torch.linspace(0, cnt - 1, cnt).long()
        order = torch.cat([spread[i::4] for i in range(4)])
        rank[off + order] = torch.arange(pos, pos + cnt, dtype=torch.float)
        pos += cnt
    return -rank


class FrameDiffGaze(BaselineGaze):
    """Frame differencing as a video codec's conditional replenishment: gaze what has not been seen,
    then what changed since it was last seen.

    Frame 0 takes a coverage order: finest scale first (an even stride over its grid), then the
    coarser ones. In each later frame the budget goes, in this order, to

    1. finest-scale tokens never gazed, in the coverage order: with a static camera the background is
       then covered once, and a block-causal MAE can reuse it in every later frame;
    2. finest-scale tokens whose pixels changed since the frame in which they were last gazed (mean
       absolute RGB difference inside the token's square above ``change_threshold``, in normalised
       units, far above mpeg4 noise), largest change first;
    3. the tokens gazed least recently (coarser ones never gazed count as oldest).

    Why against the last gazed copy and not the previous frame: what the MAE can reuse is what it
    saw, and a patch that changed while the budget was spent elsewhere is stale until gazed again.
    Why unseen patches first: a previous version ranked frame-to-frame changes first and spent a
    later frame's whole budget on the moving objects at 1-3 gazes per frame; it lost to random gazing
    on the demo's static-camera clips below ratio 0.3 (seed 0 at 0.2: 0.791 against 0.775), this
    order beats random at every ratio (0.643) (docs/results.md, "Frame difference against the last
    gazed copy"). Why the finest scale: its patches carry the pixels themselves, a coarser patch only
    a downsampled copy of a larger square.
    """

    change_threshold: float = 0.1

    def _coverage(self, video: Tensor) -> Tensor:
        """FloatTensor [P] in [0, 1): the finest-first coverage order, higher = earlier."""
        c = coverage_scores(self.token_space, finest_first=True).to(video.device)
        return (c - c.min()) / (c.max() - c.min() + 1.0)

    def _finest_change(self, frame: Tensor, seen: Tensor) -> Tensor:
        """frame, seen [B, 3, H, W] -> FloatTensor [B, P]: mean |frame - seen| per finest-scale token,
        0 for the coarser tokens."""
        diff = (frame - seen).abs().mean(1, keepdim=True)                    # [B, 1, H, W]
        finest = F.adaptive_avg_pool2d(diff, self.token_space.grid_sides[-1]).flatten(1)
        return torch.cat([finest.new_zeros(frame.shape[0], self.token_space.offsets[-1]), finest], -1)

    @torch.no_grad()
    def generate(self, video: Tensor, budget: Budget, *, generator: torch.Generator | None = None,
                 **_) -> GazeRollout:
        B, T, _, H, W = video.shape
        P = self.tokens_per_frame
        side = self.token_space.grid_sides[-1]
        cover = self._coverage(video)                                          # [P]
        finest = torch.arange(P, device=video.device) >= self.token_space.offsets[-1]
        last = torch.full((B, P), -1.0, device=video.device)                   # frame each token was last gazed
        seen = torch.zeros_like(video[:, 0])                                   # [B, 3, H, W] pixels as last gazed
        scores = []
        for t in range(T):
            if t == 0:
                s = cover.expand(B, P).clone()
            else:
                age = (t - last).clamp_max(T + 1) / (T + 2)                    # [B, P] in (0, 1); never gazed: max
                change = self._finest_change(video[:, t], seen)
                unseen = finest & (last < 0)
                stale = (last >= 0) & (change > self.change_threshold)
                s = torch.where(unseen, 3.0 + cover, torch.where(stale, 2.0 + change, age + cover * 1e-3))
            scores.append(s)
            k = budget.max_gazes[:, t].clamp(1, P)                             # [B]
            picked = s.argsort(-1, descending=True).argsort(-1) < k[:, None]   # [B, P] top-k of each row
            last = torch.where(picked, float(t), last)
            squares = picked[:, finest].float().view(B, 1, side, side)
            squares = F.interpolate(squares, size=(H, W), mode="nearest").bool()  # [B, 1, H, W]
            seen = torch.where(squares, video[:, t], seen)
        return self._rollout(torch.stack(scores, 1), budget)


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
