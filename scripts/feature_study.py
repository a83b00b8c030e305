"""The feature-reconstruction reward end to end, from a finished demo root (not in CI).

Stages, each skipped when its output exists (writes only under ``--out``)::

    python scripts/feature_study.py --root R --out O [--clips 2048] [--grpo-steps 600]

0. the predictor of ``task=video_feature_reconstruction`` (``demo_feature_reconstruction``: the root's
   VideoMAE encoder as the frozen tower, V-JEPA's L1 on layer-normed targets), trained on random gazes;
1. greedy labels of the first ``--clips`` training clips against that predictor (the paper's budgets);
2. NTP on them and 3. GRPO from it: the demo's stage-1 and stage-2 overrides with the task group swapped;
4. evaluation on the root's val clips at ratios 0.1, 0.2, 0.3: full gaze, the feature gazers (NTP,
   NTP+RL), the root's pixel gazer (its demo_grpo), random, and a predict-the-frame-mean baseline (per
   predicted frame, the mean over positions of its own layer-normed targets, an oracle constant); then the
   pixel loss (the root's MAE) of the same gaze models.

Tables go to ``O/feature_eval/`` and ``O/pixel_eval/`` (loss_vs_ratio.csv) and ``O/frame_mean.json``;
``python scripts/feature_study.py --summarize O1 O2 O3 [--tag T]`` prints their mean ± std over runs as markdown.
Extra arguments are Hydra overrides for GRPO, with ``--tag`` naming that run (``feature_grpo{T}``) and its tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from autogaze.demo import grpo_overrides, ntp_overrides, train
from autogaze.demo.settings import load_settings
from autogaze.demo.stages import GRPO_CONFIG, NTP_CONFIG
from autogaze.datasets.synthetic import masks_path
from autogaze.evaluate import evaluate_models
from autogaze.tasks.video_mae_reconstruction.config import ARCH_KEYS
from autogaze.utils.runtime import tune_cpu

RATIOS = (0.1, 0.2, 0.3)
FEATURE_CONFIG = "demo_feature_reconstruction"


def subset(root_data: Path, out: Path, n_train: int) -> Path:
    """``out/data/subset/{train,val}``: links to the first ``n_train`` training clips and every val clip."""
    dst = out / "data" / "subset"
    for split, n in (("train", n_train), ("val", None)):
        (dst / split).mkdir(parents=True, exist_ok=True)
        for clip in sorted((root_data / split).glob("*.mp4"))[:n]:
            for f in (clip, masks_path(clip)):
                link = dst / split / f.name
                if f.exists() and not link.exists():
                    link.symlink_to(f.resolve())
    return dst


def task_keys(config: Path, predictor: Path) -> list[str]:
    """Overrides that rebuild the trained predictor's task (read from its experiment's ``config.yaml``), so
    that NTP, GRPO and the labeller build the same predictor and load its weights."""
    from omegaconf import OmegaConf

    task = OmegaConf.to_container(OmegaConf.load(config), resolve=True)["task"]
    arch = task["recon_model_config"]
    keys = ["task=video_feature_reconstruction", f"task.vision_model={task['vision_model']}",
            f"task.vision_model_config.recon_model={task['vision_model_config']['recon_model']}",
            f"task.scales={task['scales']}", f"task.recon_sample_rate={task['recon_sample_rate']}",
            f"task.recon_model_config.loss_type={arch['loss_type']}"]
    keys += [f"task.recon_model_config.{k}={arch[k]}" for k in ARCH_KEYS if arch.get(k) is not None]
    return keys + [f"trainer.task_weights={predictor}"]


def swap_task(overrides: list[str], keys: list[str], sample_rate: float | None = None) -> list[str]:
    """The demo's overrides with its MAE task keys replaced by the feature task's."""
    kept = [o for o in overrides if not o.startswith(("task.", "trainer.task_weights="))]
    return kept + keys + ([f"task.recon_sample_rate={sample_rate}"] if sample_rate is not None else [])


@torch.no_grad()
def frame_mean_loss(config: Path, data_root: Path) -> float:
    """Mean over val clips and all frames of |mean_k LN(h_k) - LN(h_k)|: the loss of predicting, for
    each frame, one constant feature (the frame's own mean target) at every position."""
    import torch.nn.functional as F

    from autogaze.evaluation.models import load_experiment, load_task, make_loader

    exp = load_experiment(config, str(data_root))
    task = load_task(exp, config)
    total, count = 0.0, 0
    for batch in make_loader(exp, "val", {}, batch_size=8):
        T = batch.video_for_task.shape[1]
        h = task.targets(batch.video_for_task, torch.arange(T)).float()  # [B, T, K, Df]
        z = F.layer_norm(h, h.shape[-1:])
        total += float((z - z.mean(2, keepdim=True)).abs().mean(-1).mean(-1).sum())
        count += z.shape[0] * T
    return total / count


def summarize(outs: list[Path], tag: str = "") -> str:
    """Markdown tables of the feature and pixel losses (mean ± std over ``outs``) and the frame-mean baseline."""
    import csv
    import statistics

    def fmt(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")

    lines = []
    for table in (f"feature_eval{tag}", f"pixel_eval{tag}"):
        loss: dict[tuple[str, float], list[float]] = {}
        for out in outs:
            with open(out / table / "loss_vs_ratio.csv") as f:
                for row in csv.DictReader(f):
                    loss.setdefault((row["model"], float(row["ratio"])), []).append(float(row["loss"]))
        models = list(dict.fromkeys(m for m, _ in loss))
        lines += [f"{table} ({len(outs)} runs)", "| model | " + " | ".join(f"r={r}" for r in RATIOS) + " |",
                  "|---|" + "---|" * len(RATIOS)]
        lines += [f"| {m} | " + " | ".join(fmt(loss[m, r]) for r in RATIOS) + " |" for m in models]
        lines.append("")
    means = [json.loads((out / "frame_mean.json").read_text())["frame_mean_loss"] for out in outs]
    lines.append(f"predict-the-frame-mean baseline: {fmt(means)}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--summarize", type=Path, nargs="+", metavar="OUT", help="only print the tables of finished runs")
    p.add_argument("--root", type=Path, help="a finished demo root (its data and demo_mae)")
    p.add_argument("--out", type=Path)
    p.add_argument("--clips", type=int, default=2048, help="training clips labelled for NTP")
    p.add_argument("--predictor-steps", type=int, default=400)
    p.add_argument("--ntp-steps", type=int, default=None, help="default: the root's")
    p.add_argument("--grpo-steps", type=int, default=None, help="default: the root's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the GRPO experiment and the eval folders")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for GRPO")
    a = p.parse_args()
    if a.summarize:
        print(summarize(a.summarize, a.tag))
        return
    if a.root is None or a.out is None:
        p.error("--root and --out are required (or --summarize)")
    torch.set_num_threads(a.threads)
    tune_cpu()
    root_demo = dataclasses.replace(load_settings(a.root / "exps" / "demo_settings.json"), root=a.root)
    data = subset(root_demo.data, a.out, a.clips)
    demo = dataclasses.replace(root_demo, root=a.out, data_dir=data, extra_overrides=[],
                               ntp_steps=a.ntp_steps or root_demo.ntp_steps,
                               grpo_steps=a.grpo_steps or root_demo.grpo_steps)
    exps, mae = demo.exps, root_demo.task_weights

    predictor_exp = exps / "feature_task"
    if not (predictor_exp / "demo_done").exists():
        train(demo, FEATURE_CONFIG, "feature_task", [
            f"dataset.root={data}", f"dataset.clip_len={demo.clip_len}", f"task.vision_model={mae}",
            f"model.scales={demo.scales}", f"model.num_vision_tokens_each_frame={demo.tokens_per_frame}",
            f"task.scales={demo.scales}", f"trainer.max_steps={a.predictor_steps}"])
    predictor = predictor_exp / "checkpoint_latest_task.pt"
    config = predictor_exp / "config.yaml"

    if not demo.labels.exists():
        from autogaze.labeling.cli import main as label_main

        label_main(["--data-root", str(data), "--split", "train", "--clip-len", str(demo.clip_len),
                    "--task-config", str(config), "--task-weights", str(predictor), "--out", str(demo.labels),
                    "--seed", str(demo.seed), "--device", "cpu", "--threads", str(a.threads)])

    keys = task_keys(config, predictor)
    ntp = exps / "feature_ntp"
    if not (ntp / "demo_done").exists():
        train(demo, NTP_CONFIG, "feature_ntp", swap_task(ntp_overrides(demo), keys))
    grpo = exps / f"feature_grpo{a.tag}"
    if not (grpo / "demo_done").exists():
        train(demo, GRPO_CONFIG, grpo.name,
              swap_task(grpo_overrides(demo, ntp / "checkpoint_latest_gaze"), keys, sample_rate=1.0) + a.overrides)

    specs = ["full", f"feature_ntp={ntp}", f"feature_ntp_rl={grpo}", f"pixel_ntp_rl={a.root / 'exps' / 'demo_grpo'}",
             "random"]
    kw = dict(data_root=str(data), split="val", seed=demo.seed, ratios=list(RATIOS))
    evaluate_models(specs, config, out=a.out / f"feature_eval{a.tag}", log=print, **kw)
    evaluate_models(specs[1:], a.root / "exps" / "demo_mae" / "config.yaml", out=a.out / f"pixel_eval{a.tag}",
                    log=print, **kw)
    mean = frame_mean_loss(config, data)
    (a.out / "frame_mean.json").write_text(json.dumps({"frame_mean_loss": mean}))
    print(f"predict-the-frame-mean baseline: {mean:.4f}")


if __name__ == "__main__":
    main()
