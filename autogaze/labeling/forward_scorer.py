"""Greedy labelling through a task's public forward: the scorer for tasks without a prefix cache.

``ClipCache`` (greedy.py) re-runs the VideoMAE task's own layers block by block, so it only serves that
task. Any other task (e.g. video feature reconstruction) is scored here by calling ``task(video, gazes,
frame_ids=[t])`` on C candidate rows at once. Same picks and losses as a cache would give, at the cost of
re-running every earlier frame for every chunk of candidates.

Gazes of a candidate row, frame by frame (N slots, ``num_per_frame`` shared by the rows):
  frames s < t: the labels of frame s (one padded slot if it has none);
  frame t:      the base gazes, then the candidate;
  frames s > t: one padded slot each.
The whole clip is passed, not only frames <= t: a task may read later frames' *pixels* (the feature
task's horizon 1 targets frame t + 1), while padded slots carry no gaze, so frame t's score still depends
on gazes of frames <= t only, as greedy labelling assumes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from autogaze.types import Gazes


class ForwardClip:
    """ClipCache's interface (``add_frame``, ``scorer``) over the public forward; nothing is cached."""

    def __init__(self, task: nn.Module, video: Tensor, precision: str = "fp32"):
        """task: any frozen Task; video [T, 3, S, S] task-normalised, on the task's device."""
        self.task, self.video, self.P = task, video, task.tokens_per_frame
        self.autocast = torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        self.labels: dict[int, list[int]] = {}  # frame -> frame-local ids, in gaze order

    def add_frame(self, t: int, local_ids: list[int]) -> None:
        self.labels[t] = list(local_ids)

    def scorer(self, t: int) -> "ForwardScorer":
        return ForwardScorer(self, t)


class ForwardScorer:
    """Frame t's task loss for many candidate gaze sets at once (``FrameScorer``'s interface)."""

    def __init__(self, clip: ForwardClip, t: int):
        self.clip, self.t, self.P = clip, t, clip.P
        self.device = clip.video.device

    def _frame_slots(self, s: int, C: int) -> tuple[Tensor, Tensor]:
        """Global ids [C, n] and is_padded [C, n] of a frame other than t."""
        local = self.clip.labels.get(s, []) if s < self.t else []
        ids = torch.tensor([s * self.P + i for i in local] or [s * self.P], device=self.device)
        return ids.expand(C, -1), torch.full_like(ids, not local, dtype=torch.bool).expand(C, -1)

    @torch.inference_mode()
    def losses(self, base_local: Tensor, candidates: Tensor) -> Tensor:
        """base_local [n] frame-local ids already gazed in frame t; candidates [C] frame-local ids.
        Returns FloatTensor [C]: frame t's loss with ``labels of frames < t + base_local + [c]``."""
        T, C, t = self.clip.video.shape[0], candidates.numel(), self.t
        own = torch.cat([base_local.to(self.device).expand(C, -1), candidates.to(self.device)[:, None]], 1) + t * self.P
        ids, pads = [], []
        for s in range(T):
            i, p = (own, torch.zeros_like(own, dtype=torch.bool)) if s == t else self._frame_slots(s, C)
            ids.append(i)
            pads.append(p)
        counts = torch.tensor([x.shape[1] for x in ids])  # [T]
        gazes = Gazes(torch.cat(ids, 1), torch.cat(pads, 1), counts, self.P)  # [C, N]
        video = self.clip.video[None].expand(C, *self.clip.video.shape)  # one clip, stride 0 over the rows
        with self.clip.autocast:
            out = self.clip.task(video, gazes, frame_ids=[t])
        return out.loss_per_frame[:, 0].float()
