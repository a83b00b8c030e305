"""autogaze/evaluation/slots.py: ground truth for a batch, FG-ARI of slot masks, the k-means baseline, gazes at
a fixed ratio, clip trimming and the paired bootstrap, on hand cases and a tiny synthetic dataset (seconds)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autogaze.datasets.synthetic import load_masks, make_synthetic_dataset
from autogaze.evaluation.slots import (batch_object_ids, clip_object_ids, foreground_slots, gazes_at_ratio,
                                       is_monotone, kmeans, kmeans_masks, masks_fg_ari, masks_persistence, nanmean,
                                       num_objects, paired_bootstrap_ci, state_fg_ari, take_clips)
from autogaze.tasks.slot_attention import SlotState
from autogaze.types import Batch


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """2 val clips of 3 frames at 32 px (and 1 train clip: make_synthetic_dataset writes both splits)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn"), n_train=1, n_val=2, num_frames=3, size=32, seed=0)


def one_hot_masks(ids: torch.Tensor, k: int) -> torch.Tensor:
    """Slot ids [B, T, G, G] -> masks [B, T, k, G*G] (1 on the slot of each position)."""
    B, T, G, _ = ids.shape
    return torch.nn.functional.one_hot(ids.reshape(B, T, G * G), k).permute(0, 1, 3, 2).float()


# ---------------------------------------------------------------------------------- ground truth
def test_clip_ids_are_the_stored_masks_and_resize_by_nearest(tiny_data):
    path = str(tiny_data / "val" / "clip_00000.mp4")
    stored = torch.from_numpy(np.asarray(load_masks(path))).long()            # [3, 32, 32]
    assert torch.equal(clip_object_ids(path, 3, 32), stored)
    assert torch.equal(clip_object_ids(path, 2, 32), stored[:2])              # the first T frames
    # nearest at half size reads every second pixel: ids stay ids (no blend of two objects)
    assert torch.equal(clip_object_ids(path, 3, 16), stored[:, ::2, ::2])
    assert set(clip_object_ids(path, 3, 48).unique().tolist()) <= set(stored.unique().tolist())
    with pytest.raises(ValueError, match="frames"):
        clip_object_ids(path, 4, 32)


def test_batch_ids_follow_a_loader_batch(tiny_data):
    from torch.utils.data import DataLoader

    from autogaze.datasets.video_folder import VideoFolder

    data = VideoFolder.from_config({"root": str(tiny_data), "clip_len": 3}, split="val", size=32)
    batch = next(iter(DataLoader(data, batch_size=2, collate_fn=data.collate)))
    ids = batch_object_ids(batch.paths, batch.video_for_task.shape[1], batch.video_for_task.shape[-1])
    assert ids.shape == (2, 3, 32, 32) and ids.dtype == torch.long
    for b, p in enumerate(batch.paths):
        assert torch.equal(ids[b], torch.from_numpy(np.asarray(load_masks(p))).long())
    assert bool((ids > 0).any()) and bool((ids == 0).any())                    # objects and background


def test_masks_are_centre_cropped_like_the_frames(tmp_path, monkeypatch):
    """A non-square [1, 4, 8] mask keeps its centred 4 x 4 square, as transforms.center_square does."""
    m = np.zeros((1, 4, 8), np.uint8)
    m[0, :, 2:6] = np.arange(16).reshape(4, 4)
    monkeypatch.setattr("autogaze.datasets.synthetic.load_masks", lambda path: m)
    assert torch.equal(clip_object_ids("any.mp4", 1, 4)[0], torch.arange(16).reshape(4, 4))


# ---------------------------------------------------------------------------------- metrics of masks
def test_fg_ari_of_patch_masks_scored_on_pixels():
    # truth on 4 x 4 pixels, 2 frames: object 1 in the left half, object 2 top-right, background bottom-right
    truth = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    truth[..., :, :2] = 1
    truth[..., :2, 2:] = 2
    # slots on a 2 x 2 patch grid: each patch is 2 x 2 pixels
    right = torch.tensor([[[[3, 0], [3, 1]]] * 2])                             # [1, 2, 2, 2], slot ids
    assert float(masks_fg_ari(one_hot_masks(right, 4), truth)[0]) == 1.0       # bottom-right slot is background
    state = SlotState(slots=torch.zeros(1, 2, 4, 1), attn=torch.zeros(1, 1, 4), masks=one_hot_masks(right, 4),
                      recon=torch.zeros(1, 2, 4, 1))
    assert float(state_fg_ari(state, truth)[0]) == 1.0
    merged = torch.zeros(1, 2, 2, 2, dtype=torch.long)                         # one slot for everything
    assert float(masks_fg_ari(one_hot_masks(merged, 4), truth)[0]) == 0.0
    swapped = right.clone()
    swapped[0, 1] = torch.tensor([[0, 3], [0, 1]])                              # frame 1: objects swap slots
    assert float(masks_fg_ari(one_hot_masks(swapped, 4), truth)[0]) < 0
    assert float(masks_persistence(one_hot_masks(right, 4), truth)[0]) == 1.0
    assert float(masks_persistence(one_hot_masks(swapped, 4), truth)[0]) == 0.5
    assert foreground_slots(one_hot_masks(right, 4), truth).tolist() == [2]
    assert foreground_slots(one_hot_masks(merged, 4), truth).tolist() == [1]


def test_one_object_clips_reward_merging_everything():
    """FG-ARI's blind spot that the study reports around: one object -> 1 for a single slot, 0 once split."""
    truth = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    truth[0, :, :2, :2] = 1                                                    # clip 0: one object
    truth[1, :, :2, :2], truth[1, :, 2:, 2:] = 1, 2                            # clip 1: two objects
    assert num_objects(truth).tolist() == [1, 2]
    merged = one_hot_masks(torch.zeros(2, 1, 2, 2, dtype=torch.long), 2)
    assert masks_fg_ari(merged, truth).tolist() == [1.0, 0.0]
    split = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    split[..., 0, :] = 1                                                       # the object's top row: another slot
    up = torch.nn.functional.one_hot(split.reshape(2, 1, 16), 2).permute(0, 1, 3, 2).float()   # a 4 x 4 grid
    assert masks_fg_ari(up, truth)[0] == 0.0


# ---------------------------------------------------------------------------------- k-means
def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """3 tight blobs of 10 points far apart in 4-d -> points [30, 4], blob ids [30]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 10, 0]])
    ids = torch.arange(3).repeat_interleave(10)
    return centres[ids] + 0.1 * torch.randn(30, 4, generator=g), ids


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to relabelling: a <-> b is a bijection on the labels used."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_finds_separable_blobs_for_every_seed():
    x, ids = blobs()
    for seed in range(5):
        labels, centroids = kmeans(x, 3, iters=5, generator=torch.Generator().manual_seed(seed))
        assert same_partition(labels, ids)
        assert centroids.shape == (3, 4) and centroids.dtype == x.dtype
        for c in range(3):                                         # each centroid is its blob's mean
            assert torch.allclose(centroids[labels[c * 10]], x[ids == c].mean(0), atol=1e-5)


def test_kmeans_is_seeded_and_survives_more_clusters_than_points():
    x, _ = blobs()
    a = kmeans(x, 3, generator=torch.Generator().manual_seed(7))[0]
    b = kmeans(x, 3, generator=torch.Generator().manual_seed(7))[0]
    assert torch.equal(a, b)
    two = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])                  # 2 distinct points, k = 5
    labels, _ = kmeans(two, 5, generator=torch.Generator().manual_seed(0))
    assert labels[0] == labels[1] != labels[2] and int(labels.max()) < 5
    with pytest.raises(ValueError):
        kmeans(torch.zeros(0, 2), 2)


def test_kmeans_masks_one_id_across_frames():
    """Features that are exactly the truth's object id per position -> k-means masks score FG-ARI 1, and one
    cluster keeps its object over both frames (persistence 1)."""
    ids = torch.tensor([[[[0, 1], [2, 2]], [[1, 0], [2, 2]]]])                 # [1, 2, 2, 2] objects move
    feats = torch.nn.functional.one_hot(ids.reshape(1, 2, 4), 3).float() * 5   # [1, T=2, Pf=4, Df=3]
    masks = kmeans_masks(feats, 3, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (1, 2, 3, 4) and torch.equal(masks.sum(2), torch.ones(1, 2, 4))
    truth = ids.repeat_interleave(2, -1).repeat_interleave(2, -2)               # [1, 2, 4, 4] pixels
    assert float(masks_fg_ari(masks, truth)[0]) == 1.0
    assert float(masks_persistence(masks, truth)[0]) == 1.0


# ---------------------------------------------------------------------------------- gazes and clips
def test_gazes_at_ratio_fill_equal_budgets_without_early_stop():
    from autogaze.models.autogaze import AutoGaze
    from autogaze.models.autogaze.config import tiny_config
    from autogaze.models.baselines import RandomGaze

    video = torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rnd = RandomGaze.from_config({"scales": "32+64", "num_vision_tokens_each_frame": 20})
    g = gazes_at_ratio(rnd, video, 0.3, torch.Generator().manual_seed(0))
    assert g.num_per_frame.tolist() == [6, 6] and not bool(g.is_padded.any())
    assert torch.allclose(g.real_ratio(), torch.full((2,), 0.3))
    torch.manual_seed(0)
    # an AutoGaze whose config asks for early stopping at inference: an explicit ratio must override it
    ag = AutoGaze(tiny_config(has_task_loss_requirement_during_inference=True)).eval()
    g = gazes_at_ratio(ag, video, 0.3)
    assert g.num_per_frame.tolist() == [6, 6] and not bool(g.is_padded.any())


def test_take_clips_trims_the_last_batch():
    def batch(n: int, start: int) -> Batch:
        v = torch.arange(start, start + n).float().view(n, 1, 1, 1, 1)
        return Batch(video=v, video_for_task=v, paths=[f"c{start + i}" for i in range(n)])

    batches = [batch(3, 0), batch(0, 3), batch(3, 3), batch(3, 6)]
    got = list(take_clips(batches, 5))
    assert [b.paths for b in got] == [["c0", "c1", "c2"], ["c3", "c4"]]
    assert got[1].video.shape[0] == 2 and got[1].video_for_task is got[1].video   # shared tensors stay shared
    assert sum(b.batch_size for b in take_clips(batches, None)) == 9


# ---------------------------------------------------------------------------------- statistics
def test_paired_bootstrap():
    a = torch.tensor([0.5, 0.6, 0.7, 0.8])
    assert paired_bootstrap_ci(a, a - 0.1) == pytest.approx((0.1, 0.1, 0.1))      # a constant difference
    a2, b2 = torch.tensor([1.0, 0.0, float("nan"), 0.5]), torch.tensor([0.0, 0.0, 0.3, 0.5])
    mean, lo, hi = paired_bootstrap_ci(a2, b2, n_boot=2000, seed=3)
    assert mean == pytest.approx(1 / 3) and 0.0 <= lo <= mean <= hi <= 1.0         # the NaN clip left out
    assert paired_bootstrap_ci(a2, b2, n_boot=2000, seed=3) == (mean, lo, hi)      # seeded
    assert all(math.isnan(v) for v in paired_bootstrap_ci([float("nan")], [0.0]))


def test_small_helpers():
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0 and math.isnan(nanmean([float("nan")]))
    assert is_monotone([0.1, 0.2, 0.2, 0.4]) and not is_monotone([0.1, 0.3, 0.2])
    assert is_monotone([0.1, 0.3, 0.29], tol=0.02)
