"""How well NTP imitates greedy labels as a function of training clips and steps (not in CI).

Needs a demo-style root: ``<root>/exps/demo_mae`` (the task), ``<root>/data/{train,val}`` clips,
``<root>/data/gazing_labels.json`` (train labels) and ``<root>/data/val_labels.json``::

    python -m autogaze.demo --root R --only data mae          # or reuse a finished demo's MAE
    python -m autogaze.label --data-root R/data --split train ... --out R/data/gazing_labels.json
    python -m autogaze.label --data-root R/data --split val ... --out R/data/val_labels.json --seed 1
    python scripts/imitation_scaling.py --root R --clips 192,768,3072 --steps 600,2000
    python scripts/imitation_scaling.py --root PROOF_ROOT --preset proof --clips 2048 --steps 600 [overrides]

For each (clips, steps) it trains NTP with the demo's Stage-1 overrides on the first ``clips``
labelled clips, then writes one row to ``<root>/imitation_scaling.csv``: teacher-forced top-1 and
generated Jaccard on (up to 64 of) the training clips and on val, and the held-out loss at ratios
0.1 and 0.2 next to random gazing.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from autogaze.datasets.labels import write_labels
from autogaze.demo import Demo, ntp_overrides, preset, train
from autogaze.evaluate import evaluate_models
from autogaze.evaluation.imitation import imitation_table
from autogaze.utils.runtime import tune_cpu


def subset_labels(src: Path, n: int, out: Path) -> Path:
    labels = json.loads(src.read_text())
    keys = sorted(labels)[:n]
    if len(keys) < n:
        raise SystemExit(f"{src} has {len(keys)} labelled clips, fewer than {n}")
    write_labels(out, {k: labels[k] for k in keys})
    return out


def val_labels(demo: Demo) -> Path:
    """The val clips' labels: the layout above, or a demo root's (``--preset``)."""
    legacy = demo.root / "data" / "val_labels.json"
    return legacy if legacy.is_file() else demo.val_labels


def run_one(demo: Demo, n: int, steps: int, seed: int, tag: str = "", labels: Path | None = None) -> dict:
    name = f"ntp_n{n}_s{steps}_seed{seed}{tag}"
    exp = demo.exps / name
    labels = subset_labels(labels or demo.labels, n, demo.root / "data" / f"labels_first{n}{tag}.json")
    if not (exp / "demo_done").exists():
        overrides = [o for o in ntp_overrides(demo) if not o.startswith(("dataset.gt_gazing_pos_paths.train=",
                                                                         "trainer.max_steps="))]
        train(demo, "video_folder_video_mae_reconstruction_ar_gaze_ntp", name,
              overrides + [f"dataset.gt_gazing_pos_paths.train={labels}", f"trainer.max_steps={steps}"])
    config = demo.exps / "demo_mae" / "config.yaml"
    row = {"clips": n, "steps": steps, "seed": seed, "overrides": " ".join(demo.extra_overrides)}
    for split, lab in (("train", labels), ("val", val_labels(demo))):
        m = imitation_table([f"ntp={exp}"], config, str(lab), split=split, data_root=str(demo.data), max_batches=8)[0]
        row.update({f"{split}_{k}": m[k] for k in ("top1", "jaccard")})
    curve, _ = evaluate_models([f"ntp={exp}", "random"], config, data_root=str(demo.data), ratios=[0.1, 0.2],
                               seed=seed, log=lambda *_: None)
    for r in curve:
        row[f"{r['model']}_loss@{r['ratio']:g}"] = r["loss"]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--clips", default="192,768,3072")
    p.add_argument("--steps", default="600")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", type=Path, help="train labels (default <root>/data/gazing_labels.json)")
    p.add_argument("--preset", help="a finished `python -m autogaze.demo --preset NAME --root ROOT` (its data, "
                   "labels and geometry) instead of the layout above")
    p.add_argument("--tag", default="", help="suffix of the experiment names (for runs with overrides)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for the NTP runs")
    a = p.parse_args()
    torch.set_num_threads(1)
    tune_cpu()
    if a.preset:
        demo = preset(a.preset, root=a.root, seed=a.seed, extra_overrides=a.overrides)
    else:
        demo = Demo(root=a.root, data_dir=a.root / "data", seed=a.seed, extra_overrides=a.overrides)
    rows = [run_one(demo, int(n), int(s), a.seed, a.tag, a.labels) for s in a.steps.split(",") for n in a.clips.split(",")]
    out = a.root / f"imitation_scaling{a.tag}.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
