"""Per-frame task loss of gaze models at one ratio on a finished demo root, with the greedy labeller
(the ceiling NTP imitates) beside them. Not in CI.

    python scripts/per_frame_losses.py --root runs/seed0 --ratio 0.1 --batches 2
    -> one line per model: its loss in each of the T frames, then the mean (first batches*8 val clips)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from autogaze.evaluation import models as M
from autogaze.labeling.oracle import GreedyOracle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="a finished demo root")
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--batches", type=int, default=2, help="val batches of 8 clips")
    a = p.parse_args()
    torch.set_num_threads(1)
    e, cfg = a.root / "exps", a.root / "exps" / "demo_mae" / "config.yaml"
    exp = M.load_experiment(cfg, str(a.root / "data" / "synthetic"))
    task = M.load_task(exp, cfg)
    specs = M.load_gaze_models([f"ntp={e / 'demo_ntp'}", f"ntp_rl={e / 'demo_grpo'}", "random", "framediff"],
                               dict(exp.model), 0)
    specs.append(M.GazeSpec("greedy", GreedyOracle(task, 64), specs[-1].preprocessing))
    for spec in specs:
        total, clips = None, 0
        with torch.no_grad():
            for i, batch in enumerate(M.make_loader(exp, "val", spec.preprocessing, 8)):
                if i >= a.batches:
                    break
                video = batch.video_for_task if spec.model.uses_task_video else batch.video
                budget = spec.model.sample_budget(video, training=False, gazing_ratio=a.ratio)
                gazes = spec.model.generate(video, budget, generator=torch.Generator().manual_seed(i)).gazes
                loss = task(batch.video_for_task, gazes, frame_ids=list(range(video.shape[1]))).loss_per_frame
                total = loss.sum(0) if total is None else total + loss.sum(0)  # [T]
                clips += video.shape[0]
        per_frame = total / clips
        print(f"{spec.name:9s}", " ".join(f"{x:.3f}" for x in per_frame.tolist()), f"mean {per_frame.mean():.4f}")


if __name__ == "__main__":
    main()
