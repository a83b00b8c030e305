"""The token-sampler study's metric functions on hand-built cases (autogaze/evaluation/token_samplers.py)."""
from __future__ import annotations

import math

import torch

from autogaze.evaluation.token_samplers import (box_object_share, masked_error, tubelet_cover,
                                                visible_object_stats)


def test_tubelet_cover_orders_tokens_like_the_tube_mae():
    # 4 frames x 4 x 4 px, patch 2, tubelet 2 -> 2 tube-frames x 2 x 2 = 8 tokens, id = t' 4 + h' 2 + w'.
    objects = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    objects[0, 0:2, 0:2, 2:4] = True           # all of token (t'=0, h'=0, w'=1) -> id 1
    objects[0, 2, 2:4, 0:2] = True             # first frame of token (t'=1, h'=1, w'=0) -> id 6, half
    objects[0, 3, 2, 2] = True                 # one pixel of 8 of token (1, 1, 1) -> id 7
    cover = tubelet_cover(objects, patch=2, tubelet=2)
    assert cover.shape == (1, 8)
    assert torch.allclose(cover[0], torch.tensor([0, 1, 0, 0, 0, 0, 0.5, 0.125]))
    # The tubelets tile the clip, so their mean cover is the object-pixel share.
    assert math.isclose(float(cover.mean()), float(objects.float().mean()), rel_tol=1e-6)


def test_masked_error_averages_only_masked_tokens():
    e = torch.tensor([[0.0, 2.0, 4.0, 0.0], [1.0, 1.0, 1.0, 9.0]])
    target = torch.tensor([[False, True, True, False], [True, True, True, False]])
    assert torch.allclose(masked_error(e, target), torch.tensor([3.0, 1.0]))
    assert masked_error(e, torch.zeros_like(target)).tolist() == [0.0, 0.0]  # nothing masked: no NaN


def test_visible_object_stats_half_rule_and_base_rates():
    cover = torch.tensor([[1.0, 0.5, 0.49, 0.0]])
    visible = torch.tensor([[True, False, True, False]])
    s = visible_object_stats(visible, cover)
    assert math.isclose(float(s["obj_hit"]), 0.5)          # 1.0 counts, 0.49 does not
    assert math.isclose(float(s["obj_hit_base"]), 0.5)     # 1.0 and 0.5 (the threshold is inclusive)
    assert math.isclose(float(s["obj_cover"]), (1.0 + 0.49) / 2, rel_tol=1e-6)
    assert math.isclose(float(s["area_share"]), 1.99 / 4, rel_tol=1e-6)
    # A uniform draw gets the base rates on average: all visible.
    s_all = visible_object_stats(torch.ones_like(visible), cover)
    assert math.isclose(float(s_all["obj_hit"]), float(s_all["obj_hit_base"]), rel_tol=1e-6)
    assert math.isclose(float(s_all["obj_cover"]), float(s_all["area_share"]), rel_tol=1e-6)


def test_box_object_share_counts_pixels_per_box_and_skips_padding():
    objects = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    objects[0, 0, 0:4, 0:4] = True                      # frame 0: top-left 4x4 quadrant
    objects[0, 1, 4:8, 4:8] = True                      # frame 1: bottom-right quadrant
    boxes = torch.tensor([[[0, 0, 4, 4],                # frame 0, fully on the object: 16 / 16
                           [0, 0, 8, 8],                # frame 0, whole frame: 16 / 64
                           [0, 0, 4, 4],                # frame 1, off the object: 0 / 16
                           [4, 4, 8, 8]]]).float()      # padded slot: ignored
    frame = torch.tensor([0, 0, 1, 1])
    real = torch.tensor([[True, True, True, False]])
    share = box_object_share(objects, frame, boxes, real)
    assert torch.allclose(share, torch.tensor([32 / 96]))
    # Only the padded slot on the object: nothing real gazed, share 0 (not NaN).
    assert box_object_share(objects, frame, boxes, torch.zeros_like(real)).tolist() == [0.0]
