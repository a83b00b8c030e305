"""NTP and GRPO variants trained from a finished demo root, then evaluated side by side (not in CI).

Reuses the root's data, MAE and labels (and, for K=10, its NTP checkpoint); writes only under ``--out``::

    python scripts/grpo_variants.py --root R --out O --k 10 --steps 300,600,900
    python scripts/grpo_variants.py --root R --out O --k 1 --steps 600,900
    python scripts/grpo_variants.py --root R --out O --k 1 --ntp-steps 4000 --steps 600
    python scripts/grpo_variants.py --root R --out O --k 10 --steps 600 --tag _u \\
        model.gazing_ratio_config.sample_strategy_during_training=uniform \\
        model.gazing_ratio_config.uniform.gazing_ratio_min=0.1 model.gazing_ratio_config.uniform.gazing_ratio_max=0.2

K is the decoder's gazes per step (``num_multi_token_pred``). When ``--k`` differs from that of the
root's NTP checkpoint, or ``--ntp-steps`` is given, NTP is retrained first with the demo's stage-1
overrides (``O/exps/ntp_k{K}``, ``_s{N}`` appended for ``--ntp-steps N``). GRPO
then runs once, with the demo's stage-2 overrides, for the largest of ``--steps``; a copy of the
gaze weights is kept at each of the others. Every checkpoint and random gazing are evaluated on the
root's val clips at the demo's curve ratios, with random's loss at the demo's ``eval_ratio`` as the
threshold; the table goes to ``O/variants_k{K}{tag}.csv`` and is printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from autogaze.demo import Demo, grpo_overrides, ntp_overrides, train
from autogaze.demo.settings import load_settings
from autogaze.demo.stages import GRPO_CONFIG, NTP_CONFIG
from autogaze.evaluate import evaluate_models
from autogaze.models.autogaze.config import AutoGazeConfig
from autogaze.utils.runtime import tune_cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="a finished demo root")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--k", type=int, default=None, help="gazes per decoder step (default: the root's NTP checkpoint's)")
    p.add_argument("--ntp-steps", type=int, default=None, help="retrain NTP for this many steps first")
    p.add_argument("--steps", default="300,600", help="GRPO steps at which to evaluate")
    p.add_argument("--tag", default="", help="suffix of the GRPO experiment and the csv")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for GRPO")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    tune_cpu()
    demo = dataclasses.replace(load_settings(a.root / "exps" / "demo_settings.json"), root=a.root)
    ntp = a.root / "exps" / "demo_ntp"
    root_k = AutoGazeConfig.from_pretrained(str(ntp / "checkpoint_latest_gaze")).num_multi_token_pred
    k = root_k if a.k is None else a.k
    steps = sorted(int(s) for s in a.steps.split(","))
    out = dataclasses.replace(demo, root=a.out, extra_overrides=[])  # trains under a.out/exps, same seed
    exps = out.exps
    if k != root_k or a.ntp_steps is not None:
        ntp = exps / (f"ntp_k{k}" + ("" if a.ntp_steps is None else f"_s{a.ntp_steps}"))
        if not (ntp / "checkpoint_latest_gaze").is_dir():
            d = dataclasses.replace(demo, multi_token_pred=k, ntp_steps=a.ntp_steps or demo.ntp_steps)
            train(out, NTP_CONFIG, ntp.name, ntp_overrides(d))
    ntp_tag = "" if a.ntp_steps is None else f"_ntp{a.ntp_steps}"
    name = f"grpo_k{k}{ntp_tag}{a.tag}"
    keep = exps / name / "kept"
    if not (exps / name / "checkpoint_latest_gaze").is_dir():
        d = dataclasses.replace(demo, multi_token_pred=k, grpo_steps=steps[-1])
        _train_keeping(out, name, grpo_overrides(d, ntp / "checkpoint_latest_gaze") + list(a.overrides), steps, keep)
    specs = [f"{ntp.name}={ntp}"] + [f"grpo{s}={keep / f'step{s}'}" for s in steps[:-1]]
    specs += [f"grpo{steps[-1]}={exps / name}", "random"]
    config = a.root / "exps" / "demo_mae" / "config.yaml"
    kw = dict(data_root=str(demo.data), split="val", seed=demo.seed)
    rnd, _ = evaluate_models(["random"], config, ratios=[demo.eval_ratio], **kw)
    evaluate_models(specs, config, ratios=demo.curve_ratios, thresholds=[round(rnd[0]["loss"], 4)],
                    out=a.out / f"variants_k{k}{ntp_tag}{a.tag}", log=print, **kw)


def _train_keeping(out: Demo, name: str, overrides: list[str], steps: list[int], keep: Path) -> None:
    """GRPO to ``steps[-1]``, stopping and resuming at each earlier entry of ``steps`` to copy the
    gaze weights into ``keep`` (the trainer prunes its numbered checkpoints; resume is exact)."""
    base = [o for o in overrides if not o.startswith("trainer.max_steps=")]
    for i, s in enumerate(steps):
        exp = train(out, GRPO_CONFIG, name, base + [f"trainer.max_steps={s}"] + (["trainer.resume=auto"] if i else []))
        if s != steps[-1]:
            shutil.copytree(exp / "checkpoint_latest_gaze", keep / f"step{s}", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
