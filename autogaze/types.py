"""Typed boundaries between data, gaze model, task and algorithm.

Shape letters: B clips, G rollouts per clip, T frames, P patches per frame
(265 for scales 32+64+112+224), N gaze slots in a clip (sum over frames), F reconstructed frames,
C channels, H/W pixels.

One mask convention everywhere: a gaze sequence is an index tensor ``ids`` [B, N] of *global*
patch ids (``t * P + local``) plus ``is_padded`` [B, N], where **True means a dummy slot** that
carries no gaze (upstream's ``if_padded_gazing``). Padded ids always hold an in-range id of their
own frame, so they can be gathered safely; never read them without ``is_padded``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import torch
from torch import Tensor


def repeat_groups(x: Tensor, group_size: int) -> Tensor:
    """[B, ...] -> [G*B, ...] **group-major**, ``(g b)``: row ``g * B + b`` is a copy of row b.

    The one definition of the group layout used by budgets (model) and rollouts (GRPO).
    """
    return x.repeat(group_size, *([1] * (x.dim() - 1)))


def _map_tensors(obj, fn: Callable[[Tensor], Tensor]):
    """Return a copy of dataclass ``obj`` with ``fn`` applied to every tensor field (recursively)."""
    changes = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, Tensor):
            changes[f.name] = fn(v)
        elif hasattr(v, "__dataclass_fields__"):
            changes[f.name] = _map_tensors(v, fn)
    return replace(obj, **changes)


@dataclass
class Gazes:
    """A batch of gaze sequences laid out frame after frame.

    ids:            LongTensor [B, N]  global patch ids ``t * P + local`` in gaze order.
    is_padded:      BoolTensor [B, N]  True = dummy slot (no gaze).
    num_per_frame:  LongTensor [T]     slots per frame, padding included, shared by the batch;
                                       ``num_per_frame.sum() == N``.
    tokens_per_frame: int              P, the size of the per-frame vocabulary (265).
    """

    ids: Tensor
    is_padded: Tensor
    num_per_frame: Tensor
    tokens_per_frame: int

    @property
    def num_frames(self) -> int:
        return int(self.num_per_frame.numel())

    def frame_index(self) -> Tensor:
        """LongTensor [N]: the frame each slot belongs to."""
        t = torch.arange(self.num_frames, device=self.ids.device)
        # output_size avoids a device sync on CUDA
        return torch.repeat_interleave(t, self.num_per_frame.to(self.ids.device), output_size=self.ids.shape[1])

    def local_ids(self) -> Tensor:
        """LongTensor [B, N]: frame-local ids in [0, P)."""
        return self.ids - self.frame_index()[None] * self.tokens_per_frame

    def real_ratio(self) -> Tensor:
        """FloatTensor [B]: the gazing ratio each row really used, real (unpadded) gazes / (T * P)."""
        return (~self.is_padded).sum(1).float() / (self.num_frames * self.tokens_per_frame)

    def to_mask(self) -> Tensor:
        """FloatTensor [B, T, P]: 1 where a patch is gazed (padded slots ignored)."""
        B, T, P = self.ids.shape[0], self.num_frames, self.tokens_per_frame
        mask = torch.zeros(B, T * P + 1, device=self.ids.device)
        # Padded slots scatter into a throw-away extra column, which is dropped.
        idx = torch.where(self.is_padded, torch.full_like(self.ids, T * P), self.ids)
        mask.scatter_(1, idx, 1.0)
        return mask[:, : T * P].view(B, T, P)

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Gazes":
        """Apply ``fn`` to the batch-shaped tensors (ids, is_padded); num_per_frame is shared."""
        return replace(self, ids=fn(self.ids), is_padded=fn(self.is_padded))

    def to(self, device) -> "Gazes":
        return _map_tensors(self, lambda t: t.to(device))


@dataclass
class Budget:
    """Per-frame gazing budget for a batch.

    max_gazes:            LongTensor [B, T]  maximum gazes per frame, each >= 1.
    task_loss_requirement: FloatTensor [B, T] or None  stop a frame once the predicted task loss
                                                       is <= this value (tau); None = no early stop.
    total:                LongTensor [B] or None  visible tokens per clip over all frames
                                                  (TATS / AdaMAE draw N_v = int(N * (1 - rho)) tokens
                                                  anywhere in the clip); None = per-frame caps only.
    """

    max_gazes: Tensor
    task_loss_requirement: Tensor | None = None
    total: Tensor | None = None

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Budget":
        tlr, total = self.task_loss_requirement, self.total
        return Budget(fn(self.max_gazes), None if tlr is None else fn(tlr), None if total is None else fn(total))


@dataclass
class GazeScores:
    """Scores of a gaze sequence (teacher-forced, or read off the decode).

    log_probs:            FloatTensor [B, N]  log p(gaze_n | context), log_softmax (not log(p+eps)).
    task_loss_prediction: FloatTensor [B, N]  predicted task loss after each gaze.
    entropy:              FloatTensor [B, N] or None  entropy of the scored distribution per slot.
    argmax_ids:           LongTensor [B, N] or None   most likely frame-local id of each slot's
                                                      scored distribution (``score(with_argmax=True)``).

    Set-sampling models (TATS, AdaMAE: one softmax over all N_tok tokens of the clip) also fill:
    token_log_probs:      FloatTensor [B, N_tok] or None  the full log-softmax over the clip's tokens
                                                          (their losses read the *masked* tokens,
                                                          which are absent from the gazes).
    clip_entropy:         FloatTensor [B] or None  entropy of that distribution, -sum_j p_j log p_j.
    value:                FloatTensor [B] or None  critic estimate of the clip's reward (TATS).
    logits:               FloatTensor [B, N, V] or None  the scored logits (masked ones when scored
                                                          masked), only when asked (``with_logits``).
    """

    log_probs: Tensor
    task_loss_prediction: Tensor
    entropy: Tensor | None = None
    argmax_ids: Tensor | None = None
    token_log_probs: Tensor | None = None
    clip_entropy: Tensor | None = None
    value: Tensor | None = None
    logits: Tensor | None = None


@dataclass
class GazeRollout:
    """What a gaze model hands to a task and an algorithm: gazes plus their scores.

    gazes:  the sequences (generated, or the ground truth under teacher forcing).
    scores: the scores of the gazes: read off the decode by ``AutoGaze.generate`` (no grad, equal to
            teacher forcing), or teacher-forced with grad from ``score``; None where a model gives none.
    budget: the budget the gazes were generated under (None for teacher forcing).
    sample_log_probs: FloatTensor [B, N] or None  log-probs under the *sampling* distribution,
                      recorded during generation (masked, tempered, top-k); lets GRPO skip the
                      re-scoring forward when both distributions are the same.
    tokens: FloatTensor [B, N_tok, D] or None  the task's tubelet embedding X the sampler read
            (``model.embedding=shared``); the trainer hands it to the task as ``tokens=`` so that
            the clip is embedded once and both losses reach the same Conv3d.
    state: the decode state after the last frame, for streaming (``generate(..., keep_state=True)``;
           model-specific and opaque: pass it back as ``state``); None otherwise.
    """

    gazes: Gazes
    scores: GazeScores | None = None
    budget: Budget | None = None
    sample_log_probs: Tensor | None = None
    tokens: Tensor | None = None
    state: Any = None


@dataclass
class GazeLabels:
    """Ground-truth gazes for NTP: the collated ``gazing_labels.json`` entries.

    gazes:            Gazes with one extra padded slot per frame (upstream's collate).
    task_losses:      FloatTensor [B, N]  per-gaze task loss after that gaze (padded: frame's last value).
    candidate_ids:    LongTensor [B, N, M] or None  the labeller's M best candidates at each gaze
                      (global ids, best first: entry 0 is the gaze), when labelled with them.
    candidate_losses: FloatTensor [B, N, M] or None  the loss each candidate reaches (+inf: unused).
    """

    gazes: Gazes
    task_losses: Tensor
    candidate_ids: Tensor | None = None
    candidate_losses: Tensor | None = None

    def map(self, fn: Callable[[Tensor], Tensor]) -> "GazeLabels":
        opt = (None, None) if self.candidate_ids is None else (fn(self.candidate_ids), fn(self.candidate_losses))
        return GazeLabels(self.gazes.map(fn), fn(self.task_losses), *opt)

    def to(self, device) -> "GazeLabels":
        moved = self.map(lambda x: x.to(device))
        return replace(moved, gazes=self.gazes.to(device))  # Gazes.to also moves num_per_frame


@dataclass
class Batch:
    """One collated batch from a dataset.

    video:          FloatTensor [B, T, 3, H, W]  gaze-model input.
    video_for_task: FloatTensor [B, T, 3, H, W]  task input; may be the same
                    tensor object as ``video`` when both transforms agree.
    paths:          list[str] of length B.
    labels:         GazeLabels or None.
    group_size:     G when the batch was expanded for group-relative algorithms, else 1.
    skipped_paths:  videos of this batch that could not be decoded and were dropped (counted by
                    the trainer; never replaced by another clip).
    """

    video: Tensor
    video_for_task: Tensor
    paths: list[str]
    labels: GazeLabels | None = None
    group_size: int = 1
    skipped_paths: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.video.shape[0]

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Batch":
        """Apply ``fn`` to every batch-shaped tensor, keeping shared tensors shared."""
        video = fn(self.video)
        vft = video if self.video_for_task is self.video else fn(self.video_for_task)
        labels = None if self.labels is None else self.labels.map(fn)
        return replace(self, video=video, video_for_task=vft, labels=labels)

    def to(self, device, non_blocking: bool = False) -> "Batch":
        video = self.video.to(device, non_blocking=non_blocking)
        vft = video if self.video_for_task is self.video else self.video_for_task.to(device, non_blocking=non_blocking)
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, video=video, video_for_task=vft, labels=labels)


@dataclass
class TaskOutput:
    """What a task returns for one batch.

    loss:                FloatTensor [B]     per-clip loss (mean over reconstructed frames), with grad
                                             when the task is trained.
    loss_per_frame:      FloatTensor [B, F]  per reconstructed frame.
    reward:              FloatTensor [B, F]  -loss_per_frame, detached.
    frame_ids:           LongTensor [F]      which frames were reconstructed (sorted ascending).
    traj_len:            LongTensor [F]      slots (padding included) up to and including frame f.
    task_loss_targets:   FloatTensor [B, N]  target of the task-loss head per slot.
    task_loss_mask:      BoolTensor [B, N]   True where a target exists (last real gaze of each
                                             reconstructed frame).
    reconstruction:      FloatTensor [B, F, 3, H, W] or None.
    metrics:             scalar tensors to log (already detached).
    loss_per_token:      FloatTensor [B, N_tok] or None  per-token error e_i >= 0 (detached), 0 where
                                                        ``token_is_target`` is False. Sign: TATS and
                                                        AdaMAE reward the sampler with **+e_i** (hard
                                                        tokens), while ``reward`` stays -loss.
    token_is_target:     BoolTensor [B, N_tok] or None   True = token was masked (not visible) and
                                                        entered the loss.
    """

    loss: Tensor
    loss_per_frame: Tensor
    reward: Tensor
    frame_ids: Tensor
    traj_len: Tensor
    task_loss_targets: Tensor
    task_loss_mask: Tensor
    reconstruction: Tensor | None = None
    metrics: dict[str, Tensor] = field(default_factory=dict)
    loss_per_token: Tensor | None = None
    token_is_target: Tensor | None = None


@dataclass
class AlgorithmOutput:
    """What an algorithm returns: a per-clip loss to back-propagate plus detached metrics.

    loss:    FloatTensor [B]  per-rollout loss; the trainer takes the mean.
    metrics: name -> scalar tensor, logged under ``train/``.
    record:  detached data the algorithm keeps past the step (TATS: the PPO episodes of this
             micro-batch); the trainer returns it from ``optimizer_step`` and never reads it.
    """

    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    record: object = None
