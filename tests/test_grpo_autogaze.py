"""GRPO on the real AutoGaze model (tiny config, CPU): `self` budgets per group, one trainer step.

The reward comes from tests/doubles_grpo.RewardDoubleTask, so these tests check the algorithm's
use of the model's typed API (sample_budget / generate / score), not the VideoMAE task.
"""
from __future__ import annotations

import pytest
import torch

from autogaze.algorithms import GRPO, GazePolicy
from autogaze.algorithms.advantages import group_view
from autogaze.models.autogaze import AutoGaze, AutoGazeConfig
from tests.doubles_grpo import ClipDataset, RewardDoubleTask
from tests.test_grpo import make_trainer, one_step_changes_gaze_not_task

SIZE, T = 64, 2


def tiny_autogaze(seed: int = 0, *, width: int = 16, ratio: float = 0.3, frame_strategy: str = "self",
                  frames: int = T) -> AutoGaze:
    """Scales 32+64 (P = 4 + 16 = 20), ``width`` wide, one layer, K=2 heads, in training mode.
    Default: `self` per-frame budgets in training with cap 0.3 * 20 = 6 and tau ~ U(-0.15, -0.05)
    (near the untrained head's outputs, so the probe stops at different lengths)."""
    torch.manual_seed(seed)
    cfg = AutoGazeConfig(
        scales="32+64", num_vision_tokens_each_frame=20, max_num_frames=frames,
        gaze_model_config={"input_img_size": SIZE, "vision_model_config": {"hidden_dim": width, "out_dim": width},
                           "connector_config": {"hidden_dim": width},
                           "gaze_decoder_config": {"hidden_size": width, "intermediate_size": 2 * width,
                                                   "num_attention_heads": 2, "num_hidden_layers": 1,
                                                   "num_multi_token_pred": 2}},
        gazing_ratio_config={"sample_strategy_during_training": "fixed", "fixed": {"gazing_ratio": ratio}},
        gazing_ratio_each_frame_config={"sample_strategy_during_training": frame_strategy},
        task_loss_requirement_config={"sample_strategy_during_training": "uniform",
                                      "uniform": {"task_loss_requirement_min": -0.15, "task_loss_requirement_max": -0.05}})
    return AutoGaze(cfg).train()


def test_self_budgets_with_micro_batch_2_are_shared_by_each_group():
    model = tiny_autogaze()
    G, B = 3, 2
    alg = GRPO.from_config({"group_size": G})
    batch = alg.prepare(ClipDataset.collate([ClipDataset(B, T, SIZE)[i] for i in range(B)]))
    policy = GazePolicy(model, model.score)
    for _ in range(3):  # several draws of tau
        rollout = alg.rollout(policy, batch, temperature=1.0)
        budget = group_view(rollout.budget.max_gazes, G)                 # [G, B, T]
        assert (budget == budget[:1]).all(), budget                       # every member, same budget
        assert ((budget >= 1) & (budget <= 6)).all()
        assert rollout.budget.task_loss_requirement is None               # no tau in the real rollout
        real = rollout.gazes.to_mask().sum(-1)                            # [G*B, T] real gazes per frame
        torch.testing.assert_close(real, rollout.budget.max_gazes.float())  # each row gazes to its cap
    assert rollout.scores.log_probs.shape == rollout.gazes.ids.shape
    assert rollout.scores.log_probs.requires_grad


@pytest.mark.parametrize("consistent", [False, True])
def test_one_grpo_step_on_tiny_autogaze(tmp_path, consistent):
    alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.995, "optimize_task_loss_prediction": True,
                            "score_under_sampling_distribution": consistent})
    trainer = make_trainer(tmp_path, tiny_autogaze(), RewardDoubleTask(), alg, ClipDataset(4, T, SIZE))
    head = "gazing_model.gaze_decoder."
    metrics = one_step_changes_gaze_not_task(trainer, [head + "lm_head.weight",
                                                       head + "task_loss_prediction_head.weight"])
    assert metrics["advantage_abs_mean"] > 0 and metrics["entropy"] > 0
    if consistent:  # masked re-scoring at the sampling temperature reproduces the sampler's log-probs
        assert abs(metrics["sampling_logp_gap"]) < 1e-4
    else:           # unmasked T=1 scoring spreads mass over banned ids: sampled ids look less likely
        assert metrics["sampling_logp_gap"] > 0
