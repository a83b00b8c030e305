"""Held-out reconstruction loss of a gaze model at a given gazing ratio.

    loss = reconstruction_loss_at_ratio(gaze_model, task, loader, ratio=0.1)

Every model (AutoGaze, a baseline from models/baselines.py, or the greedy oracle of
labeling/oracle.py) gets the same per-frame budget ``max(int(ratio * P), 1)``, gazes greedily
(eval mode: argmax decoding, no sampling temperature), and is scored on the same frames: all frames
by default, or the ``frame_ids`` given. Randomised models (RandomGaze) draw from a generator seeded
per batch from ``seed``, so two calls give the same number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from autogaze.types import Batch


@torch.no_grad()
def evaluate_at_ratio(gaze_model: nn.Module, task: nn.Module, batches: Iterable[Batch], ratio: float, *,
                      frame_ids: Sequence[int] | None = None, seed: int = 0, device: str | torch.device = "cpu",
                      precision: str = "fp32", max_batches: int | None = None) -> dict[str, float]:
    """Clip-weighted means over ``batches``: ``loss`` (task loss of the rebuilt frames), ``gazing_ratio``
    (real gazes / (T * P)) and ``clips``.

    batches: Batches with ``video`` [B, T, 3, H, W] (gaze input) and ``video_for_task`` (task input).
    frame_ids: frames to rebuild (None = every frame). Both modules are put in eval mode and restored.
    """
    device = torch.device(device)
    was_training = gaze_model.training, task.training
    gaze_model.eval()
    task.eval()
    loss_sum, ratio_sum, clips = 0.0, 0.0, 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if batch.batch_size == 0:
                continue
            batch = batch.to(device)
            T = batch.video.shape[1]
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)  # same draws for every model
            fids = list(range(T)) if frame_ids is None else list(frame_ids)
            # the greedy oracle searches with the MAE, so it sees the task-side frames
            video = batch.video_for_task if getattr(gaze_model, "uses_task_video", False) else batch.video
            with autocast:
                budget = gaze_model.sample_budget(video, training=False, gazing_ratio=ratio)
                gazes = gaze_model.generate(video, budget, generator=gen).gazes
                out = task(batch.video_for_task, gazes, frame_ids=fids)
            B = batch.batch_size
            real = (~gazes.is_padded).sum(1).float()  # [B]
            loss_sum += float(out.loss_per_frame.float().mean(1).sum())
            ratio_sum += float((real / (T * gazes.tokens_per_frame)).sum())
            clips += B
    finally:
        gaze_model.train(was_training[0])
        task.train(was_training[1])
    if clips == 0:
        raise ValueError("no clips to evaluate: the loader gave no (decodable) videos")
    return {"loss": loss_sum / clips, "gazing_ratio": ratio_sum / clips, "clips": float(clips)}


def reconstruction_loss_at_ratio(gaze_model: nn.Module, task: nn.Module, batches: Iterable[Batch], ratio: float,
                                 **kwargs) -> float:
    """Mean held-out reconstruction loss of ``gaze_model``'s greedy gazes at ``ratio`` (see
    :func:`evaluate_at_ratio` for the keyword arguments)."""
    return evaluate_at_ratio(gaze_model, task, batches, ratio, **kwargs)["loss"]


def compare_at_ratio(ntp_exp: str | Path, ratio: float, *, seed: int = 0, split: str = "val",
                     batch_size: int = 8, candidate_batch: int = 64) -> dict[str, float]:
    """Held-out loss at ``ratio`` of: the untrained gaze model (same config, fresh init), the NTP
    checkpoint of ``ntp_exp``, the random baseline, and the greedy labeller (the NTP ceiling).
    Task and data come from ``ntp_exp/config.yaml`` and its ``trainer.task_weights``."""
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from autogaze.build import build_datasets, build_gaze_model, build_task
    from autogaze.config import parse_config
    from autogaze.labeling.oracle import GreedyOracle
    from autogaze.models.autogaze import AutoGaze
    from autogaze.models.baselines import RandomGaze

    ntp_exp = Path(ntp_exp)
    raw = OmegaConf.to_container(OmegaConf.load(ntp_exp / "config.yaml"), resolve=True)
    exp = parse_config(raw, "evaluate")
    task = build_task(exp)
    task.load_task_weights(exp.trainer.task_weights)
    task.set_trainable(False)
    train_set, val_set, collate = build_datasets(exp)
    loader = DataLoader(val_set if split == "val" else train_set, batch_size=batch_size, collate_fn=collate)
    torch.manual_seed(seed)
    models = {
        "untrained": build_gaze_model(exp),
        "ntp": AutoGaze.from_pretrained(str(ntp_exp / "checkpoint_latest_gaze")),
        "random": RandomGaze.from_config({k: v for k, v in exp.model.items() if k != "_target_"}),
        "greedy_labels": GreedyOracle(task, candidate_batch),
    }
    out: dict[str, float] = {"ratio": ratio, "split": split}  # type: ignore[dict-item]
    for name, model in models.items():
        res = evaluate_at_ratio(model, task, loader, ratio, seed=seed)
        out[name] = round(res["loss"], 5)
        out["clips"] = res["clips"]
    return out
