"""Evaluate one model again in a finished demo run's cached tables, in place. Not in CI.

When a baseline's rule changes (say ``framediff``), the other rows of a run's tables stay valid: this
re-runs only that model, on the same clips, ratios, frame split and seed as each table was made with,
and replaces its rows in ``loss_vs_ratio.csv`` and ``ratio_to_reach.csv`` (thresholds kept) and the plot.

    python scripts/refresh_model.py runs/seed0 runs/seed1 runs/seed2 --model framediff
    python scripts/results_tables.py runs/seed0 runs/seed1 runs/seed2

Tables refreshed where they exist: exps/demo_curves and demo_real (written by the demo, with the run's
seed), demo_static, demo_split and demo_static_split (written by results_tables.py, with seed 0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_tables import SPLIT, rows, static_clips  # noqa: E402

from autogaze.demo.settings import load_settings  # noqa: E402
from autogaze.evaluate import crossing_ratio, evaluate_models  # noqa: E402
from autogaze.evaluation import report  # noqa: E402


def tables(run: Path) -> dict[str, dict]:
    """exps/<sub> -> the evaluate_models arguments that table was made with."""
    demo = load_settings(run / "exps" / "demo_settings.json")
    static = str(static_clips(run))
    return {"demo_curves": dict(data_root=str(demo.data), seed=demo.seed),
            "demo_real": dict(data_root=str(demo.real_clips), seed=demo.seed),
            "demo_static": dict(data_root=static),
            "demo_split": dict(data_root=None, frame_weights=SPLIT),
            "demo_static_split": dict(data_root=static, frame_weights=SPLIT)}


def refresh(run: Path, model: str) -> None:
    config = run / "exps" / "demo_mae" / "config.yaml"
    for sub, kw in tables(run).items():
        out = run / "exps" / sub
        curve, reach = rows(out / "loss_vs_ratio.csv"), rows(out / "ratio_to_reach.csv")
        if not curve:
            continue
        ratios = sorted({float(r["ratio"]) for r in curve})
        thresholds = sorted({float(r["threshold"]) for r in reach})
        new, _ = evaluate_models([model], config, split="val", ratios=ratios, log=lambda *_: None, **kw)
        curve = [r for r in curve if r["model"] != model] + new
        reach = [r for r in reach if r["model"] != model] + [
            {"model": model, "threshold": t,
             "ratio_to_reach": report.format_reach(crossing_ratio(new, t), max(ratios))} for t in thresholds]
        report.write_csv(curve, report.CURVE_COLUMNS, out / "loss_vs_ratio.csv")
        report.write_csv(reach, report.REACH_COLUMNS, out / "ratio_to_reach.csv")
        report.plot_curves(curve, out / "loss_vs_ratio.png", thresholds)
        print(f"{run} {sub}: {model} " + " ".join(f"{r['ratio']:g}->{r['loss']:.4f}" for r in new), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--model", required=True, help="a model spec of autogaze.evaluate --models (e.g. framediff)")
    a = p.parse_args()
    for run in a.runs:
        refresh(run, a.model)


if __name__ == "__main__":
    main()
