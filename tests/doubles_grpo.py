"""TEST DOUBLES for GRPO tests: a gaze model that *samples*, a task with per-frame rewards.

tests/doubles.py's DoubleGazeModel generates by top-k (every group member identical, so GRPO's
advantages are zero) and its task rewards frame 0 only with no task-loss targets. These stand-ins
keep the real typed interfaces and add what GRPO needs. Nothing outside tests/ uses them.
"""
from __future__ import annotations

import torch
from torch import nn

from autogaze.interfaces import DatasetBase, TaskBase
from autogaze.types import Batch, Budget, GazeRollout, Gazes, GazeScores, TaskOutput
from tests.doubles import P, DoubleGazeModel


class SamplingGazeModel(DoubleGazeModel):
    """TEST DOUBLE: per frame, samples up to ``max_gazes`` distinct ids from softmax(logits / T),
    then keeps a random number (>= 1) of them real and pads the rest (pads hold the frame's id 0)."""

    def sample_budget(self, video, training: bool = False, group_size: int = 1, **_) -> Budget:
        return Budget(torch.full(video.shape[:2], 3, dtype=torch.long, device=video.device))

    def _logits(self, video, temperature: float):  # -> [B, T, P]
        return self.proj(self._feat(video)) / temperature

    def generate(self, video, budget: Budget, *, temperature: float = 1.0, generator=None, **_) -> GazeRollout:
        B, T = video.shape[:2]
        k = int(budget.max_gazes.max())
        logits = self._logits(video, temperature)
        picks, logps = [], []
        banned = torch.zeros(B, T, P, dtype=torch.bool)
        for _ in range(k):  # sequential sampling without replacement
            logp = torch.log_softmax(logits.masked_fill(banned, float("-inf")), -1)
            pick = torch.multinomial(logp.exp().view(B * T, P), 1, generator=generator).view(B, T)
            picks.append(pick)
            logps.append(logp.gather(-1, pick[..., None])[..., 0])
            banned = banned | nn.functional.one_hot(pick, P).bool()
        local = torch.stack(picks, -1)                                   # [B, T, k]
        n_real = 1 + (torch.rand(B, T, generator=generator) * budget.max_gazes).long().clamp_max(k - 1)
        is_padded = torch.arange(k) >= n_real[..., None]                # [B, T, k]
        local = local.masked_fill(is_padded, 0)
        ids = (local + torch.arange(T)[None, :, None] * P).reshape(B, T * k)
        gazes = Gazes(ids, is_padded.reshape(B, T * k), torch.full((T,), k, dtype=torch.long), P)
        return GazeRollout(gazes, budget=budget, sample_log_probs=torch.stack(logps, -1).reshape(B, T * k))

    def score(self, video, gazes: Gazes, *, temperature: float = 1.0, masked: bool = False, **_) -> GazeScores:
        """Teacher forcing; ``masked`` removes ids gazed earlier in the frame (the sampling distribution)."""
        feat = self._feat(video)
        frame = gazes.frame_index()
        logits = self._logits(video, temperature)[:, frame]             # [B, N, P]
        if masked:
            local = gazes.local_ids()
            onehot = nn.functional.one_hot(local, P) * (~gazes.is_padded)[..., None]  # [B, N, P]
            earlier = torch.zeros_like(onehot, dtype=torch.bool)
            for n in range(1, local.shape[1]):
                same = (frame[:n] == frame[n]).view(1, -1, 1)
                earlier[:, n] = (onehot[:, :n] * same).sum(1) > 0
            logits = logits.masked_fill(earlier, float("-inf"))
        logp = torch.log_softmax(logits, -1)
        lp = logp.gather(-1, gazes.local_ids()[..., None])[..., 0]       # [B, N]
        p = logp.exp()
        entropy = -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)
        return GazeScores(lp, self.tlp(feat)[:, frame, 0], entropy)


class RewardDoubleTask(TaskBase):
    """TEST DOUBLE task: loss of frame t = 1 - scale * sum_p w_p * gazed_tp / P, with fixed random
    weights w, for the rebuilt frames ``frame_ids``; task-loss targets at each rebuilt frame's last real gaze."""

    def __init__(self, frame_ids=(0, 1), seed: int = 0, **_):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.frame_ids, self.seed = list(frame_ids), seed

    def forward(self, video, gazes: Gazes) -> TaskOutput:
        mask = gazes.to_mask()                                           # [B, T, P']
        n_tok = mask.shape[-1]
        w = torch.rand(n_tok, generator=torch.Generator().manual_seed(self.seed)).to(mask.device)
        all_frames = 1 - self.scale * (mask * w).sum(-1) / n_tok         # [B, T]
        fids = torch.tensor(self.frame_ids, device=mask.device)
        per_frame = all_frames[:, fids]                                  # [B, F]
        traj_len = gazes.num_per_frame.to(mask.device).cumsum(0)[fids]  # [F]
        B, N = gazes.ids.shape
        targets, tl_mask = torch.zeros(B, N), torch.zeros(B, N, dtype=torch.bool)
        slot, frame = torch.arange(N), gazes.frame_index()
        for i, f in enumerate(self.frame_ids):  # the last real gaze of frame f gets target L_f
            last = torch.where(~gazes.is_padded & (frame == f), slot, -1).max(1).values  # [B]
            rows = torch.arange(B)[last >= 0]
            tl_mask[rows, last[last >= 0]] = True
            targets[rows, last[last >= 0]] = per_frame[rows, i].detach()
        return TaskOutput(per_frame.mean(1), per_frame, -per_frame.detach(), fids, traj_len, targets, tl_mask,
                          metrics={"reconstruction_loss": per_frame.mean().detach()})


class ClipDataset(DatasetBase):
    """TEST DOUBLE dataset: deterministic random clips [T, 3, size, size], no labels."""

    def __init__(self, num_clips: int = 8, clip_len: int = 2, size: int = 4, seed: int = 0):
        self.n, self.T, self.size, self.seed = num_clips, clip_len, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        return torch.rand(self.T, 3, self.size, self.size, generator=g)

    @staticmethod
    def collate(items) -> Batch:
        video = torch.stack(items)
        return Batch(video, video, [f"clip{i}" for i in range(len(items))])


class PlantedPatchTask(TaskBase):
    """TEST DOUBLE task with a planted answer: loss of frame t = 0 if local patch ``target`` is gazed
    in frame t, else 1 (reward = -loss), for the rebuilt frames ``frame_ids``."""

    def __init__(self, target: int, frame_ids=(0,)):
        super().__init__()
        self.target, self.frame_ids = target, list(frame_ids)
        self.scale = nn.Parameter(torch.ones(()))  # a frozen parameter, as a real task has

    def forward(self, video, gazes: Gazes, frame_ids=None) -> TaskOutput:
        hit = gazes.to_mask()[..., self.target]                          # [B, T]
        fids = torch.tensor(self.frame_ids if frame_ids is None else list(frame_ids), device=hit.device)
        per_frame = self.scale * (1.0 - hit[:, fids])                    # [B, F]
        traj_len = gazes.num_per_frame.to(hit.device).cumsum(0)[fids]   # [F]
        B, N = gazes.ids.shape
        none = torch.zeros(B, N, dtype=torch.bool, device=hit.device)
        return TaskOutput(per_frame.mean(1), per_frame, -per_frame.detach(), fids, traj_len,
                          torch.zeros(B, N, device=hit.device), none,
                          metrics={"reconstruction_loss": per_frame.mean().detach()})
