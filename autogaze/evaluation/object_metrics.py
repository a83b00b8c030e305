"""Object metrics of slot masks against ground-truth object ids: video FG-ARI and slot-identity persistence.

* Video FG-ARI: the adjusted Rand index (Hubert & Arabie 1985) between the true object ids and the
  predicted slot ids over every (frame, pixel) of a clip at once, background pixels left out. Scoring the
  whole clip as one partition (rather than frame by frame) also penalises a slot that swaps objects
  between frames, as the video ARI of the object-centric video papers does (e.g. SlotContrast,
  Manasyan et al. 2024).
* Slot-identity persistence: for each object, the share of the frames it appears in whose majority slot
  (the most frequent predicted slot over its pixels) is the object's most common majority slot.

Predicted masks live on the finest patch grid ([B, T, K, G*G]); ``masks_to_labels`` resizes them to the
pixel grid and takes the argmax over slots. Pure torch, no sklearn; hand-checked in tests/test_slot_task.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masks_to_labels(masks: Tensor, size: tuple[int, int], mode: str = "nearest") -> Tensor:
    """masks [B, T, K, G*G] (scores per slot on the G x G finest grid) -> slot ids [B, T, H, W] (long).

    ``mode`` is F.interpolate's: "nearest" gives every pixel its patch's slot; "bilinear" smooths borders."""
    B, T, K, Pf = masks.shape
    G = int(round(Pf ** 0.5))
    if G * G != Pf:
        raise ValueError(f"masks cover {Pf} positions, not a square grid")
    grid = masks.float().reshape(B * T, K, G, G)
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    up = F.interpolate(grid, size=size, mode=mode, **kwargs)     # [B*T, K, H, W]
    return up.argmax(dim=1).view(B, T, *size)


def _pairs(n: Tensor) -> Tensor:
    """n choose 2, elementwise (float64)."""
    return n * (n - 1) / 2


def adjusted_rand_index(true_ids: Tensor, pred_ids: Tensor) -> Tensor:
    """true_ids, pred_ids [M] (any integer labels) -> ARI, a 0-d float64 tensor.

    ARI = (sum_ij C(n_ij,2) - E) / (max_term - E), E = sum_i C(a_i,2) sum_j C(b_j,2) / C(M,2), max_term =
    (sum_i C(a_i,2) + sum_j C(b_j,2)) / 2, from the contingency table n_ij of the two labelings. The
    denominator is 0 only when both labelings are one cluster or both all singletons, i.e. identical
    partitions: then ARI = 1 (sklearn's convention). M < 2 gives NaN (no pairs to compare)."""
    if true_ids.numel() < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    _, t = true_ids.flatten().unique(return_inverse=True)
    _, p = pred_ids.flatten().unique(return_inverse=True)
    n_pred = int(p.max()) + 1
    table = torch.bincount(t * n_pred + p, minlength=(int(t.max()) + 1) * n_pred).double()
    table = table.view(-1, n_pred)                                   # [true clusters, predicted clusters]
    index = _pairs(table).sum()
    rows, cols = _pairs(table.sum(1)).sum(), _pairs(table.sum(0)).sum()
    expected = rows * cols / _pairs(torch.tensor(float(true_ids.numel()), dtype=torch.float64))
    max_index = (rows + cols) / 2
    if max_index == expected:
        return torch.tensor(1.0, dtype=torch.float64)
    return (index - expected) / (max_index - expected)


def video_fg_ari(true_ids: Tensor, pred_ids: Tensor) -> Tensor:
    """true_ids [B, T, H, W] (0 = background), pred_ids [B, T, H, W] slot ids -> FG-ARI per clip [B]
    (float64), over all foreground (t, pixel) of a clip; NaN for a clip with fewer than 2 foreground pixels."""
    out = []
    for t_ids, p_ids in zip(true_ids, pred_ids):
        fg = t_ids != 0
        out.append(adjusted_rand_index(t_ids[fg], p_ids[fg]))
    return torch.stack(out)


def _mode(x: Tensor) -> tuple[int, int]:
    """x [M] non-negative ints -> (most frequent value, its count); ties go to the smallest value."""
    counts = torch.bincount(x)
    value = int(counts.argmax())  # argmax returns the first maximum: the smallest tied value
    return value, int(counts[value])


def _clip_persistence(true_ids: Tensor, pred_ids: Tensor) -> Tensor:
    """true_ids, pred_ids [T, H, W] of one clip -> the mean share over its objects (NaN: no object)."""
    shares = []
    for obj in true_ids.unique().tolist():
        if obj == 0:
            continue
        majority = [_mode(pred_ids[t][true_ids[t] == obj])[0]  # this frame's majority slot of the object
                    for t in range(true_ids.shape[0]) if bool((true_ids[t] == obj).any())]
        _, agree = _mode(torch.tensor(majority))               # frames that agree with the most common one
        shares.append(agree / len(majority))
    if not shares:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return torch.tensor(shares, dtype=torch.float64).mean()


def slot_persistence(true_ids: Tensor, pred_ids: Tensor) -> Tensor:
    """true_ids [B, T, H, W] (0 = background), pred_ids [B, T, H, W] slot ids (>= 0) -> per clip [B] (float64):
    the mean over the clip's objects of the share of the frames it appears in whose majority slot is its
    most common majority slot; NaN for a clip without objects. Ties (within a frame, and between majority
    slots) go to the lowest slot id."""
    return torch.stack([_clip_persistence(t, p) for t, p in zip(true_ids, pred_ids)])
