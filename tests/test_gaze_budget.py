"""Budget strategies: user arguments, config strategies, groups, `self`, broadcast."""
import pytest
import torch
import torch.distributed as dist

from autogaze.models.autogaze import AutoGaze
from autogaze.models.autogaze.budget import BudgetSampler, ratios_to_budget
from autogaze.models.autogaze.config import tiny_config

T, P = 4, 20


def model_with(ratio=None, frame=None, req=None, **top):
    torch.manual_seed(0)
    return AutoGaze(tiny_config(gazing_ratio_config=ratio, gazing_ratio_each_frame_config=frame,
                                task_loss_requirement_config=req, **top)).eval()


def test_caps_round_down_like_upstream():
    r = torch.tensor([[0.1, 0.75, 0.0, 1.0]])
    assert ratios_to_budget(r, 265).tolist() == [[26, 198, 1, 265]]


def test_user_arguments_table():
    m = model_with()
    video = torch.zeros(2, T, 3, 64, 64)
    b = m.sample_budget(video, training=False, gazing_ratio=0.5, task_loss_requirement=0.3)
    assert b.max_gazes.tolist() == [[10] * T] * 2 and torch.allclose(b.task_loss_requirement, torch.full((2, T), 0.3))
    b = m.sample_budget(video, training=False, task_loss_requirement=0.3)  # tau only -> ratio 1
    assert (b.max_gazes == P).all()
    b = m.sample_budget(video, training=False, gazing_ratio=[0.1, 0.2, 0.5, 1.0])  # per-frame caps
    assert b.max_gazes[0].tolist() == [2, 4, 10, 20] and b.task_loss_requirement is None


def test_config_strategies_draw_in_range_and_are_reproducible():
    m = model_with(ratio={"sample_strategy_during_training": "exponential",
                          "sample_strategy_during_inference": "uniform",
                          "uniform": {"gazing_ratio_min": 0.2, "gazing_ratio_max": 0.4},
                          "exponential": {"gazing_ratio_min": 0.1, "gazing_ratio_max": 0.9, "lambda": 10}})
    bs, g = m.budget_sampler, torch.Generator().manual_seed(0)
    uni = torch.stack([bs.video_ratio(False, "cpu", g) for _ in range(200)])
    exp = torch.stack([bs.video_ratio(True, "cpu", g) for _ in range(200)])
    assert uni.min() >= 0.2 and uni.max() <= 0.4
    assert exp.min() >= 0.1 and exp.max() <= 0.9 and exp.mean() < 0.3  # decaying density, mean ~0.2
    again = [bs.video_ratio(True, "cpu", torch.Generator().manual_seed(5)) for _ in range(2)]
    assert again[0] == again[1]


def test_dirichlet_split_with_string_alpha_and_groups():
    m = model_with(frame={"sample_strategy_during_training": "dirichlet", "dirichlet": {"alpha": "10,3,3,3"}},
                   ratio={"fixed": {"gazing_ratio": 0.2}})
    video = torch.zeros(6, T, 3, 64, 64)  # B = 2 clips, G = 3 copies, group-major
    g = torch.Generator().manual_seed(0)
    b = m.sample_budget(video, training=True, group_size=3, generator=g)
    assert torch.equal(b.max_gazes[:2], b.max_gazes[2:4]) and torch.equal(b.max_gazes[:2], b.max_gazes[4:])
    assert not torch.equal(b.max_gazes[0], b.max_gazes[1])  # clips draw their own splits
    w = m.budget_sampler.frame_ratios(torch.tensor(0.2), 4000, T, True, torch.Generator().manual_seed(1))
    # E[ratio * T * Dir(alpha)] = 0.2 * 4 * alpha / sum(alpha): frame 0 gets 0.2 * 4 * 10/19 = 0.42
    assert abs(float(w[:, 0].mean()) - 0.8 * 10 / 19) < 0.02 and abs(float(w[:, 1].mean()) - 0.8 * 3 / 19) < 0.02


def test_requirement_only_when_mode_has_it():
    m = model_with(req={"sample_strategy_during_training": "uniform",
                        "uniform": {"task_loss_requirement_min": 0.5, "task_loss_requirement_max": 1.0}},
                   has_task_loss_requirement_during_training=True)
    video = torch.zeros(2, T, 3, 64, 64)
    b = m.sample_budget(video, training=True, generator=torch.Generator().manual_seed(0))
    tau = b.task_loss_requirement
    assert tau is not None and 0.5 <= float(tau[0, 0]) <= 1.0 and (tau == tau[0, 0]).all()
    assert m.sample_budget(video, training=False).task_loss_requirement is None


@pytest.mark.parametrize("training", [False, True])
def test_self_strategy_many_clips_and_groups(training):
    m = model_with(frame={"sample_strategy_during_training": "self", "sample_strategy_during_inference": "self"},
                   ratio={"fixed": {"gazing_ratio": 0.6}},
                   req={"fixed": {"task_loss_requirement": -4.0}})
    with torch.no_grad():
        m.decoder.task_loss_prediction_head.weight.mul_(20)  # make early stops vary across frames
    B, G = 2, 3
    clips = torch.randn(B, T, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    video = clips.repeat(G, 1, 1, 1, 1)  # group-major (g b)
    b = m.sample_budget(video, training=training, group_size=G, generator=torch.Generator().manual_seed(0))
    assert b.max_gazes.shape == (B * G, T) and b.task_loss_requirement is None
    for g in range(1, G):
        assert torch.equal(b.max_gazes[g * B:(g + 1) * B], b.max_gazes[:B])
    assert (b.max_gazes >= 1).all() and (b.max_gazes <= 12).all()  # cap = int(0.6 * 20)
    if not training:  # greedy probe: the budget is exactly the probe's real gaze count
        from autogaze.types import Budget
        probe = m.generate(clips, Budget(torch.full((B, T), 12), torch.full((B, T), -4.0)))
        assert torch.equal(b.max_gazes[:B], probe.gazes.to_mask().sum(-1).long().clamp_min(1))
    assert b.max_gazes.unique().numel() > 1


def test_broadcast_under_gloo(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        bs = BudgetSampler(tiny_config().budget, P)
        assert float(bs.video_ratio(False, "cpu")) == 0.5
    finally:
        dist.destroy_process_group()
