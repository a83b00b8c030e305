"""NTP on planted labels through the real pipeline (mp4 clips, label file, trainer, Stage-1 config).
Not in CI; tests/test_planted.py is the seconds-long version on in-memory clips.

    python scripts/planted_ntp.py --root /tmp/planted --clips 192 --steps 600 --background-gain 0.15

Writes single-object, static-camera synthetic clips, labels them with ``labeling.planted`` (the
finest-scale patches covering the object, row-major), trains NTP with the demo's Stage-1 overrides
and prints teacher-forced top-1 and generated Jaccard on the train and val clips.
``--background-gain`` sets how much the background stands out (0.7 = the demo's world; 0.15 = a
dim background on which the object is visible in a single frame).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from autogaze.datasets.labels import write_labels
from autogaze.datasets.synthetic import World, make_synthetic_dataset
from autogaze.demo import Demo, compose, ntp_overrides
from autogaze.evaluation.imitation import imitation_table
from autogaze.labeling.planted import label_folder
from autogaze.train import run
from autogaze.utils.runtime import tune_cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--clips", type=int, default=192, help="training clips")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--background-gain", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    tune_cpu()
    data = a.root / "data"
    world = World(pan_fraction=0.0, num_objects=(1, 1), background_gain=a.background_gain)
    if not (data / "val").is_dir():
        make_synthetic_dataset(data, a.clips, 32, 8, 64, a.seed, world)
    for split in ("train", "val"):
        write_labels(data / f"planted_{split}.json", label_folder(data / split, (32, 64), 8))
    demo = Demo(root=a.root, data_dir=data, seed=a.seed)
    drop = ("trainer.task_weights", "dataset.gt_gazing_pos_paths", "trainer.max_steps")
    overrides = [o for o in ntp_overrides(demo) if not o.startswith(drop)] + [
        f"dataset.gt_gazing_pos_paths.train={data / 'planted_train.json'}", f"trainer.logdir={a.root / 'exps'}",
        "trainer.exp_name=ntp", f"trainer.max_steps={a.steps}", f"trainer.seed={a.seed}", "trainer.val_nsteps=100000"]
    exp = a.root / "exps" / "ntp"
    if not (exp / "checkpoint_latest_gaze").is_dir():
        run(compose("video_folder_video_mae_reconstruction_ar_gaze_ntp", overrides), "planted")
    for split in ("train", "val"):
        row = imitation_table([f"ntp={exp}"], exp / "config.yaml", str(data / f"planted_{split}.json"), split=split,
                              data_root=str(data), max_batches=4)[0]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
