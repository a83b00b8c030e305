"""Per-clip gaze budgets for the labeller, drawn with the gaze model's own BudgetSampler.

Paper defaults (section 3.2): the clip's gazing ratio ~ Exp(lambda) truncated to [0.02, 0.2]; the
frames share ``ratio * T`` through a Dirichlet with alpha = 10 for frame 0 and 3 for the others (the
first frame has no history, so it needs more gazes). Each clip draws from its own generator seeded
from ``(seed, clip key)``, so a clip's budget does not depend on sharding, order or restarts.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch

from autogaze.models.autogaze.budget import BudgetSampler, ratios_to_budget
from autogaze.models.autogaze.config import FRAME_STRATEGIES, RATIO_STRATEGIES, BudgetSettings
from autogaze.utils.parsing import ConfigError, check_choice, parse_float_list


@dataclass(frozen=True)
class LabelBudget:
    """Budget options of ``python -m autogaze.label`` (one CLI flag each).

    ratio_strategy: fixed | uniform | exponential (clip-level gazing ratio).
    ratio: the fixed ratio; ratio_min/ratio_max: range of uniform and exponential; lam: Exp rate.
    frame_strategy: uniform (every frame gets the ratio) | dirichlet (split ``ratio * T``).
    alpha: Dirichlet concentrations, one value (shared), two ('first,rest') or T values.
    """

    ratio_strategy: str = "exponential"
    ratio: float = 0.1
    ratio_min: float = 0.02
    ratio_max: float = 0.2
    lam: float = 10.0
    frame_strategy: str = "dirichlet"
    alpha: str = "10,3"

    def validate(self) -> "LabelBudget":
        check_choice("--ratio-strategy", self.ratio_strategy, RATIO_STRATEGIES)
        check_choice("--frame-strategy", self.frame_strategy, [s for s in FRAME_STRATEGIES if s != "self"])
        if not 0 <= self.ratio_min <= self.ratio_max <= 1:
            raise ConfigError("--ratio-min/--ratio-max", (self.ratio_min, self.ratio_max),
                              "need 0 <= min <= max <= 1", "e.g. --ratio-min 0.02 --ratio-max 0.2")
        if not 0 < self.ratio <= 1 or self.lam <= 0:
            raise ConfigError("--ratio/--lam", (self.ratio, self.lam), "need 0 < ratio <= 1 and lam > 0",
                              "e.g. --ratio 0.1 --lam 10")
        if min(parse_float_list("--alpha", self.alpha, sep=",")) <= 0:
            raise ConfigError("--alpha", self.alpha, "concentrations must be > 0", "e.g. --alpha 10,3")
        return self

    def alphas(self, num_frames: int) -> tuple[float, ...]:
        """T concentrations: 'a' -> a for all; 'a,b' -> a then b for the rest; T values as given."""
        a = parse_float_list("--alpha", self.alpha, sep=",")
        if len(a) == 1:
            return tuple(a * num_frames)
        if len(a) == 2 and num_frames != 2:
            return (a[0], *[a[1]] * (num_frames - 1))
        if len(a) != num_frames:
            raise ConfigError("--alpha", self.alpha, f"needs 1, 2 or clip_len={num_frames} values",
                              "e.g. --alpha 10,3 (frame 0, then the rest)")
        return tuple(a)

    def settings(self, num_frames: int) -> BudgetSettings:
        """The gaze model's BudgetSettings with these strategies in both modes (no task-loss tau)."""
        both = lambda v: {True: v, False: v}  # noqa: E731
        return BudgetSettings(
            ratio_strategy=both(self.ratio_strategy), ratio_fixed=self.ratio,
            ratio_uniform=(self.ratio_min, self.ratio_max),
            ratio_exponential=(self.ratio_min, self.ratio_max, self.lam),
            frame_strategy=both(self.frame_strategy), dirichlet_alpha=self.alphas(num_frames),
            has_requirement=both(False), requirement_strategy=both("fixed"), requirement_fixed=0.7,
            requirement_uniform=(0.6, 0.9))

    def as_dict(self) -> dict:
        return asdict(self)


def clip_generator(seed: int, key: str) -> torch.Generator:
    """A CPU generator seeded from (seed, clip key); stable across machines and Python runs
    (sha256, not ``hash()``, which Python salts per process)."""
    digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % 2**63)


def candidate_generator(seed: int, key: str) -> torch.Generator:
    """The stream of a clip's stochastic-greedy candidate draws: apart from its budgets' stream, so
    sampling candidates leaves the clip's budgets those of the exact search."""
    return clip_generator(seed, f"{key}|candidates")


def sample_clip_budget(budget: LabelBudget, num_frames: int, tokens_per_frame: int,
                       generator: torch.Generator) -> list[int]:
    """Per-frame gaze counts [T] for one clip: ``max(int(ratio_t * P), 1)``, at most P each."""
    sampler = BudgetSampler(budget.settings(num_frames), tokens_per_frame)
    ratio = sampler.video_ratio(True, "cpu", generator)  # scalar float64
    ratios = sampler.frame_ratios(ratio, 1, num_frames, True, generator)  # [1, T] in [0, 1]
    return ratios_to_budget(ratios, tokens_per_frame).clamp_max(tokens_per_frame)[0].tolist()
