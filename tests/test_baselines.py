"""Baseline gaze models: budgets, no repeats, and each baseline's own rule."""
import pytest
import torch

from autogaze.models.autogaze.token_space import TokenSpace
from autogaze.models.baselines import FrameDiffGaze, FullGaze, GridGaze, RandomGaze, coverage_scores
from autogaze.types import Budget

CFG = {"scales": "32+64+112+224", "num_vision_tokens_each_frame": 265, "max_num_frames": 3}


@pytest.mark.parametrize("cls", [RandomGaze, GridGaze, FrameDiffGaze])
def test_budget_respected_and_no_repeats(cls):
    model = cls.from_config(CFG)
    video = torch.rand(2, 3, 3, 64, 64)
    caps = torch.tensor([[5, 1, 26], [3, 7, 2]])
    g = model.generate(video, Budget(caps), generator=torch.Generator().manual_seed(0)).gazes
    assert g.num_per_frame.tolist() == [5, 7, 26]
    mask = g.to_mask()                                           # [B, T, P]
    assert torch.equal(mask.sum(-1).long(), caps)                # exactly the budget, all distinct
    assert torch.equal(g.frame_index()[None].expand_as(g.ids), g.ids // 265)  # ids stay in their frame


def test_sample_budget_fixed_ratio_and_groups():
    model = RandomGaze.from_config({**CFG, "gazing_ratio_config": {"sample_strategy_during_inference": "fixed",
                                                                  "fixed": {"gazing_ratio": 0.1}}})
    b = model.sample_budget(torch.zeros(4, 3, 3, 8, 8), training=False, group_size=2)
    assert b.max_gazes.tolist() == [[26] * 3] * 4 and b.task_loss_requirement is None


def test_self_split_rejected():
    with pytest.raises(Exception, match="self"):
        RandomGaze.from_config({**CFG, "gazing_ratio_each_frame_config": {"sample_strategy_during_training": "self"}})


def test_grid_covers_coarse_scales_first():
    g = GridGaze.from_config(CFG).generate(torch.zeros(1, 1, 3, 32, 32), Budget(torch.tensor([[20]]))).gazes
    assert sorted(g.ids[0].tolist()) == list(range(20))          # all of 32px (4) and 64px (16)


SMALL = {"scales": "32+64", "num_vision_tokens_each_frame": 20, "max_num_frames": 4}  # 4 coarse + 16 finest


def test_framediff_covers_patches_not_gazed_yet_first():
    video = torch.zeros(1, 3, 3, 224, 224)                       # nothing changes
    budget = Budget(torch.tensor([[5, 5, 5]]))
    fd = FrameDiffGaze.from_config(CFG).generate(video, budget).gazes
    order = coverage_scores(TokenSpace((32, 64, 112, 224), 16), finest_first=True).argsort(descending=True)
    local = fd.local_ids()[0]
    # frame 0: the coverage order, finest scale first (an even stride over it); then the patches never
    # gazed, in the same order
    assert order[:3].tolist() == [69, 73, 77] and local[:5].tolist() == order[:5].tolist()
    assert local[5:10].tolist() == order[5:10].tolist() and local[10:].tolist() == order[10:15].tolist()


def test_framediff_unseen_patches_come_before_changed_ones():
    video = torch.zeros(1, 2, 3, 64, 64)
    video[0, 1, :, 0:16, 0:16] = 1.0                             # finest (0, 0) changes, but it was gazed in frame 0
    g = FrameDiffGaze.from_config(SMALL).generate(video, Budget(torch.tensor([[2, 2]]))).gazes
    local = g.local_ids()[0].tolist()
    assert local[0] == 4 and 4 not in local[2:]                  # frame 1 covers new ground instead


def test_framediff_refreshes_what_changed_once_everything_was_seen():
    video = torch.zeros(1, 3, 3, 64, 64)
    video[0, 1:, :, 32:48, 16:32] = 1.0                          # finest row 2, col 1 changes in frame 1
    g = FrameDiffGaze.from_config(SMALL).generate(video, Budget(torch.tensor([[16, 1, 1]]))).gazes
    local = g.local_ids()[0].tolist()
    assert sorted(local[:16]) == list(range(4, 20))              # frame 0: every finest patch
    assert local[16] == 4 + 2 * 4 + 1                            # frame 1: the changed one
    assert local[17] < 4                                         # frame 2: nothing stale; the oldest (a coarse patch never gazed)


def test_framediff_compares_with_the_copy_it_last_gazed():
    video = torch.zeros(1, 3, 3, 64, 64)
    video[0, 1:, :, 0:16, 0:16] = 1.0                            # a large change at finest (0, 0)
    video[0, 1:, :, 48:64, 48:64] = 0.5                          # a smaller one at finest (3, 3)
    g = FrameDiffGaze.from_config(SMALL).generate(video, Budget(torch.tensor([[16, 1, 1]]))).gazes
    local = g.local_ids()[0].tolist()
    # frame 1 takes the larger change; frame 2 equals frame 1, yet (3, 3) still differs from what was
    # gazed in frame 0, so it comes before the merely old patches
    assert local[16:] == [4, 4 + 3 * 4 + 3]


def test_full_takes_everything():
    g = FullGaze.from_config(CFG).generate(torch.zeros(1, 2, 3, 32, 32), Budget(torch.tensor([[1, 1]]))).gazes
    assert g.to_mask().sum().item() == 2 * 265
