"""NTP variants against a finished demo root's NTP, on the same clips and MAE (not in CI).

Each variant gets its own root beside the source: the source's clips (linked) and MAE (copied), then
the demo's stages ``labels`` and ``ntp`` with the variant's changes, then the held-out loss of the
variant's NTP, the source's NTP and random gazing at ratios 0.05-0.2 (``<out>/<name>/eval.json``), with
the ratio each needs to reach random's loss at the demo's ``eval_ratio``. ``--grpo`` goes on with the demo's
GRPO stage from the variant's NTP and evaluates both stages of variant and source at the demo's curve ratios,
on the val clips and on the source's real clips::

    python scripts/ntp_variants.py --src runs/seed0 --out runs/ntp_var --name lr1e-3 --reuse-labels trainer.lr=1e-3
    python scripts/ntp_variants.py --src runs/seed0 --out runs/ntp_var --name uniform \\
        --label-args="--ratio-strategy uniform --ratio-min 0.05 --ratio-max 0.25 --frame-strategy uniform"
    python scripts/ntp_variants.py --src runs/seed0 --out runs/ntp_var --name n6144 --n-train 6144
    python scripts/ntp_variants.py --src runs/seed0 --out runs/ntp_var --name big --n-train 6144 --grpo \
        trainer.lr=1e-3 trainer.max_steps=4000 model.gaze_model_config.gaze_decoder_config.num_hidden_layers=3 ...

``--reuse-labels`` links the source's labels instead of labelling again; ``--n-train N`` writes the
source's first N synthetic training clips anew (clip i is the same clip at any N), so N > 3072 adds
clips; trailing arguments are Hydra overrides of the NTP experiment.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import shutil
from pathlib import Path

import torch

from autogaze.demo import Demo, run_demo
from autogaze.demo.settings import load_settings
from autogaze.evaluate import crossing_ratio, evaluate_models
from autogaze.evaluation.report import format_reach

RATIOS = (0.05, 0.1, 0.15, 0.2)


def variant_root(src: Demo, root: Path, n_train: int, reuse_labels: bool) -> None:
    """``root/data/synthetic`` with the source's val clips, its train clips (or ``n_train`` new
    ones) and, with ``reuse_labels``, its label files; ``root/exps/demo_mae`` copied from it."""
    syn = root / "data" / "synthetic"
    syn.mkdir(parents=True, exist_ok=True)
    if n_train and not (syn / "train").exists():
        from autogaze.datasets.synthetic import make_synthetic_dataset

        make_synthetic_dataset(syn, n_train, 0, src.clip_len, src.frame_size, src.seed, src.world(), workers=2)
        (syn / "val").rmdir()  # made empty (0 val clips); linked below
    names = ["train", "val"] + (["gazing_labels.json", "val_gazing_labels.json"] if reuse_labels else [])
    for name in names:
        if not (syn / name).exists():
            os.symlink((src.data / name).resolve(), syn / name)
    (root / "data" / "data_done").write_text(str(syn))
    if not (root / "exps" / "demo_mae").exists():
        shutil.copytree(src.exps / "demo_mae", root / "exps" / "demo_mae")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="a finished demo root (default preset)")
    p.add_argument("--out", type=Path, required=True, help="folder of the variants' roots")
    p.add_argument("--name", required=True)
    p.add_argument("--label-args", default="", help="extra python -m autogaze.label arguments, one string")
    p.add_argument("--reuse-labels", action="store_true", help="link the source's labels")
    p.add_argument("--n-train", type=int, default=0, help="write this many synthetic training clips")
    p.add_argument("--grpo", action="store_true",
                   help="then the demo's GRPO stage from the variant's NTP, and the real clips' curves too")
    p.add_argument("--grpo-lr", type=float, help="GRPO's lr (default: the demo's, Demo.grpo_lr)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the NTP experiment (all but trainer.* reach GRPO)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    src = dataclasses.replace(load_settings(args.src / "exps" / "demo_settings.json"), root=args.src)
    root = args.out / args.name
    variant_root(src, root, args.n_train, args.reuse_labels)
    demo = dataclasses.replace(src, root=root, n_train=args.n_train or src.n_train, data_dir=None,
                               label_extra=tuple(shlex.split(args.label_args)), extra_overrides=list(args.overrides))
    run_demo(demo, ["labels", "ntp"])
    models = [f"{args.name}={root / 'exps' / 'demo_ntp'}", f"source={src.exps / 'demo_ntp'}"]
    if args.grpo:
        # trainer.* overrides are NTP's own (steps, lr); the rest (the gaze model's shape) must reach GRPO too
        shape = [o for o in args.overrides if not o.startswith("trainer.")]
        lr = args.grpo_lr if args.grpo_lr is not None else demo.grpo_lr
        run_demo(dataclasses.replace(demo, procs=1, extra_overrides=shape, grpo_lr=lr), ["grpo"])
        models += [f"{args.name}_rl={root / 'exps' / 'demo_grpo'}", f"source_rl={src.exps / 'demo_grpo'}"]
    config = root / "exps" / "demo_mae" / "config.yaml"
    splits = [("val", demo.data)] + ([("real", src.real_clips)] if args.grpo and (src.real_clips / "val").is_dir() else [])
    ratios = sorted({*(src.curve_ratios if args.grpo else RATIOS), src.eval_ratio})
    out = {}
    for name, data in splits:
        kw = dict(data_root=str(data), split="val", seed=src.seed)
        rows, _ = evaluate_models(models + ["random"], config, ratios=ratios, **kw)
        # random's loss at eval_ratio, as in the demo's summary, read off the same curves
        threshold = round(next(r["loss"] for r in rows if r["model"] == "random" and r["ratio"] == src.eval_ratio), 4)
        reach = [{"model": m, "threshold": threshold,
                  "ratio_to_reach": format_reach(crossing_ratio([r for r in rows if r["model"] == m], threshold),
                                                 max(ratios))}
                 for m in dict.fromkeys(r["model"] for r in rows)]
        out[name] = {"curve": rows, "reach": reach}
        for r in reach:
            print(f"{name}: {r['model']:>14} reaches random's {r['threshold']} at ratio {r['ratio_to_reach']}")
    (root / "eval.json").write_text(json.dumps(out, indent=1))
    for r in out["val"]["curve"]:
        print(f"{r['model']:>14} ratio {r['ratio']:.2f} loss {r['loss']:.4f}")


if __name__ == "__main__":
    main()
