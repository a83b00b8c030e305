"""How much a task's loss depends on what is gazed: the reward range of a trained task.

A gaze policy can only matter if the task's loss falls when patches are gazed. Three losses bound
what any gaze model can reach on a split:

    none    nothing gazed: the task's prior guess of every frame
    random  the random baseline at ``ratio`` (what a policy has to beat)
    full    every patch of every frame gazed: the floor no gaze model can go below

``gaze_share = (none - full) / none`` is the part of the loss that gazing can remove at all,
``random_share = (none - random) / (none - full)`` how much of it random gazing already gets, and
``headroom = (random - full) / random`` the part of random gazing's loss that more or better-placed
gazes could still remove. ``none`` is the task's prior, which a briefly trained task may calibrate
badly (a high ``none`` inflates ``gaze_share``), so ``headroom`` is the number to check. A task with
little headroom leaves every policy near random, whatever its training: the demo's VideoMAE of
before 2026-12-07 rebuilt even a fully gazed frame with an l1 error of 0.77, against about 1.05 for
each frame's mean colour (headroom 16%), its greedy labels were near-ties that NTP could not learn,
and gaze policies barely beat random (docs/results.md, "The reward model barely used the gazed patches").

    rr = measure_reward_range(task, loader, tokens_per_frame=20, ratio=0.2)
    rr.gaze_share, rr.as_dict()
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import torch

from autogaze.interfaces import Task
from autogaze.types import Batch, Gazes

#: below this headroom the demo warns that the task barely rewards gazing (old demo MAE 0.16, new 0.34)
LOW_HEADROOM = 0.25


@dataclass
class RewardRange:
    """Clip-weighted mean task losses over a split (see the module docstring)."""

    none: float
    random: float
    full: float
    ratio: float
    clips: int

    @property
    def gaze_share(self) -> float:
        return (self.none - self.full) / self.none

    @property
    def random_share(self) -> float:
        return (self.none - self.random) / max(self.none - self.full, 1e-12)

    @property
    def headroom(self) -> float:
        return (self.random - self.full) / self.random

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "gaze_share": round(self.gaze_share, 4), "random_share": round(self.random_share, 4),
                "headroom": round(self.headroom, 4)}

    def describe(self) -> str:
        return (f"task loss with nothing gazed {self.none:.4f}, random at ratio {self.ratio:g} {self.random:.4f}, "
                f"every patch gazed {self.full:.4f}: gazing can remove {100 * self.gaze_share:.0f}% of the loss, "
                f"random gazing gets {100 * self.random_share:.0f}% of that, and {100 * self.headroom:.0f}% of "
                f"random's loss is left for better gazes ({self.clips} clips)")


def no_gazes(batch_size: int, num_frames: int, tokens_per_frame: int, device: torch.device) -> Gazes:
    """One padded slot per frame, so no patch is gazed: ids [B, T] (each frame's id 0), all padded."""
    ids = (torch.arange(num_frames, device=device) * tokens_per_frame).expand(batch_size, -1).clone()
    return Gazes(ids, torch.ones_like(ids, dtype=torch.bool),
                 torch.ones(num_frames, dtype=torch.long, device=device), tokens_per_frame)


def all_gazes(batch_size: int, num_frames: int, tokens_per_frame: int, device: torch.device) -> Gazes:
    """Every patch of every frame, in id order: ids [B, T * P], none padded."""
    ids = torch.arange(num_frames * tokens_per_frame, device=device).expand(batch_size, -1).clone()
    return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool),
                 torch.full((num_frames,), tokens_per_frame, dtype=torch.long, device=device), tokens_per_frame)


def random_gazes(batch_size: int, num_frames: int, tokens_per_frame: int, per_frame: int,
                 generator: torch.Generator, device: torch.device) -> Gazes:
    """``per_frame`` distinct patches drawn uniformly in every frame: ids [B, T * per_frame]."""
    keys = torch.rand(batch_size, num_frames, tokens_per_frame, generator=generator)
    local = keys.argsort(-1)[..., :per_frame].to(device)                               # [B, T, n]
    ids = (local + torch.arange(num_frames, device=device)[:, None] * tokens_per_frame).flatten(1)
    return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool),
                 torch.full((num_frames,), per_frame, dtype=torch.long, device=device), tokens_per_frame)


@torch.no_grad()
def measure_reward_range(task: Task, batches: Iterable[Batch], *, tokens_per_frame: int, ratio: float = 0.2,
                         seed: int = 0, max_batches: int | None = None,
                         device: str | torch.device = "cpu") -> RewardRange:
    """Losses of every frame with nothing, random (``max(int(ratio * P), 1)`` per frame) and every patch
    gazed, on ``batches`` (``video_for_task`` [B, T, 3, S, S]). The task is put in eval mode and restored."""
    from autogaze.evaluation.loop import eval_mode, nonempty_batches

    device = torch.device(device)
    per_frame = max(int(ratio * tokens_per_frame), 1)
    sums = {"none": 0.0, "random": 0.0, "full": 0.0}
    clips = 0
    with eval_mode(task):
        for i, batch in nonempty_batches(batches, max_batches):
            video = batch.video_for_task.to(device)
            B, T = video.shape[:2]
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            for name, gazes in (("none", no_gazes(B, T, tokens_per_frame, device)),
                                ("random", random_gazes(B, T, tokens_per_frame, per_frame, gen, device)),
                                ("full", all_gazes(B, T, tokens_per_frame, device))):
                out = task(video, gazes, frame_ids=list(range(T)))
                sums[name] += float(out.loss_per_frame.float().mean(1).sum())
            clips += B
    if clips == 0:
        raise ValueError("no clips to measure: the loader gave no (decodable) videos")
    return RewardRange(**{k: round(v / clips, 5) for k, v in sums.items()}, ratio=ratio, clips=clips)


def reward_range_of_experiment(config, *, data_root: str | None = None, split: str = "val", ratio: float = 0.2,
                               seed: int = 0, batch_size: int = 8, max_batches: int | None = None) -> RewardRange:
    """:func:`measure_reward_range` of a task experiment (its ``config.yaml`` and task weights, as
    ``python -m autogaze.evaluate --config`` reads them) on ``split``."""
    from autogaze.datasets.video_folder import TASK_PREPROCESSING
    from autogaze.evaluation import models as M

    exp = M.load_experiment(config, data_root)
    task = M.load_task(exp, config)
    loader = M.make_loader(exp, split, dict(TASK_PREPROCESSING), batch_size)
    return measure_reward_range(task, loader, tokens_per_frame=task.tokens_per_frame, ratio=ratio, seed=seed,
                                max_batches=max_batches)
