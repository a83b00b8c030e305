"""Held-out reconstruction loss of gaze models against the gazing ratio (paper Fig. 10 / Table 3).

    loss = reconstruction_loss_at_ratio(gaze_model, task, loader, ratio=0.1)
    r = ratio_to_reach(gaze_model, task, loader, threshold=1.0)     # None: not reached on the grid

    python -m autogaze.evaluate --config exps/demo_mae/config.yaml --split val \
        --models untrained=untrained:exps/demo_ntp ntp=exps/demo_ntp rl=exps/demo_grpo random grid framediff \
        --ratios 0.05,0.1,0.2,0.3,0.5 --thresholds 1.0 --out exps/eval
    -> exps/eval/{loss_vs_ratio.csv, loss_vs_ratio.png, ratio_to_reach.csv} and a printed table.
    ... --labels data/synthetic/val_labels.json    also -> exps/eval/imitation.csv (evaluation/imitation.py)

Every model (AutoGaze, a baseline from models/baselines.py, or the greedy oracle of
labeling/oracle.py) gets the same per-frame budget ``max(int(ratio * P), 1)``, gazes greedily
(eval mode: argmax decoding, no sampling temperature), and is scored on the same frames: all frames
by default, or the ``frame_ids`` given. Randomised models (RandomGaze) draw from a generator seeded
per batch from ``seed``, so two calls give the same number.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch

from autogaze.interfaces import GazeModel, Task
from autogaze.types import Batch
from autogaze.utils.runtime import tune_cpu

#: Ratios of the default curve; with P = 20 patches per frame they are 1, 2, 3, 4, 6, 10 and 20 gazes.
DEFAULT_RATIOS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


@torch.no_grad()
def evaluate_at_ratio(gaze_model: GazeModel, task: Task, batches: Iterable[Batch], ratio: float, *,
                      frame_ids: Sequence[int] | None = None, seed: int = 0, device: str | torch.device = "cpu",
                      precision: str = "fp32", max_batches: int | None = None,
                      frame_weights: Sequence[float] | None = None) -> dict[str, float]:
    """Clip-weighted means over ``batches``: ``loss`` (task loss of the rebuilt frames), ``gazing_ratio``
    (real gazes / (T * P)) and ``clips``.

    frame_weights: None = every frame gets ``max(int(ratio * P), 1)`` gazes; else the clip's
    ``ratio * T * P`` gazes are split over frames by these weights (last value repeated; (10, 3) is
    the labels' mean split), the same counts for every model (evaluation/frame_split.py).

    batches: Batches with ``video`` [B, T, 3, H, W] (gaze input) and ``video_for_task`` (task input).
    frame_ids: frames to rebuild (None = every frame). Both modules are put in eval mode and restored.
    """
    from autogaze.evaluation.frame_split import split_ratios
    from autogaze.evaluation.loop import eval_mode, nonempty_batches

    device = torch.device(device)
    loss_sum, ratio_sum, clips = 0.0, 0.0, 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with eval_mode(gaze_model, task):
        for i, batch in nonempty_batches(batches, max_batches):
            batch = batch.to(device)
            T = batch.video.shape[1]
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)  # same draws for every model
            fids = list(range(T)) if frame_ids is None else list(frame_ids)
            # the greedy oracle searches with the MAE, so it sees the task-side frames
            video = batch.video_for_task if gaze_model.uses_task_video else batch.video
            per_frame = ratio if frame_weights is None else split_ratios(
                ratio, T, gaze_model.tokens_per_frame, frame_weights)
            with autocast:
                budget = gaze_model.sample_budget(video, training=False, gazing_ratio=per_frame)
                gazes = gaze_model.generate(video, budget, generator=gen).gazes
                out = task(batch.video_for_task, gazes, frame_ids=fids)
            B = batch.batch_size
            loss_sum += float(out.loss_per_frame.float().mean(1).sum())
            ratio_sum += float(gazes.real_ratio().sum())
            clips += B
    if clips == 0:
        raise ValueError("no clips to evaluate: the loader gave no (decodable) videos")
    return {"loss": loss_sum / clips, "gazing_ratio": ratio_sum / clips, "clips": float(clips)}


def reconstruction_loss_at_ratio(gaze_model: GazeModel, task: Task, batches: Iterable[Batch], ratio: float,
                                 **kwargs) -> float:
    """Mean held-out reconstruction loss of ``gaze_model``'s greedy gazes at ``ratio`` (see
    :func:`evaluate_at_ratio` for the keyword arguments)."""
    return evaluate_at_ratio(gaze_model, task, batches, ratio, **kwargs)["loss"]


def compare_at_ratio(ntp_exp: str | Path, ratio: float, *, seed: int = 0, split: str = "val",
                     batch_size: int = 8, candidate_batch: int = 64,
                     max_batches: int | None = None) -> dict[str, float]:
    """Held-out loss at ``ratio`` of: the untrained gaze model (same config, fresh init), the NTP
    checkpoint of ``ntp_exp``, the random baseline, and the greedy labeller (the NTP ceiling).
    Task and data come from ``ntp_exp/config.yaml`` and its ``trainer.task_weights``; ``max_batches``
    caps the clips (the greedy labeller is the slow one)."""
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from autogaze.build import build_datasets, build_gaze_model, build_task
    from autogaze.config import parse_config
    from autogaze.labeling.oracle import GreedyOracle
    from autogaze.models.autogaze import AutoGaze
    from autogaze.models.baselines import RandomGaze

    ntp_exp = Path(ntp_exp)
    raw = OmegaConf.to_container(OmegaConf.load(ntp_exp / "config.yaml"), resolve=True)
    exp = parse_config(raw, "evaluate")
    task = build_task(exp)
    task.load_task_weights(exp.trainer.task_weights)
    task.set_trainable(False)
    train_set, val_set, collate = build_datasets(exp)
    loader = DataLoader(val_set if split == "val" else train_set, batch_size=batch_size, collate_fn=collate)
    torch.manual_seed(seed)
    models = {
        "untrained": build_gaze_model(exp),
        "ntp": AutoGaze.from_pretrained(str(ntp_exp / "checkpoint_latest_gaze")),
        "random": RandomGaze.from_config({k: v for k, v in exp.model.items() if k != "_target_"}),
        "greedy_labels": GreedyOracle(task, candidate_batch),
    }
    out: dict[str, float] = {"ratio": ratio, "split": split}  # type: ignore[dict-item]
    for name, model in models.items():
        res = evaluate_at_ratio(model, task, loader, ratio, seed=seed, max_batches=max_batches)
        out[name] = round(res["loss"], 5)
        out["clips"] = res["clips"]
    return out


# ------------------------------------------------------------------------ loss curves, Table 3
def loss_curve(gaze_model: GazeModel, task: Task, batches: Iterable[Batch],
               ratios: Sequence[float] = DEFAULT_RATIOS, **kwargs) -> list[dict[str, float]]:
    """:func:`evaluate_at_ratio` at each ratio: ``[{ratio, gazing_ratio, loss, clips}, ...]``.
    ``batches`` is iterated once per ratio, so pass a re-iterable loader, not a generator."""
    return [{"ratio": r, **evaluate_at_ratio(gaze_model, task, batches, r, **kwargs)} for r in ratios]


def crossing_ratio(curve: Sequence[dict[str, float]], threshold: float) -> float | None:
    """The gazed ratio at which a loss-vs-ratio curve first falls to ``threshold``, by linear
    interpolation between the last point above it and the first at or below it.

    x is the ratio actually gazed (``gazing_ratio``, falling back to ``ratio``), so models compare at
    equal real budgets. Already reached at the smallest ratio -> that ratio (a conservative upper
    bound; nothing is extrapolated). Never reached -> None (tables print '>max').
    """
    pts = sorted((float(p.get("gazing_ratio", p["ratio"])), float(p["loss"])) for p in curve)
    if not pts:
        raise ValueError("empty curve")
    prev = None
    for x, y in pts:
        if y <= threshold:
            if prev is None or prev[1] == y:
                return x
            (x0, y0) = prev
            return x0 + (y0 - threshold) / (y0 - y) * (x - x0)
        prev = (x, y)
    return None


def ratio_to_reach(gaze_model: GazeModel, task: Task, batches: Iterable[Batch], threshold: float,
                   ratios: Sequence[float] = DEFAULT_RATIOS, **kwargs) -> float | None:
    """Smallest gazing ratio at which ``gaze_model`` reaches task loss <= ``threshold`` (Table 3),
    interpolated on the ``ratios`` grid; None when even the largest ratio does not reach it."""
    return crossing_ratio(loss_curve(gaze_model, task, batches, ratios, **kwargs), threshold)


def evaluate_models(specs: Sequence[str], config: str | Path, *, task_weights: str | None = None,
                    data_root: str | None = None, split: str = "val", clip_len: int | None = None,
                    ratios: Sequence[float] = DEFAULT_RATIOS, thresholds: Sequence[float] = (),
                    batch_size: int = 8, max_batches: int | None = None, seed: int = 0,
                    out: str | Path | None = None, log=print,
                    frame_weights: Sequence[float] | None = None) -> tuple[list[dict], list[dict]]:
    """Curves of every model spec (evaluation/models.py) and their ratio per threshold.
    Writes loss_vs_ratio.{csv,png} and ratio_to_reach.csv under ``out`` when given."""
    from autogaze.evaluation import models as M, report

    exp = M.load_experiment(config, data_root, clip_len)
    task = M.load_task(exp, config, task_weights)
    loaders: dict[str, object] = {}  # one per distinct gaze-side normalisation
    curve, reach = [], []
    for spec in M.load_gaze_models(list(specs), dict(exp.model), seed):
        key = json.dumps(spec.preprocessing, sort_keys=True)
        if key not in loaders:
            loaders[key] = M.make_loader(exp, split, spec.preprocessing, batch_size)
        points = loss_curve(spec.model, task, loaders[key], ratios, seed=seed, max_batches=max_batches,
                            frame_weights=frame_weights)
        rows = [{"model": spec.name, "split": split, **{k: round(float(v), 5) for k, v in p.items()}}
                for p in points]
        curve += rows
        reach += [{"model": spec.name, "threshold": t,
                   "ratio_to_reach": report.format_reach(crossing_ratio(points, t), max(ratios))} for t in thresholds]
        log(f"{spec.name}: " + " ".join(f"{r['ratio']:g}->{r['loss']:.4f}" for r in rows))
    if out is not None:
        out = Path(out)
        report.write_csv(curve, report.CURVE_COLUMNS, out / "loss_vs_ratio.csv")
        report.write_csv(reach, report.REACH_COLUMNS, out / "ratio_to_reach.csv")
        report.plot_curves(curve, out / "loss_vs_ratio.png", thresholds,
                           title=f"{Path(config).parent.name} task, {split} split")
    return curve, reach


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace("+", ",").split(",") if x]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m autogaze.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="an experiment's config.yaml: its task, dataset and model scales are used")
    p.add_argument("--models", nargs="+", required=True, metavar="[NAME=]REF",
                   help="REF: random|grid|framediff|full, untrained:DIR, or a checkpoint/experiment DIR")
    p.add_argument("--task-weights", help="default: the config's trainer.task_weights, or its own task checkpoint")
    p.add_argument("--data-root", help="overrides dataset.root (folders with train/ and val/ of .mp4 clips)")
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument("--clip-len", type=int, help="overrides dataset.clip_len")
    p.add_argument("--ratios", type=_floats, default=list(DEFAULT_RATIOS), help="e.g. 0.05,0.1,0.2,0.5")
    p.add_argument("--thresholds", type=_floats, default=[], help="loss thresholds for the ratio-to-reach table")
    p.add_argument("--frame-weights", type=_floats, metavar="W0,W1,...",
                   help="split each clip's ratio*T*P gazes over frames by these weights, the last repeated "
                        "(10,3: the labels' mean split); default: every frame int(ratio*P)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, help="cap the batches per point (default: the whole split)")
    p.add_argument("--seed", type=int, default=0, help="random baseline draws and untrained init")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for small models)")
    p.add_argument("--labels", help="a gazing_labels.json of the split: also write imitation.csv (top-1, Jaccard)")
    p.add_argument("--out", default="eval", help="output folder (default ./eval)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(a.threads)
    tune_cpu()
    from autogaze.evaluation.report import format_table

    curve, reach = evaluate_models(a.models, a.config, task_weights=a.task_weights, data_root=a.data_root,
                                   split=a.split, clip_len=a.clip_len, ratios=a.ratios, thresholds=a.thresholds,
                                   batch_size=a.batch_size, max_batches=a.max_batches, seed=a.seed, out=a.out,
                                   frame_weights=a.frame_weights or None)
    print(format_table(curve, reach))
    print(f"wrote {a.out}/loss_vs_ratio.csv, {a.out}/loss_vs_ratio.png, {a.out}/ratio_to_reach.csv")
    if a.labels:
        from autogaze.evaluation.imitation import IMITATION_COLUMNS, imitation_table
        from autogaze.evaluation.report import write_csv

        rows = imitation_table(a.models, a.config, a.labels, split=a.split, data_root=a.data_root,
                               batch_size=a.batch_size, max_batches=a.max_batches, seed=a.seed)
        write_csv(rows, IMITATION_COLUMNS, Path(a.out) / "imitation.csv")
        for r in rows:
            print(" ".join(f"{k}={r[k]}" for k in IMITATION_COLUMNS))


if __name__ == "__main__":
    main()
