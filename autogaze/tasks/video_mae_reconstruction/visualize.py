"""Validation picture of one clip: frames, gazed patches per scale, reconstructions.

Rows: the frames; one row per scale (frame resized to that scale, gazed patches at full brightness,
the rest at 20%, red boxes on gazed patches); the reconstructions (black where a frame was not
rebuilt). First sample only and a low dpi, so the trainer can afford it every N validations.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from autogaze.types import Gazes

from autogaze.utils.normalization import VIVIT

DIM = 0.2  # brightness of patches that were not gazed


def task_to_display(x: Tensor) -> Tensor:
    """Inverse task transform: [..., 3, H, W] -> [..., H, W, 3] in [0, 1]."""
    return VIVIT.to_unit(x).clamp(0, 1).movedim(-3, -1)


@torch.no_grad()
def visualize(video_for_task: Tensor, gazes: Gazes, reconstruction: Tensor, frame_ids: Tensor | Sequence[int],
              path: str | os.PathLike, *, scales: Sequence[int] = (32, 64, 112, 224), patch_size: int = 16) -> str:
    """Write the PNG grid and return its path.

    video_for_task: [T, 3, H, W] (or [B, T, 3, H, W]: sample 0 is drawn), task-normalised.
    gazes:          Gazes of that clip (batch row 0 is drawn).
    reconstruction: [F, 3, S, S] (or [B, F, 3, S, S]) for ``frame_ids`` [F].
    """
    import matplotlib
    matplotlib.use("Agg")  # headless, also on training nodes
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    video = (video_for_task[0] if video_for_task.dim() == 5 else video_for_task).detach().float().cpu()
    recon = (reconstruction[0] if reconstruction.dim() == 5 else reconstruction).detach().float().cpu()
    T = video.shape[0]
    gaze_mask = gazes.map(lambda t: t[:1]).to("cpu").to_mask()[0]  # [T, P]
    frame_ids = [int(f) for f in torch.as_tensor(frame_ids).flatten().tolist()]
    sides = [s // patch_size for s in scales]

    rows = 2 + len(scales)
    fig, axes = plt.subplots(rows, T, figsize=(1.3 * T, 1.3 * rows), dpi=60, squeeze=False)
    for t in range(T):
        axes[0, t].imshow(task_to_display(video[t]).numpy())
        axes[0, t].set_title(f"t={t}", fontsize=7)
    offset = 0
    for i, (s, g) in enumerate(zip(scales, sides)):
        frames = F.interpolate(video, size=(s, s), mode="bicubic", align_corners=False)
        gazed = gaze_mask[:, offset: offset + g * g].view(T, g, g)  # [T, g, g]
        offset += g * g
        pixel_mask = gazed.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)  # [T, s, s]
        shown = task_to_display(frames) * (DIM + (1 - DIM) * pixel_mask)[..., None]
        for t in range(T):
            ax = axes[1 + i, t]
            ax.imshow(shown[t].numpy())
            r, c = gazed[t].nonzero(as_tuple=True)
            boxes = [Rectangle((cc * patch_size - 0.5, rr * patch_size - 0.5), patch_size, patch_size)
                     for rr, cc in zip(r.tolist(), c.tolist())]
            ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="red", linewidth=0.6))
        axes[1 + i, 0].set_ylabel(f"scale {s}", fontsize=7)
    black = torch.zeros_like(task_to_display(recon[0])) if len(recon) else None
    for t in range(T):
        img = task_to_display(recon[frame_ids.index(t)]) if t in frame_ids else black
        if img is not None:
            axes[-1, t].imshow(img.numpy())
    axes[0, 0].set_ylabel("frames", fontsize=7)
    axes[-1, 0].set_ylabel("reconstruction", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(left=0.02, right=0.995, bottom=0.005, top=0.97, wspace=0.03, hspace=0.08)  # tight_layout costs seconds
    path = str(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
