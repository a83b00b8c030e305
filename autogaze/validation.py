"""Validation: free generation with the inference budget strategies, scored by the task.

Runs under a forked RNG seeded from (seed, rank), so validation is repeatable and never shifts the
training RNG stream (upstream re-seeded the global RNG, which made resume inexact).
"""
from __future__ import annotations

import logging

import torch

from autogaze.utils.distributed import all_reduce_sum

log = logging.getLogger("autogaze.validation")


@torch.no_grad()
def validate(trainer, loader) -> dict[str, float]:
    """Mean task metrics over the validation split (weighted by clips, summed over ranks)."""
    cfg, device = trainer.cfg, trainer.dist.device
    model, task, policy = trainer.gaze_model, trainer.task, trainer.policy
    was_training = model.training, task.training
    model.eval()
    task.eval()
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=device)
    draw = (cfg.visualize_every > 0 and trainer.state.val_step % cfg.visualize_every == 0
            and trainer.dist.is_main)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed + trainer.dist.rank)
        for i, batch in enumerate(loader):
            if cfg.max_val_batches is not None and i >= cfg.max_val_batches:
                break
            if batch.batch_size == 0:
                continue
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                # Set samplers with model.embedding=shared read the task's tubelet embedding X (else None).
                # The policy generates in the model's mode, eval here: the inference strategies.
                tokens = policy.task_tokens(batch.video_for_task)
                budget = policy.sample_budget(batch.video, tokens=tokens)
                rollout = policy.generate(batch.video, budget, tokens=tokens)
                if tokens is None:
                    out = task(batch.video_for_task, rollout.gazes)
                else:
                    out = task(batch.video_for_task, rollout.gazes, tokens=tokens)
            B = batch.batch_size
            real = (~rollout.gazes.is_padded).sum(1).float()  # [B]
            metrics = dict(out.metrics, loss=out.loss.float().mean(),
                           gazes_per_frame=real.mean() / rollout.gazes.num_frames)
            for k, v in metrics.items():
                sums[k] = sums.get(k, torch.zeros((), device=device)) + v.float() * B
            count += B
            if draw and i == 0:
                path = trainer.exp_dir / "visualizations" / f"val_step{trainer.state.val_step:06d}.png"
                drawn = task.visualize(batch.video_for_task[0], rollout.gazes.map(lambda t: t[:1]),
                                       out.reconstruction[0] if out.reconstruction is not None else None,
                                       out.frame_ids, path)
                if drawn is not None:  # a task that draws nothing returns None
                    trainer.metrics.log_image("visualize_gaze/visualize_gaze", path, trainer.state.val_step)
    model.train(was_training[0])
    task.train(was_training[1])
    total = all_reduce_sum(count).clamp_min(1)
    return {k: float(all_reduce_sum(v) / total) for k, v in sums.items()}
