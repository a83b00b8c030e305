"""Object metrics of the slot attention task on a batch: ground truth for a batch's clips, FG-ARI and
persistence of a SlotState, a k-means baseline on the tower's features, gazes at a fixed ratio, and a
paired bootstrap over clips. Used by scripts/slot_study.py; tested in tests/test_slot_eval.py.

    true = batch_object_ids(batch.paths, T, S)              # [B, T, S, S] object ids, 0 = background
    state = task.slots(batch.video_for_task, gazes)         # SlotState, masks [B, T, K, Pf]
    ari = state_fg_ari(state, true)                         # [B] video FG-ARI, background ignored
    km = kmeans_masks(task.features(vft)[:, :, -Pf:], K, generator=g)   # [B, T, K, Pf] one-hot
    diff, lo, hi = paired_bootstrap_ci(ari_learned, ari_random)         # mean and 95% CI over clips

Scoring happens on the task's pixel grid (S x S, the frames the task saw): the predicted slot masks live
on the coarse finest-scale patch grid and are upsampled (``masks_to_labels``, nearest), while the truth
keeps its pixel detail. Downsampling the truth to the patch grid instead would hide every error the
patch grid makes at object borders, and would have to pick one id for a patch holding several.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from autogaze.evaluation.object_metrics import masks_to_labels, slot_persistence, video_fg_ari
from autogaze.types import Batch, Gazes

if TYPE_CHECKING:
    from autogaze.interfaces import GazeModel
    from autogaze.tasks.slot_attention import SlotState


# ---------------------------------------------------------------------------------- ground truth
def clip_object_ids(video_path: str, num_frames: int, size: int) -> Tensor:
    """The object ids stored beside one synthetic clip -> LongTensor [T, size, size] (0 = background).

    The first ``num_frames`` frames are kept (the val loader reads each clip from its start, no
    random window), the largest centred square is cut and resized with nearest neighbours: the
    dataset's own geometry (transforms.center_square, then a resize to the task's side), so ids and
    pixels stay aligned. Nearest keeps ids whole; an interpolated id would be a different object."""
    from autogaze.datasets.synthetic import load_masks
    from autogaze.datasets.transforms import center_square

    masks = torch.from_numpy(np.asarray(load_masks(video_path)))  # uint8 [T0, H, W]
    if masks.shape[0] < num_frames:
        raise ValueError(f"{video_path}: masks cover {masks.shape[0]} frames, the clip has {num_frames}")
    masks = center_square(masks[:num_frames])
    if masks.shape[-1] != size:
        masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0]
    return masks.long()


def batch_object_ids(paths: Sequence[str], num_frames: int, size: int) -> Tensor:
    """One :func:`clip_object_ids` per path -> LongTensor [B, T, size, size]."""
    return torch.stack([clip_object_ids(p, num_frames, size) for p in paths])


# ---------------------------------------------------------------------------------- metrics
def labels_from_masks(masks: Tensor, true_ids: Tensor) -> Tensor:
    """Slot masks [B, T, K, Pf] (finest patch grid) -> slot ids [B, T, H, W] on the truth's pixel grid."""
    return masks_to_labels(masks, tuple(true_ids.shape[-2:]))


def masks_fg_ari(masks: Tensor, true_ids: Tensor) -> Tensor:
    """masks [B, T, K, Pf], true_ids [B, T, H, W] -> video FG-ARI per clip [B] (float64; NaN: < 2 fg pixels)."""
    return video_fg_ari(true_ids, labels_from_masks(masks, true_ids))


def masks_persistence(masks: Tensor, true_ids: Tensor) -> Tensor:
    """masks [B, T, K, Pf], true_ids [B, T, H, W] -> slot-identity persistence per clip [B] (float64)."""
    return slot_persistence(true_ids, labels_from_masks(masks, true_ids))


def num_objects(true_ids: Tensor) -> Tensor:
    """true_ids [B, T, H, W] -> LongTensor [B]: distinct non-zero object ids of each clip.

    Needed to read FG-ARI: on a clip with one object it can only be 1 (one slot holds the object in every
    frame) or 0, so a model that merges all foreground into one slot scores 1 there; clips with >= 2
    objects are the ones where FG-ARI measures separating objects."""
    return torch.stack([(t.unique() != 0).sum() for t in true_ids])


def foreground_slots(masks: Tensor, true_ids: Tensor) -> Tensor:
    """masks [B, T, K, Pf], true_ids [B, T, H, W] -> LongTensor [B]: distinct slots that win a foreground pixel
    of the clip (1 = the foreground collapsed onto one slot)."""
    pred = labels_from_masks(masks, true_ids)
    return torch.tensor([p[t != 0].unique().numel() for p, t in zip(pred, true_ids)], dtype=torch.long)


def state_fg_ari(state: SlotState, true_ids: Tensor) -> Tensor:
    """A task's SlotState (``masks`` [B, T, K, Pf]) -> FG-ARI per clip [B]: the decoder's masks at every
    finest position, gazed or not, so a sparse gaze is scored on the whole frame."""
    return masks_fg_ari(state.masks, true_ids)


# ---------------------------------------------------------------------------------- k-means baseline
def kmeans(points: Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on points [N, D] -> (labels [N] long, centroids [k, D]).

    k-means++ seeding from ``generator`` (deterministic for a seeded one), then at most ``iters``
    assignment / mean steps (stops once the labels settle). A cluster left empty keeps its centroid, so
    labels stay in [0, k); fewer distinct points than k leaves clusters empty, which ARI does not mind."""
    x = points.double()                             # float64: exact ties on duplicated points
    N = x.shape[0]
    if N == 0 or k < 1:
        raise ValueError(f"k-means needs points and k >= 1 (got {N} points, k={k})")
    first = int(torch.randint(N, (1,), generator=generator))
    centroids = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)               # [N] squared distance to the nearest chosen centroid
    for _ in range(1, k):
        # Sample proportional to d2 (k-means++); all points on chosen centroids -> uniform draw.
        w = d2 if float(d2.sum()) > 0 else torch.ones_like(d2)
        j = int(torch.multinomial(w, 1, generator=generator))
        centroids.append(x[j])
        d2 = torch.minimum(d2, ((x - x[j]) ** 2).sum(1))
    c = torch.stack(centroids)                      # [k, D]
    labels = torch.cdist(x, c).argmin(1)
    for _ in range(iters):
        onehot = F.one_hot(labels, k).double()      # [N, k]
        counts = onehot.sum(0)                      # [k]
        sums = onehot.t() @ x                       # [k, D]
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, c.to(points.dtype)


def kmeans_masks(features: Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """features [B, T, Pf, Df] (the tower's finest-scale rows) -> one-hot masks [B, T, k, Pf].

    One k-means per clip over all its T * Pf positions at once, so a cluster is one id across frames,
    as a slot is; the masks have the decoder's layout, so the same FG-ARI code scores both."""
    B, T, Pf, Df = features.shape
    out = features.new_zeros(B, T, k, Pf)
    for b in range(B):
        labels, _ = kmeans(features[b].reshape(T * Pf, Df), k, iters, generator)
        out[b] = F.one_hot(labels, k).view(T, Pf, k).permute(0, 2, 1).to(out.dtype)
    return out


# ---------------------------------------------------------------------------------- gazes and batches
@torch.no_grad()
def gazes_at_ratio(gaze_model: GazeModel, video: Tensor, ratio: float,
                   generator: torch.Generator | None = None) -> Gazes:
    """Greedy gazes of ``gaze_model`` (eval mode) for video [B, T, 3, H, W] -> Gazes [B, N].

    The budget comes from an explicit ratio: ``max(int(ratio * P), 1)`` gazes in every frame and no
    task-loss requirement, so no model stops early (as in autogaze.evaluate) and all compare at the same
    per-frame budget."""
    budget = gaze_model.sample_budget(video, training=False, gazing_ratio=ratio)
    if budget.task_loss_requirement is not None:  # a guard: an explicit ratio must not bring a tau
        raise ValueError("an explicit-ratio budget came with a task-loss requirement (early stop)")
    return gaze_model.generate(video, budget, generator=generator).gazes


def take_clips(batches: Iterable[Batch], n: int | None) -> Iterator[Batch]:
    """The first ``n`` clips of ``batches`` (None = all), the last batch trimmed; empty batches skipped."""
    seen = 0
    for batch in batches:
        if n is not None and seen >= n:
            return
        B = batch.batch_size
        if B == 0:
            continue
        keep = B if n is None else min(B, n - seen)
        if keep < B:
            batch = replace(batch.map(lambda t: t[:keep]), paths=list(batch.paths[:keep]))
        seen += keep
        yield batch


# ---------------------------------------------------------------------------------- statistics
def paired_bootstrap_ci(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor, n_boot: int = 10000,
                        level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Per-clip scores a [M], b [M] of two methods on the same clips -> (mean(a - b), lo, hi).

    Clips are resampled with replacement and the same draw is used for both methods (paired), so
    the interval reflects the spread of the per-clip differences, not of each method's scores;
    percentile interval at ``level``. Clips where either score is NaN are left out; none left -> NaNs."""
    d = torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)
    d = d[~torch.isnan(d)]
    if d.numel() == 0:
        return math.nan, math.nan, math.nan
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(d.numel(), (n_boot, d.numel()), generator=g)
    means = d[idx].mean(1)                           # [n_boot]
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return float(d.mean()), float(lo), float(hi)


def nanmean(values: Sequence[float] | Tensor) -> float:
    """Mean over the non-NaN entries (NaN when none)."""
    t = torch.as_tensor(values, dtype=torch.float64)
    t = t[~torch.isnan(t)]
    return float(t.mean()) if t.numel() else math.nan


def is_monotone(values: Sequence[float], tol: float = 0.0) -> bool:
    """True when ``values`` never drops by more than ``tol`` from one entry to the next."""
    return all(b >= a - tol for a, b in zip(values, values[1:]))
