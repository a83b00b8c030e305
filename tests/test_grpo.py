"""GRPO: group layout, advantages, discounting, loss, config, one trainer step.

The pure core is checked on hand-built tensors (arithmetic in the comments) and on properties; the
adapter runs one real Trainer step on the test doubles of tests/doubles_grpo.py.
"""
from __future__ import annotations

import pytest
import torch
import yaml

from autogaze.algorithms import GRPO
from autogaze.algorithms.advantages import (ADVANTAGE_ESTIMATORS, discount_advantages, expand_groups,
                                            get_advantage_estimator, group_mean_advantage, group_view,
                                            leave_one_out_advantage, zero_std_group_fraction)
from autogaze.algorithms.grpo import METRICS, reinforce_loss
from autogaze.build import resolve_target
from autogaze.config import CONFIG_DIR, LoggerConfig, TempScheduleConfig, TrainerConfig
from autogaze.trainer import Trainer
from autogaze.types import Batch, GazeLabels, GazeRollout, Gazes, GazeScores, TaskOutput
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger
from autogaze.utils.parsing import ConfigError
from tests.doubles_grpo import ClipDataset, RewardDoubleTask, SamplingGazeModel


# ---------------------------------------------------------------------------------- group layout
def test_expand_groups_is_group_major_and_keeps_shared_video_shared():
    video = torch.arange(2.0)[:, None, None, None, None].expand(2, 1, 3, 2, 2).clone()  # clip b is all b
    ids = torch.tensor([[0, 1], [2, 3]])
    labels = GazeLabels(Gazes(ids, torch.zeros(2, 2, dtype=torch.bool), torch.tensor([2]), 4), ids.float())
    batch = Batch(video, video, ["a", "b"], labels)
    out = expand_groups(batch, 3)
    assert out.group_size == 3 and out.batch_size == 6
    # row g*B + b is copy g of clip b: clips 0,1,0,1,0,1
    assert out.video[:, 0, 0, 0, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert out.paths == ["a", "b", "a", "b", "a", "b"]
    assert out.video_for_task is out.video                       # one tensor, not two copies
    assert out.labels.gazes.ids.tolist() == [[0, 1], [2, 3]] * 3
    # group_view inverts it: [G*B, ...] -> [G, B, ...], every copy equals the original batch
    for g in range(3):
        torch.testing.assert_close(group_view(out.video, 3)[g], video)
    # a separate task video is expanded on its own
    sep = expand_groups(Batch(video, video.clone() + 10, ["a", "b"]), 2)
    assert sep.video_for_task is not sep.video and sep.video_for_task[:, 0, 0, 0, 0].tolist() == [10, 11, 10, 11]
    with pytest.raises(ValueError, match="already expanded"):
        expand_groups(out, 2)


def test_group_view_rejects_wrong_size():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_view(torch.zeros(5, 2), 2)


# ---------------------------------------------------------------------------------- advantages
@pytest.mark.parametrize("estimator", list(ADVANTAGE_ESTIMATORS))
@pytest.mark.parametrize("normalize_std", [False, True])
def test_advantages_sum_to_zero_within_each_group(estimator, normalize_std):
    torch.manual_seed(0)
    G, B, F = 5, 3, 2
    reward = torch.randn(G * B, F) * 3 + 1
    adv = get_advantage_estimator(estimator)(reward, G, normalize_std=normalize_std)
    assert adv.shape == (G * B, F)
    torch.testing.assert_close(group_view(adv, G).sum(0), torch.zeros(B, F), atol=1e-5, rtol=0)
    assert adv.abs().sum() > 0


def test_group_mean_advantage_hand_example():
    # G=2, B=2, F=1 group-major: rows (g0 b0, g0 b1, g1 b0, g1 b1)
    reward = torch.tensor([[1.0], [5.0], [3.0], [5.0]])
    # clip 0: rewards {1, 3}, mean 2 -> A = -1, +1; clip 1: {5, 5}, mean 5 -> 0, 0
    adv = group_mean_advantage(reward, 2)
    assert adv[:, 0].tolist() == [-1.0, 0.0, 1.0, 0.0]
    # population std of {1, 3} is 1 -> A / (1 + 1e-4); std of {5, 5} is 0 -> 0 / 1e-4 = 0
    adv_std = group_mean_advantage(reward, 2, normalize_std=True)
    torch.testing.assert_close(adv_std[:, 0], torch.tensor([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0]))
    # one of the two (clip, frame) groups ties
    assert float(zero_std_group_fraction(reward, 2)) == 0.5


def test_leave_one_out_hand_example():
    # G=3, B=1: rewards 0, 3, 6. Row 0: 0 - mean(3, 6) = -4.5; row 1: 3 - 3 = 0; row 2: 6 - 1.5 = 4.5
    adv = leave_one_out_advantage(torch.tensor([[0.0], [3.0], [6.0]]), 3)
    torch.testing.assert_close(adv[:, 0], torch.tensor([-4.5, 0.0, 4.5]))
    with pytest.raises(ValueError, match="group_size >= 2"):
        leave_one_out_advantage(torch.zeros(2, 1), 1)


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ConfigError, match="group_mean.*leave_one_out") as e:
        get_advantage_estimator("group_means")
    assert "did you mean 'group_mean'" in str(e.value)


# ---------------------------------------------------------------------------------- discounting
def test_discount_hand_example():
    # 2 frames, num_per_frame [3, 2] -> N = 5; slot 2 (end of frame 0) is a pad in row 0.
    # Rewards: frame 0 (traj_len 3) and frame 1 (traj_len 5); gamma = 0.5.
    is_padded = torch.tensor([[False, False, True, False, False],
                              [False, False, False, False, True]])
    adv = torch.tensor([[2.0, -1.0],
                        [1.0, 4.0]])
    traj_len = torch.tensor([3, 5])
    out = discount_advantages(adv, traj_len, is_padded, 0.5)
    # Row 0, reward 0 (A=2, slots 0..2): real slots left until the reward: slot0 {0,1} -> d=1,
    #   slot1 {1} -> d=0, slot2 pad -> 0:                      [2*.5, 2*1, 0, 0, 0]       = [1, 2, 0, 0, 0]
    # Row 0, reward 1 (A=-1, slots 0..4): slot0 {0,1,3,4} d=3, slot1 d=2, slot2 pad, slot3 d=1, slot4 d=0:
    #   -1 * [.125, .25, 0, .5, 1]                                                         = [-.125, -.25, 0, -.5, -1]
    # Row 1, reward 0 (A=1): slot0 {0,1,2} d=2, slot1 d=1, slot2 d=0:                       [.25, .5, 1, 0, 0]
    # Row 1, reward 1 (A=4): slot0 {0,1,2,3} d=3, slot1 d=2, slot2 d=1, slot3 d=0, slot4 pad: [.5, 1, 2, 4, 0]
    expected = torch.tensor([[0.875, 1.75, 0.0, -0.5, -1.0],
                             [0.75, 1.5, 3.0, 4.0, 0.0]])
    torch.testing.assert_close(out, expected)
    # gamma = 1: every real slot before a reward gets the full advantage
    torch.testing.assert_close(discount_advantages(adv, traj_len, is_padded, 1.0),
                               torch.tensor([[1.0, 1.0, 0.0, -1.0, -1.0], [5.0, 5.0, 5.0, 4.0, 0.0]]))


def _discount_loop(adv, traj_len, is_padded, gamma):
    """Reference: the GRPO loss of algorithms/grpo.py written literally, one slot at a time."""
    R, N = is_padded.shape
    out = torch.zeros(R, N)
    for r in range(R):
        for i, L in enumerate(traj_len.tolist()):
            for n in range(L):
                if is_padded[r, n]:
                    continue
                d = int((~is_padded[r, n:L]).sum()) - 1
                out[r, n] += adv[r, i] * gamma ** d
    return out


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.3])
def test_discount_matches_loop_reference_and_zeroes_padding(gamma):
    g = torch.Generator().manual_seed(1)
    R, N = 6, 12
    is_padded = torch.rand(R, N, generator=g) < 0.3
    adv = torch.randn(R, 3, generator=g)
    traj_len = torch.tensor([4, 9, 10])  # slots after 10 get no reward at all
    out = discount_advantages(adv, traj_len, is_padded, gamma)
    torch.testing.assert_close(out, _discount_loop(adv, traj_len, is_padded, gamma))
    assert (out[is_padded] == 0).all()        # padded slots get zero advantage
    assert (out[:, 10:] == 0).all()           # slots after the last rewarded frame too
    assert (out[:, :10][~is_padded[:, :10]] != 0).all()   # real slots before a reward get a signal


# ---------------------------------------------------------------------------------- loss
def test_reinforce_gradient_is_minus_sum_advantage_grad_logp():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, requires_grad=True)            # [R, N, V]
    picks = torch.randint(0, 6, (3, 4))
    is_real = torch.tensor([[True, True, True, False]] * 3)
    adv = torch.randn(3, 4) * is_real

    def logp_fn():
        return torch.log_softmax(logits, -1).gather(-1, picks[..., None])[..., 0]

    loss = reinforce_loss(logp_fn(), adv, is_real)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, -adv.sum(1))               # ratio == 1, so the value is -sum A
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    (expected,) = torch.autograd.grad(-(adv * logp_fn()).sum(), logits)
    torch.testing.assert_close(grad, expected)


def test_reinforce_ignores_minus_inf_at_padded_slots():
    # A masked scored distribution can give a pad log p = -inf; the loss and gradient stay finite.
    logits = torch.tensor([[0.0, 1.0, float("-inf")]], requires_grad=True)
    logp = torch.log_softmax(logits, -1)                          # slot 2: -inf
    loss = reinforce_loss(logp, torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[True, True, False]]))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def _toy_rollout(pred: torch.Tensor) -> tuple[Batch, GazeRollout, TaskOutput]:
    """G=2, B=1, one frame of 3 slots, the last one padded in row 1."""
    is_padded = torch.tensor([[False, False, False], [False, False, True]])
    gazes = Gazes(torch.tensor([[0, 1, 2], [3, 1, 0]]), is_padded, torch.tensor([3]), 4)
    logp = torch.zeros(2, 3, requires_grad=True)
    scores = GazeScores(logp, pred, torch.ones(2, 3))
    batch = Batch(torch.zeros(2, 1, 3, 2, 2), torch.zeros(2, 1, 3, 2, 2), ["a", "a"], group_size=2)
    # rewards -1 and -3 -> A = +1, -1; targets at the last real gaze of frame 0 (slot 2 / slot 1)
    targets = torch.tensor([[0.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    tl_mask = torch.tensor([[False, False, True], [False, True, True]])  # (1, 2) is padded: dropped
    task_out = TaskOutput(torch.tensor([1.0, 3.0]), torch.tensor([[1.0], [3.0]]), torch.tensor([[-1.0], [-3.0]]),
                          torch.tensor([0]), torch.tensor([3]), targets, tl_mask)
    return batch, GazeRollout(gazes, scores, sample_log_probs=torch.full((2, 3), -0.5)), task_out


@pytest.mark.parametrize("optimize", [False, True])
def test_loss_task_loss_head_and_metrics(optimize):
    pred = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], requires_grad=True)
    batch, rollout, task_out = _toy_rollout(pred)
    alg = GRPO.from_config({"group_size": 2, "optimize_task_loss_prediction": optimize})
    out = alg.loss(batch, rollout, task_out)
    # pg: row 0 has A=+1 on 3 real slots -> -3; row 1 has A=-1 on 2 real slots -> +2
    # tlp (when on): supervised slots (0, 2) target 1 and (1, 1) target 3 (the padded (1, 2) is dropped);
    #   per row sq. error 0.25 and 6.25, divided by (2 supervised / 2 rows) = 1
    tlp = torch.tensor([0.25, 6.25]) if optimize else torch.zeros(2)
    torch.testing.assert_close(out.loss, torch.tensor([-3.0, 2.0]) + tlp)
    out.loss.mean().backward()
    assert pred.grad is not None                                  # the head stays in the graph either way
    assert bool(pred.grad.abs().sum() > 0) == optimize
    assert set(out.metrics) == set(METRICS)                       # every logged metric is documented
    m = {k: float(v) for k, v in out.metrics.items()}
    assert m["reward_mean"] == -2.0 and m["reward_group_std"] == 1.0 and m["zero_std_group_frac"] == 0.0
    assert m["gazes_per_frame"] == 2.5 and m["advantage_abs_mean"] == 1.0 and m["entropy"] == 1.0
    assert m["sampling_logp_gap"] == -0.5 and m["grpo_loss"] == -0.5
    assert all(not v.requires_grad and v.dim() == 0 for v in out.metrics.values())


def test_loss_needs_the_task():
    batch, rollout, _ = _toy_rollout(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reward"):
        GRPO.from_config({"group_size": 2}).loss(batch, rollout, None)


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize("cfg,key,match", [
    ({"discount_factor": 0}, "algorithm.discount_factor", r"\(0, 1\]"),
    ({"discount_factor": 1.5}, "algorithm.discount_factor", r"\(0, 1\]"),
    ({"group_size": 0}, "algorithm.group_size", ">= 1"),
    ({"group_size": 2.5}, "algorithm.group_size", ">= 1"),
    ({"discount_factr": 0.9}, "algorithm.discount_factr", "did you mean algorithm.discount_factor"),
    ({"normalize_advantage_std": "yes"}, "algorithm.normalize_advantage_std", "true or false"),
    ({"advantage_estimator": "rloo"}, "algorithm.advantage_estimator", "leave_one_out"),
    ({"advantage_estimator": "leave_one_out", "group_size": 1}, "algorithm.group_size", "at least 2"),
])
def test_config_errors(cfg, key, match):
    with pytest.raises(ConfigError, match=match) as e:
        GRPO.validate_config(cfg)
    assert e.value.key == key and e.value.fix


def test_yaml_config_builds_with_upstream_defaults():
    raw = yaml.safe_load((CONFIG_DIR / "algorithm" / "grpo.yaml").read_text())
    assert resolve_target("algorithm", raw) is GRPO
    cfg = GRPO.from_config({k: v for k, v in raw.items() if k != "_target_"}).cfg
    assert (cfg.group_size, cfg.discount_factor, cfg.optimize_task_loss_prediction) == (4, 1.0, False)
    assert isinstance(cfg.discount_factor, float)


# ---------------------------------------------------------------------------------- one trainer step
def make_trainer(tmp_path, model, task, algorithm, dataset, **overrides) -> Trainer:
    cfg = TrainerConfig(**{**dict(batch_size=2, per_gpu_max_batch_size=2, lr=0.5, optimizer="sgd",
                                  lr_schedule="constant", n_epochs=1, num_workers=0, device="cpu",
                                  train_task=False, detach_task=True, val_nsteps=1000, save_nsteps=1000,
                                  visualize_every=0, seed=0,
                                  temp_schedule_args=TempScheduleConfig(exp={"temp_start": 1.0, "temp_end": 1.0})),
                           **overrides})
    return Trainer(cfg, model, task, algorithm, dataset, None, ClipDataset.collate, DistInfo(), tmp_path,
                   MetricLogger(LoggerConfig(), tmp_path, "t", {}, True), {})


def one_step_changes_gaze_not_task(trainer: Trainer, policy_params: list[str]) -> dict[str, float]:
    """Run one optimizer step; assert the policy parameters moved and the frozen task did not."""
    gaze_before = {k: v.clone() for k, v in trainer.gaze_model.state_dict().items()}
    task_before = {k: v.clone() for k, v in trainer.task.state_dict().items()}
    metrics = trainer.train_step([next(trainer._micro_batches())])
    changed = [k for k, v in trainer.gaze_model.state_dict().items() if not torch.equal(v, gaze_before[k])]
    assert set(policy_params) <= set(changed), f"policy parameters unchanged: {set(policy_params) - set(changed)}"
    for k, v in trainer.task.state_dict().items():
        assert torch.equal(v, task_before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in trainer.task.parameters())
    assert set(METRICS) - {"entropy", "sampling_logp_gap"} <= set(metrics)
    return metrics


@pytest.mark.parametrize("consistent", [False, True])
def test_one_grpo_step_on_doubles(tmp_path, consistent):
    torch.manual_seed(0)
    alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.9, "optimize_task_loss_prediction": True,
                            "score_under_sampling_distribution": consistent})
    trainer = make_trainer(tmp_path, SamplingGazeModel(), RewardDoubleTask(), alg, ClipDataset(4, 2))
    # proj gets gradient only from the policy-gradient term; tlp only from the task-loss head
    metrics = one_step_changes_gaze_not_task(trainer, ["proj.weight", "proj.bias", "tlp.weight"])
    assert metrics["zero_std_group_frac"] < 1 and metrics["advantage_abs_mean"] > 0
    assert metrics["task_loss_prediction_loss"] > 0 and 1 <= metrics["gazes_per_frame"] <= 3
    if consistent:  # scored == sampling distribution (temperature, no-repeat mask)
        assert abs(metrics["sampling_logp_gap"]) < 1e-5
    else:           # scored unmasked: removing gazed ids only raises the sampled ids' probabilities
        assert metrics["sampling_logp_gap"] > 1e-3


def test_grpo_raises_the_reward_on_doubles(tmp_path):
    """40 steps on the double's bandit (reward = weighted share of gazed patches) raise the reward."""
    torch.manual_seed(0)
    alg = GRPO.from_config({"group_size": 8, "score_under_sampling_distribution": True})
    trainer = make_trainer(tmp_path, SamplingGazeModel(), RewardDoubleTask(), alg, ClipDataset(64, 2),
                           lr=2.0, batch_size=4, per_gpu_max_batch_size=4)
    data = trainer._micro_batches()
    rewards = [trainer.train_step([next(data)])["reward_mean"] for _ in range(40)]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.02, (first, last)   # measured: about -0.873 -> -0.827
