"""``python -m autogaze.demo``: argument parsing."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch

from autogaze.demo.settings import PRESETS, Demo, claim_root, load_settings, preset
from autogaze.demo.stages import STAGES, run_demo
from autogaze.utils.runtime import tune_cpu


def main(argv: list[str] | None = None) -> None:
    from autogaze import demo as package

    p = argparse.ArgumentParser(prog="python -m autogaze.demo", description=package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=".", help="folder that gets data/ and exps/")
    p.add_argument("--seed", type=int, default=0, help="data, budgets, initialisation and sampling")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads of this process while it runs a stage alone (default: the preset's, "
                        "1 for demo and large, 2 for proof); label shards and second processes use 1")
    p.add_argument("--procs", type=int, default=Demo.procs,
                   help="processes for the labeller shards and the two GRPO runs (default 2: both cores)")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                   help="sizes: demo (default, about 13 minutes: 8 frames of 64 px, 20 patches per frame), "
                        "large (about 35 minutes: the demo's geometry, 6144 clips and a 128-wide gaze model) or "
                        "proof (about 2 hours: 16 frames of 128 px, scales 32+64+128, 84 patches per frame)")
    p.add_argument("--only", nargs="*", help="run only these stages: " + " ".join(s.name for s in STAGES))
    p.add_argument("--data-root", type=Path, help="train/ and val/ folders of .mp4s, or any folder of videos")
    p.add_argument("--real-videos", type=Path, help="folder of real videos (default ROOT/data/real_videos)")
    p.add_argument("--from-settings", help=argparse.SUPPRESS)  # a parent demo process's settings file
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every training stage")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tune_cpu()
    if args.from_settings:  # a second process beside its parent: one core each
        demo = dataclasses.replace(load_settings(args.from_settings), threads=1)
    else:
        given = {"threads": args.threads} if args.threads else {}
        demo = preset(args.preset, root=Path(args.root), seed=args.seed, procs=args.procs,
                      extra_overrides=list(args.overrides), data_dir=args.data_root, real_videos=args.real_videos,
                      **given)
        claim_root(demo)
    torch.set_num_threads(demo.threads)
    t0 = time.perf_counter()
    timings = run_demo(demo, args.only)
    if (demo.exps / "demo_summary.txt").exists() and not args.from_settings:
        print((demo.exps / "demo_summary.txt").read_text())
    print(json.dumps({"stage_seconds": timings, "total_seconds": round(time.perf_counter() - t0, 1)}))
