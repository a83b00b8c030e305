"""Stochastic greedy labels against the exact search: cost per clip and the loss the labels reach.

    python scripts/label_sample_quality.py ROOT --clips 12 --samples 0,32,24,16,8,1

ROOT is a demo root (its exps/demo_mae is the scorer, its synthetic train clips are labelled with the
demo's budgets). For each ``--candidate-sample`` M (0 = every patch, 1 = a random pick each step, i.e.
random gazing at the labels' budgets) it prints seconds per clip on one thread and the mean over clips
and frames of the frame's loss after its last pick. The variants run interleaved clip by clip, so load
changes hit them alike.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch

from autogaze.datasets.labels import label_key
from autogaze.labeling.budgets import LabelBudget, candidate_generator, clip_generator, sample_clip_budget
from autogaze.labeling.cli import build_split, build_task, group_configs, parse_args
from autogaze.labeling.greedy import label_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--samples", default="0,32,24,16,8,1")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    exp = a.root / "exps" / "demo_mae"
    args = parse_args(["--task-config", str(exp / "config.yaml"), "--task-weights", str(exp / "checkpoint_latest_task.pt"),
                       "--data-root", str(a.root / "data" / "synthetic"), "--out", "/dev/null"])
    task_cfg, dataset_cfg = group_configs(args)
    task = build_task(task_cfg, args.task_weights, torch.device("cpu"))
    dataset = build_split(dataset_cfg, "train", task)
    samples = [int(m) for m in a.samples.split(",")]
    seconds, losses = defaultdict(float), defaultdict(list)
    for i in range(a.clips):
        key = label_key(str(dataset.paths[i]))
        video = dataset.collate([dataset[i]]).video_for_task[0]
        budgets = sample_clip_budget(LabelBudget(), video.shape[0], task.tokens_per_frame, clip_generator(a.seed, key))
        for m in samples:
            t0 = time.perf_counter()
            labels = label_clip(task, video, budgets, candidate_sample=m,
                                generator=candidate_generator(a.seed, key))
            seconds[m] += time.perf_counter() - t0
            losses[m] += [frame[-1] for frame in labels.task_losses]
    print(f"{a.clips} clips of {a.root}, {len(losses[samples[0]])} frames")
    print("| candidates per step | seconds per clip | mean loss after the last pick |")
    print("|---|---|---|")
    for m in samples:
        name = "all (exact)" if m == 0 else ("1 (random)" if m == 1 else str(m))
        print(f"| {name} | {seconds[m] / a.clips:.2f} | {sum(losses[m]) / len(losses[m]):.4f} |")


if __name__ == "__main__":
    main()
