"""The demo's closing summary: loss curves, patches saved against random, imitation, adaptive
stopping and real clips, read back from the CSVs the stages wrote."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from autogaze.demo.settings import Demo


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def patch_savings(reach: list[dict]) -> list[str]:
    """'model needs Nx fewer patches than random' for every model, from ratio_to_reach rows."""
    ratio = {r["model"]: r["ratio_to_reach"] for r in reach}
    if "random" not in ratio or ratio["random"].startswith(">"):
        return []
    rnd = float(ratio["random"])
    lines = []
    for model, value in ratio.items():
        if model == "random":
            continue
        lines.append(f"  {model:10s} " + ("does not reach it" if value.startswith(">")
                                           else f"{rnd / float(value):.2f}x fewer patches than random"))
    return lines


def adaptive_savings(adaptive: list[dict], threshold: float, ratio: float) -> list[str]:
    """Each model's patches at its own per-frame stops (the tau sweep of stage adaptive, as a curve of
    loss against the ratio it gazed) against random's uniform ``ratio`` at the same loss ``threshold``."""
    from autogaze.evaluate import crossing_ratio

    lines = []
    for model in dict.fromkeys(r["model"] for r in adaptive):
        pts = [{"ratio": float(r["gazing_ratio"]), "loss": float(r["loss"])} for r in adaptive if r["model"] == model]
        x = crossing_ratio(pts, threshold)
        lines.append(f"  {model:10s} " + (f"at ratio {x:.3f}: {ratio / x:.2f}x fewer patches than random" if x
                                           else "does not reach it at any tau tried"))
    return [f"patches to reach random's loss at ratio {ratio} (L={threshold}) when the model stops each frame itself:",
            *lines]


def summary_text(demo: Demo) -> str:
    from autogaze.evaluation.report import format_table

    d = demo.exps / "demo_curves"
    curve, reach = _rows(d / "loss_vs_ratio.csv"), _rows(d / "ratio_to_reach.csv")
    lines = []
    rr = demo.exps / "demo_mae" / "reward_range.json"
    if rr.is_file():
        from autogaze.evaluation.reward_range import RewardRange

        raw = json.loads(rr.read_text())
        lines.append("reward range of the MAE (val): " + RewardRange(
            **{k: raw[k] for k in ("none", "random", "full", "ratio", "clips")}).describe())
    lines += [f"held-out ({demo.data}/val) reconstruction loss against gazing ratio; ratio@L = the gazing "
              "ratio needed to reach loss L ('>max': not reached)", format_table(curve, reach)]
    if reach:
        lines.append(f"patches needed to reach random's loss at ratio {demo.eval_ratio} (L={reach[0]['threshold']}):")
        lines += patch_savings(reach)
    at = {(r["model"], float(r["ratio"])): float(r["loss"]) for r in curve}
    if ("ntp_rl", demo.eval_ratio) in at:
        before, after = at[("ntp", demo.eval_ratio)], at[("ntp_rl", demo.eval_ratio)]
        lines.append(f"GRPO at ratio {demo.eval_ratio}: NTP {before:.4f} -> NTP+RL {after:.4f} "
                     f"({100 * (after - before) / before:+.1f}%)")
    imitation = _rows(d / "imitation.csv")
    if imitation:
        lines.append("imitation of the val clips' greedy labels (teacher-forced top-1; Jaccard of free gazing):")
        lines += [f"  {r['model']:10s} top1 {float(r['top1']):.3f}  jaccard {float(r['jaccard']):.3f}" for r in imitation]
    adaptive = _rows(demo.exps / "demo_adaptive" / "adaptive.csv")
    if adaptive:
        lines.append("adaptive stopping (cap 0.75, stop when the predicted loss <= tau); random = same per-frame counts:")
        lines += [f"  {r['model']:10s} tau {float(r['tau']):.2f}: ratio {float(r['gazing_ratio']):.3f}  loss "
                  f"{float(r['loss']):.4f}  random {float(r['random_loss']):.4f}  |pred-actual| "
                  f"{float(r['calibration']):.3f}" for r in adaptive]
        if reach:
            lines += adaptive_savings(adaptive, float(reach[0]["threshold"]), demo.eval_ratio)
    real = demo.exps / "demo_real"
    real_curve, real_reach = _rows(real / "loss_vs_ratio.csv"), _rows(real / "ratio_to_reach.csv")
    if real_curve:
        lines += [f"real clips ({demo.real_clips}/val):", format_table(real_curve, real_reach)]
        lines += patch_savings(real_reach)
    elif (real / "skipped.txt").is_file():
        lines.append("real clips: " + (real / "skipped.txt").read_text().strip())
    overlay = demo.exps / "demo_overlay" / "overlay.mp4"
    lines += [f"plot: {d / 'loss_vs_ratio.png'}", f"overlay: {overlay if overlay.exists() else 'skipped'}"]
    return "\n".join(lines) + "\n"
