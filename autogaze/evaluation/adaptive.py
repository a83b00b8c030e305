"""Adaptive stopping, upstream's inference setting: a ratio cap plus a task-loss requirement tau.

For each tau the model gazes with ``gazing_ratio=cap`` and ``task_loss_requirement=tau``, so each
frame stops as soon as the task-loss head predicts a loss <= tau. Reported per tau:

* ``gazing_ratio``: real gazes / (T * P), the patches the stop left in use;
* ``loss``: the task loss of every frame rebuilt from those gazes;
* ``random_loss``: random gazing with exactly the same per-frame counts (same budget, no policy);
* ``calibration``: mean |predicted - actual| loss at the stop, i.e. the head's prediction at each
  frame's last real gaze against that frame's loss (teacher-forced on the gazes produced).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from autogaze.evaluation.loop import eval_mode, nonempty_batches
from autogaze.interfaces import GazeModel, Task
from autogaze.types import Batch, Budget, Gazes


def last_real_slot(gazes: Gazes) -> torch.Tensor:
    """LongTensor [B, T]: index in [0, N) of each frame's last real gaze (every frame has one)."""
    B, N = gazes.ids.shape
    frame = gazes.frame_index()                                          # [N]
    slot = torch.arange(N, device=gazes.ids.device).expand(B, N)
    last = torch.full((B, gazes.num_frames), -1, dtype=torch.long, device=gazes.ids.device)
    idx = frame.expand(B, N)
    last.scatter_reduce_(1, idx, torch.where(gazes.is_padded, -1, slot), reduce="amax")
    return last


@torch.no_grad()
def evaluate_adaptive(model: GazeModel, random_model: GazeModel, task: Task, batches: Iterable[Batch],
                      taus: Sequence[float], *, cap: float = 0.75, seed: int = 0,
                      max_batches: int | None = None) -> list[dict[str, float]]:
    """One row per tau (see module doc), clip-weighted over ``batches``. ``random_model`` is a
    RandomGaze on the same token grid; its draws are seeded per batch from ``seed``."""
    rows = []
    with eval_mode(model, task):
        for tau in taus:
            sums = dict(gazing_ratio=0.0, loss=0.0, random_loss=0.0, calibration=0.0, clips=0.0)
            for i, batch in nonempty_batches(batches, max_batches):
                T = batch.video.shape[1]
                budget = model.sample_budget(batch.video, training=False, gazing_ratio=cap, task_loss_requirement=tau)
                rollout = model.generate(batch.video, budget)
                gazes = rollout.gazes
                out = task(batch.video_for_task, gazes, frame_ids=list(range(T)))
                # The decode's own task-loss predictions (equal to teacher forcing); score if a model has none.
                scores = rollout.scores if rollout.scores is not None else model.score(batch.video, gazes)
                pred = scores.task_loss_prediction                               # [B, N]
                at_stop = pred.gather(1, last_real_slot(gazes))                  # [B, T]
                counts = gazes.to_mask().sum(-1).long().clamp_min(1)            # [B, T]
                gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
                rnd = random_model.generate(batch.video, Budget(counts), generator=gen).gazes
                rnd_out = task(batch.video_for_task, rnd, frame_ids=list(range(T)))
                P = gazes.tokens_per_frame
                sums["gazing_ratio"] += float((counts.sum(1).float() / (T * P)).sum())
                sums["loss"] += float(out.loss_per_frame.mean(1).sum())
                sums["random_loss"] += float(rnd_out.loss_per_frame.mean(1).sum())
                sums["calibration"] += float((at_stop - out.loss_per_frame).abs().mean(1).sum())
                sums["clips"] += batch.batch_size
            n = max(sums.pop("clips"), 1.0)
            rows.append({"tau": tau, **{k: v / n for k, v in sums.items()}, "clips": n})
    return rows


ADAPTIVE_COLUMNS = ("model", "tau", "gazing_ratio", "loss", "random_loss", "calibration", "clips")


def adaptive_table(specs: list[str], config, taus: Sequence[float], *, cap: float = 0.75, split: str = "val",
                   data_root: str | None = None, batch_size: int = 8, seed: int = 0,
                   max_batches: int | None = None) -> list[dict]:
    """:func:`evaluate_adaptive` of every AutoGaze spec (baselines are skipped) on ``split``."""
    from autogaze.evaluation import models as M

    exp = M.load_experiment(config, data_root)
    task = M.load_task(exp, config)
    random_model, _ = M.load_gaze_model("random", dict(exp.model), seed)
    rows = []
    for spec in M.load_gaze_models(list(specs), dict(exp.model), seed):
        if not spec.model.can_score:  # baselines: no task-loss head to stop with
            continue
        loader = M.make_loader(exp, split, spec.preprocessing, batch_size)
        for r in evaluate_adaptive(spec.model, random_model, task, loader, taus, cap=cap, seed=seed,
                                   max_batches=max_batches):
            rows.append({"model": spec.name, **{k: round(float(v), 5) for k, v in r.items()}})
    return rows
