"""What ``python -m autogaze.evaluate`` writes: the loss-vs-ratio CSV and plot, the ratio-to-reach
CSV, and a plain-text table. Rows are dicts so the demo can reuse them."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

#: Columns of loss_vs_ratio.csv: the model, the ratio asked for, the ratio actually gazed (real
#: gazes / (T * P); lower when ``int(ratio * P)`` rounds down), the mean loss and the clip count.
CURVE_COLUMNS = ("model", "split", "ratio", "gazing_ratio", "loss", "clips")
REACH_COLUMNS = ("model", "threshold", "ratio_to_reach")


def write_csv(rows: Sequence[dict], columns: Sequence[str], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def format_reach(value: float | None, max_ratio: float) -> str:
    """A ratio to reach as the table shows it; None (never reached on the grid) -> '>max'."""
    return f">{max_ratio:g}" if value is None else f"{value:.3f}"


def plot_curves(rows: Sequence[dict], path: str | Path, thresholds: Sequence[float] = (),
                title: str = "") -> Path:
    """One line per model: loss against the gazed ratio; thresholds as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((float(r["gazing_ratio"]), float(r["loss"])) for r in rows if r["model"] == model)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=model)
    for t in thresholds:
        ax.axhline(t, ls="--", lw=0.8, color="grey")
    ax.set_xlabel("gazing ratio (share of patches kept)")
    ax.set_ylabel("reconstruction loss")
    ax.set_title(title or "task loss vs gazing ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(curve: Sequence[dict], reach: Sequence[dict] = ()) -> str:
    """Models as rows; the loss at each asked ratio, then the ratio needed per threshold."""
    ratios = sorted({float(r["ratio"]) for r in curve})
    thresholds = list(dict.fromkeys(float(r["threshold"]) for r in reach))
    head = ["model"] + [f"r={x:g}" for x in ratios] + [f"ratio@{t:g}" for t in thresholds]
    lines = []
    for model in dict.fromkeys(r["model"] for r in curve):
        loss = {float(r["ratio"]): float(r["loss"]) for r in curve if r["model"] == model}
        got = {float(r["threshold"]): r["ratio_to_reach"] for r in reach if r["model"] == model}
        lines.append([model] + [f"{loss[x]:.4f}" if x in loss else "" for x in ratios]
                     + [str(got.get(t, "")) for t in thresholds])
    widths = [max(len(row[i]) for row in [head] + lines) for i in range(len(head))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in lines])
