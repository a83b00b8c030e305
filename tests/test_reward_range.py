"""The reward range of a task (evaluation/reward_range.py): losses with nothing, random and every
patch gazed, on a task whose loss is known in closed form."""
from __future__ import annotations

import pytest
import torch

from autogaze.evaluation.reward_range import (RewardRange, all_gazes, measure_reward_range, no_gazes,
                                              random_gazes)
from autogaze.types import Batch
from tests.doubles import P, DoubleTask


def test_hand_computed_range_of_the_share_task():
    # DoubleTask's loss is 1 - (share of frame 0's patches gazed): nothing -> 1, all -> 0, and
    # int(0.5 * P) random patches -> 1 - 0.5 (4 of P = 8 patches).
    video = torch.zeros(3, 2, 3, 8, 8)
    batches = [Batch(video, video, ["a", "b", "c"])]
    rr = measure_reward_range(DoubleTask(), batches, tokens_per_frame=P, ratio=0.5)
    assert (rr.none, rr.random, rr.full, rr.clips) == (1.0, 0.5, 0.0, 3)
    assert rr.gaze_share == 1.0 and rr.random_share == 0.5 and rr.headroom == 1.0
    assert "remove 100% of the loss" in rr.describe()


def test_gaze_sets_are_what_they_say():
    dev = torch.device("cpu")
    none, full = no_gazes(2, 3, 5, dev), all_gazes(2, 3, 5, dev)
    assert none.to_mask().sum() == 0 and full.to_mask().eq(1).all()
    rnd = random_gazes(2, 3, 5, 2, torch.Generator().manual_seed(0), dev)
    mask = rnd.to_mask()
    assert mask.sum(-1).eq(2).all() and not rnd.is_padded.any()  # 2 distinct patches in every frame


def test_shares_from_the_three_losses():
    rr = RewardRange(none=1.0, random=0.8, full=0.6, ratio=0.2, clips=4)
    assert rr.gaze_share == pytest.approx(0.4) and rr.random_share == pytest.approx(0.5)
    assert rr.headroom == pytest.approx(0.25)  # (0.8 - 0.6) / 0.8
    assert rr.as_dict()["gaze_share"] == pytest.approx(0.4)
