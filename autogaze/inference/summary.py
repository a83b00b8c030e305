"""PNG summary of a GazeResult: gazes per frame (stacked by scale) and the share of patches kept
per scale. matplotlib with the Agg backend (no display needed), colours as in the overlay."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the CLI runs on servers; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from autogaze.inference.overlay import scale_colour  # noqa: E402
from autogaze.inference.result import GazeResult  # noqa: E402


def per_frame_scale_counts(result: GazeResult) -> np.ndarray:
    """int64 [F, S]: real gazes of each frame at each scale."""
    S = len(result.token_space.scales)
    out = np.zeros((result.num_frames, S), np.int64)
    np.add.at(out, (result.frame, result.scale), 1)
    return out


def save_summary(result: GazeResult, path: str | Path) -> Path:
    """Write the two-panel summary figure to ``path`` (PNG)."""
    path = Path(path)
    scales = list(result.token_space.scales)
    colours = [scale_colour(k) / 255 for k in range(len(scales))]
    per_frame = per_frame_scale_counts(result)  # [F, S]
    fig, (ax_f, ax_s) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw=dict(width_ratios=[3, 1]))

    frames = np.arange(result.num_frames)
    bottom = np.zeros(result.num_frames)
    for k, s in enumerate(scales):
        ax_f.bar(frames, per_frame[:, k], bottom=bottom, width=1.0, color=colours[k], label=f"{s}px")
        bottom += per_frame[:, k]
    for c in range(result.chunk_size, result.num_frames, result.chunk_size):  # chunks share no context
        ax_f.axvline(c - 0.5, color="grey", lw=0.8, ls="--")
    ax_f.set(xlabel="frame", ylabel="gazes", xlim=(-0.5, max(result.num_frames, 1) - 0.5),
             title=f"gazes per frame ({result.counts.sum()} in {result.num_frames} frames; "
                   f"dashed = {result.chunk_size}-frame chunk boundaries)")
    ax_f.legend(title="scale", fontsize=8)

    kept = 100 * result.kept_per_scale()
    bars = ax_s.bar([f"{s}px" for s in scales], kept, color=colours)
    ax_s.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax_s.set(ylabel="% of patches kept", ylim=(0, max(100.0, float(kept.max(initial=0)) * 1.1)),
             title=f"kept per scale (all: {100 * result.meta()['kept_ratio']:.1f}%)")
    fig.suptitle(Path(result.video.path).name, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
