"""The tables of docs/results.md, mean ± std over finished demo runs (one per seed). Not in CI.

    for s in 0 1 2; do python -m autogaze.demo --root runs/seed$s --seed $s; done
    python scripts/results_tables.py runs/seed0 runs/seed1 runs/seed2 > tables.md

Reads what the demo wrote (exps/demo_curves, demo_eval.json, demo_adaptive, demo_real). New evaluations,
cached under <run>/exps/: the static-camera subset of the val clips (random vs framediff vs the gaze models,
demo_static/), and every model again with the clip's budget split over frames 10:3, the labels' mean split
(``--frame-weights 10,3`` of autogaze.evaluate; demo_split/ and demo_static_split/).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

RATIOS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
SPLIT = (10.0, 3.0)  # frame 0 : each later frame
MODELS = ("untrained", "ntp", "ntp_rl", "rl_only", "random", "grid", "framediff")


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def ms(values: list[float], digits: int = 4) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def loss_table(runs: list[Path], sub: str, models=MODELS, ratios=RATIOS) -> list[str]:
    per = [{(r["model"], float(r["ratio"])): float(r["loss"]) for r in rows(run / "exps" / sub / "loss_vs_ratio.csv")}
           for run in runs]
    out = ["| model | " + " | ".join(f"r={r:g}" for r in ratios) + " |", "|---" * (len(ratios) + 1) + "|"]
    for m in models:
        if not any((m, ratios[0]) in p for p in per):
            continue
        out.append(f"| {m} | " + " | ".join(ms([p[(m, r)] for p in per if (m, r) in p]) for r in ratios) + " |")
    return out


def reach_table(runs: list[Path], sub: str, models=MODELS) -> list[str]:
    """Ratio to reach random's loss at 0.2, and random's ratio divided by it (patches saved)."""
    ratio, saving, missed = {}, {}, {}
    for run in runs:
        reach = {r["model"]: r["ratio_to_reach"] for r in rows(run / "exps" / sub / "ratio_to_reach.csv")}
        for m, v in reach.items():
            if v.startswith(">"):  # not reached on the grid: left out of the mean, and said so
                missed[m] = missed.get(m, 0) + 1
                ratio.setdefault(m, [])
                continue
            ratio.setdefault(m, []).append(float(v))
            if "random" in reach and not reach["random"].startswith(">"):
                saving.setdefault(m, []).append(float(reach["random"]) / float(v))
    out = ["| model | ratio to reach random's loss at 0.2 | fewer patches than random |", "|---|---|---|"]
    for m in (m for m in models if m in ratio):
        note = f" ({len(ratio[m])} of {len(ratio[m]) + missed[m]} seeds; not reached on the others)" if m in missed else ""
        sav = f"{ms(saving[m], 2)}×" if saving.get(m) else "n/a"
        out.append(f"| {m} | {ms(ratio[m], 3)}{note} | {sav} |")
    return out


def gap_table(runs: list[Path]) -> list[str]:
    """Share of the random -> greedy-label gap that NTP closes (first 16 val clips, demo_eval.json)."""
    out = ["| ratio | random | NTP | greedy labels | gap closed by NTP |", "|---|---|---|---|---|"]
    evals = [json.loads((run / "exps" / "demo_eval.json").read_text()) for run in runs]
    for i, first in enumerate(evals[0]):
        rs = [e[i] for e in evals]
        closed = [(r["random"] - r["ntp"]) / (r["random"] - r["greedy_labels"]) for r in rs]
        out.append(f"| {first['ratio']:g} | {ms([r['random'] for r in rs])} | {ms([r['ntp'] for r in rs])} | "
                   f"{ms([r['greedy_labels'] for r in rs])} | {ms([100 * c for c in closed], 1)} % |")
    return out


def simple_table(runs: list[Path], rel: str, key_cols: tuple[str, ...], value_cols: tuple[str, ...]) -> list[str]:
    groups: dict[tuple, dict[str, list[float]]] = {}
    for run in runs:
        for r in rows(run / rel):
            g = groups.setdefault(tuple(r[k] for k in key_cols), {})
            for v in value_cols:
                g.setdefault(v, []).append(float(r[v]))
    out = ["| " + " | ".join(key_cols + value_cols) + " |", "|---" * (len(key_cols) + len(value_cols)) + "|"]
    for key, g in groups.items():
        out.append("| " + " | ".join(key) + " | " + " | ".join(ms(g[v], 3) for v in value_cols) + " |")
    return out


def reward_range_table(runs: list[Path]) -> list[str]:
    """The MAE's losses with nothing, random (0.2) and every patch gazed (exps/demo_mae/reward_range.json)."""
    rr = [json.loads(p.read_text()) for p in (run / "exps" / "demo_mae" / "reward_range.json" for run in runs)
          if p.is_file()]
    cols = ("none", "random", "full", "gaze_share", "random_share", "headroom")
    return ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|",
            "| " + " | ".join(ms([r[c] for r in rr], 3) for c in cols) + " |"]


def adaptive_reach_table(runs: list[Path]) -> list[str]:
    """Ratio at which each model's adaptive-stopping curve (loss against the ratio gazed, over tau) reaches
    random's uniform loss at 0.2, and random's 0.2 divided by it."""
    from autogaze.evaluate import crossing_ratio

    ratio, missed = {}, {}
    for run in runs:
        reach = {r["model"]: r for r in rows(run / "exps" / "demo_curves" / "ratio_to_reach.csv")}
        threshold = float(reach["random"]["threshold"])
        adaptive = rows(run / "exps" / "demo_adaptive" / "adaptive.csv")
        for m in dict.fromkeys(r["model"] for r in adaptive):
            pts = [{"ratio": float(r["gazing_ratio"]), "loss": float(r["loss"])} for r in adaptive if r["model"] == m]
            x = crossing_ratio(pts, threshold)
            if x is None:
                missed[m] = missed.get(m, 0) + 1
                ratio.setdefault(m, [])
            else:
                ratio.setdefault(m, []).append(x)
    out = ["| model | ratio to reach random's loss at 0.2 | fewer patches than random |", "|---|---|---|"]
    for m, xs in ratio.items():
        note = f" ({len(xs)} of {len(xs) + missed[m]} seeds; not reached on the others)" if m in missed else ""
        out.append(f"| {m} (adaptive) | {ms(xs, 3)}{note} | {ms([0.2 / x for x in xs], 2)}× |")
    return out


def static_clips(run: Path) -> Path:
    """A data root whose val/ links the val clips whose camera does not pan (exps/demo_static/data)."""
    from autogaze.datasets.synthetic import clip_pans, masks_path

    settings = json.loads((run / "exps" / "demo_settings.json").read_text()) if (run / "exps" / "demo_settings.json").is_file() else {}
    val = Path(settings.get("data_dir") or run / "data" / "synthetic") / "val"
    root = run / "exps" / "demo_static" / "data"
    dst = root / "val"
    dst.mkdir(parents=True, exist_ok=True)
    def pans(i: int, clip: Path) -> bool:
        try:
            return clip_pans(clip)
        except KeyError:  # masks written before the camera flag was stored: render the clip again
            from autogaze.datasets.synthetic import World, clip_seed, render_clip

            world = World(pan_fraction=settings.get("pan_fraction", World.pan_fraction))
            return render_clip(2, 16, clip_seed(settings.get("seed", 0), "val", i), world).pans

    for i, clip in enumerate(sorted(val.glob("*.mp4"))):
        if not pans(i, clip):
            for f in (clip, masks_path(clip)):
                if not (dst / f.name).exists():
                    (dst / f.name).symlink_to(f.resolve())
    return root


def evaluate_into(run: Path, sub: str, models: list[str], data_root: Path | None = None, frame_weights=None) -> None:
    """``autogaze.evaluate`` of ``models`` into exps/<sub>/, with random's loss at 0.2 (same split) as threshold."""
    out = run / "exps" / sub
    if (out / "loss_vs_ratio.csv").is_file():
        return
    from autogaze.evaluate import evaluate_models

    config = run / "exps" / "demo_mae" / "config.yaml"
    kw = dict(data_root=None if data_root is None else str(data_root), frame_weights=frame_weights, log=lambda *_: None)
    rnd, _ = evaluate_models(["random"], config, ratios=[0.2], **kw)
    evaluate_models(models, config, ratios=RATIOS, thresholds=[round(rnd[0]["loss"], 4)], out=out, **kw)


def extra_evaluations(run: Path) -> None:
    e = run / "exps"
    gazers = [f"ntp={e / 'demo_ntp'}", f"ntp_rl={e / 'demo_grpo'}"]
    static = static_clips(run)
    evaluate_into(run, "demo_static", gazers + ["random", "framediff"], static)
    evaluate_into(run, "demo_static_split", gazers + ["random", "framediff"], static, SPLIT)
    evaluate_into(run, "demo_split", [f"untrained=untrained:{e / 'demo_ntp'}", *gazers, f"rl_only={e / 'demo_rl_only'}",
                                      "random", "grid", "framediff"], frame_weights=SPLIT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished demo roots, one per seed")
    p.add_argument("--no-extra", action="store_true",
                   help="only what the demo wrote: skip the static-camera and 10:3 evaluations (their tables show n/a)")
    a = p.parse_args()
    for run in a.runs:
        if not a.no_extra:
            extra_evaluations(run)
    n = len(a.runs)
    lines = [f"Mean ± std over {n} seed(s): {', '.join(str(r) for r in a.runs)}.", "",
             "### The MAE's reward range (64 synthetic val clips)", *reward_range_table(a.runs), "",
             "### Held-out loss against gazing ratio (64 synthetic val clips)", *loss_table(a.runs, "demo_curves"), "",
             "### Patches needed to reach random's loss at ratio 0.2", *reach_table(a.runs, "demo_curves"), "",
             "### NTP against its greedy labels (first 16 val clips)", *gap_table(a.runs), "",
             "### Imitation of the val clips' greedy labels",
             *simple_table(a.runs, "exps/demo_curves/imitation.csv", ("model",),
                           ("top1", "jaccard", "first_frame_jaccard", "later_frames_jaccard")), "",
             "### Static-camera val clips only", *loss_table(a.runs, "demo_static", ("ntp", "ntp_rl", "random", "framediff")), "",
             "### Budgets split over frames 10:3 (the labels' mean split; `--frame-weights 10,3`)",
             *loss_table(a.runs, "demo_split"), "", *reach_table(a.runs, "demo_split"), "",
             "Static-camera val clips only, split 10:3:", "",
             *loss_table(a.runs, "demo_static_split", ("ntp", "ntp_rl", "random", "framediff")), "",
             "### Adaptive stopping (cap 0.75, stop at predicted loss <= tau)",
             *simple_table(a.runs, "exps/demo_adaptive/adaptive.csv", ("model", "tau"),
                           ("gazing_ratio", "loss", "random_loss", "calibration")), "",
             "Patches needed to reach random's loss at ratio 0.2 when each frame stops at the model's own",
             "predicted loss (the tau sweep above, as a curve against the ratio gazed):", "",
             *adaptive_reach_table(a.runs), "",
             "### Real clips (46 clips from 4 videos)", *loss_table(a.runs, "demo_real"), "",
             *reach_table(a.runs, "demo_real")]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
