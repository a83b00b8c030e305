"""TEST DOUBLES for trainer tests: tiny stand-ins with the real typed interfaces
(autogaze/interfaces.py: they subclass its bases for the defaults).

They let the trainer, config and launch paths be tested in milliseconds, independently of the real
gaze model and task (which have their own tests). Nothing outside tests/ uses them.
"""
from __future__ import annotations

import torch
from torch import nn

from autogaze.interfaces import DatasetBase, GazeModelBase, TaskBase
from autogaze.types import Batch, Budget, GazeLabels, GazeRollout, Gazes, GazeScores, TaskOutput

P = 8  # tokens per frame of the double


class DoubleGazeModel(GazeModelBase):
    """TEST DOUBLE gaze model: per-frame mean colour -> logits over P tokens (+ optional dropout)."""

    tokens_per_frame = P
    can_score = True

    def __init__(self, dropout: float = 0.0, **_):
        super().__init__()
        self.proj = nn.Linear(3, P)
        self.tlp = nn.Linear(3, 1)
        self.drop = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, cfg: dict) -> "DoubleGazeModel":
        return cls(**cfg)

    def _feat(self, video):  # [B, T, 3, H, W] -> [B, T, 3]
        return self.drop(video.mean((-1, -2)))

    def score(self, video, gazes: Gazes, **_) -> GazeScores:
        feat = self._feat(video)
        frame = gazes.frame_index()
        logp = torch.log_softmax(self.proj(feat), -1)[:, frame]        # [B, N, P]
        lp = logp.gather(-1, gazes.local_ids()[..., None])[..., 0]     # [B, N]
        return GazeScores(lp, self.tlp(feat)[:, frame, 0])

    def sample_budget(self, video, training: bool = False, **_) -> Budget:
        B, T = video.shape[:2]
        return Budget(torch.full((B, T), 2, dtype=torch.long, device=video.device))

    def generate(self, video, budget: Budget, **_) -> GazeRollout:
        B, T = video.shape[:2]
        k = int(budget.max_gazes.max())
        local = self.proj(self._feat(video)).topk(k, -1).indices        # [B, T, k]
        ids = (local + torch.arange(T, device=video.device)[None, :, None] * P).reshape(B, T * k)
        gazes = Gazes(ids, torch.zeros_like(ids, dtype=torch.bool),
                      torch.full((T,), k, dtype=torch.long), P)
        return GazeRollout(gazes, budget=budget)


class DoubleTask(TaskBase):
    """TEST DOUBLE task: loss of frame t = 1 - (share of its patches gazed) * scale."""

    tokens_per_frame, scales = P, [4]

    def __init__(self, **_):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    @classmethod
    def from_config(cls, cfg: dict) -> "DoubleTask":
        return cls(**cfg)

    def forward(self, video, gazes: Gazes, *, frame_ids=None, generator=None) -> TaskOutput:
        """Always rebuilds frame 0 (``frame_ids`` and ``generator`` are accepted and unused)."""
        share = gazes.to_mask().mean(-1)                                 # [B, T]
        per_frame = (1 - share * self.scale)[:, :1]                      # frame 0 only
        B, N = gazes.ids.shape
        return TaskOutput(per_frame.mean(1), per_frame, -per_frame.detach(), torch.tensor([0]),
                          gazes.num_per_frame[:1].clone(), torch.zeros(B, N), torch.zeros(B, N, dtype=torch.bool),
                          metrics={"reconstruction_loss": per_frame.mean().detach()})


class DoubleDataset(DatasetBase):
    """TEST DOUBLE dataset: deterministic random clips [T, 3, 4, 4] with 2 labelled gazes per frame."""

    def __init__(self, num_clips: int = 16, clip_len: int = 2, seed: int = 0, **_):
        self.n, self.T, self.seed = num_clips, clip_len, seed

    @classmethod
    def from_config(cls, cfg: dict, split: str, seed: int = 0, **_) -> "DoubleDataset":
        return cls(cfg.get("num_clips", 16) // (1 if split == "train" else 4), cfg["clip_len"],
                   seed + (0 if split == "train" else 1))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        video = torch.rand(self.T, 3, 4, 4, generator=g)
        local = torch.stack([torch.randperm(P, generator=g)[:2] for _ in range(self.T)])  # [T, 2]
        return video, local, torch.rand(self.T, 2, generator=g)

    @staticmethod
    def collate(items) -> Batch:
        video = torch.stack([v for v, _, _ in items])
        B, T = video.shape[:2]
        local = torch.stack([l for _, l, _ in items])                    # [B, T, 2]
        # One extra padded slot per frame, as the real label collate does.
        ids = torch.cat([local, torch.zeros(B, T, 1, dtype=torch.long)], -1)
        ids = (ids + torch.arange(T)[None, :, None] * P).reshape(B, T * 3)
        pad = torch.zeros(B, T, 3, dtype=torch.bool)
        pad[..., 2] = True
        losses = torch.stack([tl for _, _, tl in items])
        losses = torch.cat([losses, losses[..., -1:]], -1).reshape(B, T * 3)
        gazes = Gazes(ids, pad.reshape(B, T * 3), torch.full((T,), 3, dtype=torch.long), P)
        return Batch(video, video, [f"clip{i}" for i in range(B)], GazeLabels(gazes, losses))
