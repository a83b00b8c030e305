"""GRPO's shared vision tokens (``GRPO.share_vision_tokens``) change the cost, not the step.

The optimised rollout encodes the B distinct clips once without grad (probe + rollout) and once with
grad inside the scorer (repeated over the G copies); the reference re-encodes all G*B copies in
every call. Same seed -> same budgets and gazes, and the same loss and gradients up to float
summation order (the encoder's gradient is summed over copies by ``repeat`` instead of inside the
conv). benchmarks/grpo.py measures the speed.
"""
from __future__ import annotations

import pytest
import torch

from autogaze.algorithms import GRPO, GazePolicy
from autogaze.algorithms.base import ScoreAdapter
from autogaze.types import Budget
from tests.doubles_grpo import ClipDataset, RewardDoubleTask
from tests.test_grpo_autogaze import SIZE, T, tiny_autogaze

G, B = 3, 2


def one_step(share: bool, consistent: bool, precision: str = "fp32", seed: int = 0):
    """rollout -> frozen task -> loss -> backward, as Trainer._forward.

    Returns (rollout, loss, grads, rows the vision encoder saw in each call)."""
    model, task = tiny_autogaze(), RewardDoubleTask()
    encoded_rows = []
    model.gazing_model.vision_model.register_forward_hook(lambda m, args, out: encoded_rows.append(args[0].shape[0]))
    alg = GRPO.from_config({"group_size": G, "discount_factor": 0.995, "optimize_task_loss_prediction": True,
                            "score_under_sampling_distribution": consistent})
    alg.share_vision_tokens = share
    batch = alg.prepare(ClipDataset.collate([ClipDataset(B, T, SIZE)[i] for i in range(B)]))
    policy = GazePolicy(model, ScoreAdapter(model))  # kwargs pass through the DDP-wrappable adapter
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        rollout = alg.rollout(policy, batch, temperature=2.0)
        with torch.no_grad():
            task_out = task(batch.video_for_task, rollout.gazes)
        loss = alg.loss(batch, rollout, task_out).loss.float().mean()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return rollout, loss.detach(), grads, encoded_rows


@pytest.mark.parametrize("consistent", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_shared_vision_tokens_give_the_same_step(consistent, seed):
    ref_rollout, ref_loss, ref_grads, ref_rows = one_step(False, consistent, seed=seed)
    new_rollout, new_loss, new_grads, new_rows = one_step(True, consistent, seed=seed)
    assert ref_rows == [B, G * B, G * B]  # probe (first copy), rollout, re-score
    assert new_rows == [B, B]             # shared no-grad encode, re-score with grad
    # the encoder is batch-invariant on CPU, so sampling sees bit-identical tokens
    torch.testing.assert_close(new_rollout.budget.max_gazes, ref_rollout.budget.max_gazes, rtol=0, atol=0)
    torch.testing.assert_close(new_rollout.gazes.ids, ref_rollout.gazes.ids, rtol=0, atol=0)
    torch.testing.assert_close(new_rollout.gazes.is_padded, ref_rollout.gazes.is_padded, rtol=0, atol=0)
    torch.testing.assert_close(new_rollout.scores.log_probs, ref_rollout.scores.log_probs)
    torch.testing.assert_close(new_loss, ref_loss)
    assert ref_loss != 0 and set(new_grads) == set(ref_grads)
    assert any(k.startswith("gazing_model.vision_model.") for k in ref_grads)  # the encoder is trained too
    for k in ref_grads:
        torch.testing.assert_close(new_grads[k], ref_grads[k], rtol=1e-4, atol=1e-6, msg=k)


def test_shared_vision_tokens_under_bf16_autocast():
    ref_rollout, ref_loss, ref_grads, _ = one_step(False, False, "bf16")
    new_rollout, new_loss, new_grads, _ = one_step(True, False, "bf16")
    torch.testing.assert_close(new_rollout.gazes.ids, ref_rollout.gazes.ids, rtol=0, atol=0)
    torch.testing.assert_close(new_loss, ref_loss)
    for k in ref_grads:  # bf16 tokens: the encoder's gradient is summed in a different order
        torch.testing.assert_close(new_grads[k], ref_grads[k], rtol=2e-2, atol=1e-4, msg=k)


def test_generate_and_budget_accept_precomputed_tokens():
    model = tiny_autogaze()
    video = torch.stack([ClipDataset(B, T, SIZE)[i] for i in range(B)]).repeat(G, 1, 1, 1, 1)  # [(g b), ...]
    with torch.no_grad():
        tokens = model.encode_video(video)
        budgets = [model.sample_budget(video, training=True, group_size=G,
                                       generator=torch.Generator().manual_seed(3), vision_tokens=vt)
                   for vt in (None, tokens)]
        torch.testing.assert_close(budgets[1].max_gazes, budgets[0].max_gazes, rtol=0, atol=0)
        runs = [model.generate(video, budgets[0], generator=torch.Generator().manual_seed(4), vision_tokens=vt)
                for vt in (None, tokens)]
    torch.testing.assert_close(runs[1].gazes.ids, runs[0].gazes.ids, rtol=0, atol=0)
    torch.testing.assert_close(runs[1].sample_log_probs, runs[0].sample_log_probs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="streaming"):  # the conv cache is only advanced by the encoder
        model.generate(video, budgets[0], vision_tokens=tokens, keep_state=True)
    with pytest.raises(ValueError, match="multiple of group_size"):
        model.score(video[:5], runs[0].gazes.map(lambda t: t[:5]), group_size=G)


def test_score_group_size_matches_per_copy_encoding():
    model = tiny_autogaze()
    video = torch.stack([ClipDataset(B, T, SIZE)[i] for i in range(B)]).repeat(G, 1, 1, 1, 1)
    with torch.no_grad():
        gazes = model.generate(video, Budget(torch.full((G * B, T), 4)), generator=torch.Generator().manual_seed(0)).gazes
    ref = model.score(video, gazes, masked=True, temperature=2.0)
    new = model.score(video, gazes, masked=True, temperature=2.0, group_size=G)
    torch.testing.assert_close(new.log_probs, ref.log_probs)
    torch.testing.assert_close(new.task_loss_prediction, ref.task_loss_prediction)
