"""The pure loss cores of TATS's PPO and AdaMAE's sampler loss on hand-computed cases, and the PPO
memory's minibatch layout and checkpoint round trip."""
import math

import pytest
import torch

from autogaze.algorithms.losses import (explained_variance, masked_mean, ppo_clip_objective, ppo_ratio_stats,
                                        score_function_loss, tats_ppo_loss, value_loss)
from autogaze.algorithms.ppo_memory import EmptyItem, Episodes, PPOMemory
from autogaze.algorithms.tats_ppo import TATSPPOConfig, ppo_episode_loss, validate_tats_ppo_config
from autogaze.utils.parsing import ConfigError

EPS = 0.2
# Two clips, N = 4 tokens, the last one visible (not in M). p_old = 1/4 everywhere.
MASK = torch.tensor([[True, True, True, False], [True, True, True, False]])
RATIO = torch.tensor([[1.5, 0.5, 1.1, 3.0], [0.5, 1.5, 1.0, 3.0]])
ADV = torch.tensor([[2.0, 1.0, -1.0, 5.0], [-1.0, -1.0, 3.0, 5.0]])
OLD = torch.full((2, 4), math.log(0.25))


def _new_logp():
    return (OLD + RATIO.log()).requires_grad_(True)   # r = exp(new - old) = RATIO


def test_clipped_objective_by_hand():
    # row 0: min(1.5*2, 1.2*2) = 2.4 ; min(0.5*1, 0.8*1) = 0.5 ; min(1.1*-1, 1.1*-1) = -1.1 -> 1.8 / 3 = 0.6
    # row 1: min(0.5*-1, 0.8*-1) = -0.8 ; min(1.5*-1, 1.2*-1) = -1.5 ; min(1*3, 1*3) = 3 -> 0.7 / 3
    # (the visible 4th token, with r = 3 and A = 5, would add 6 or 7.5: it must not count)
    logp = _new_logp()
    obj = ppo_clip_objective(logp, OLD, ADV, MASK, EPS)
    torch.testing.assert_close(obj, torch.tensor([0.6, 0.7 / 3]))
    # d obj / d logp_i = r_i A_i / |M| where the unclipped branch is the min, 0 where the clip acts
    obj.sum().backward()
    expect = torch.tensor([[0.0, 0.5, -1.1, 0.0], [0.0, -1.5, 3.0, 0.0]]) / 3
    torch.testing.assert_close(logp.grad, expect)


def test_ratio_stats_by_hand():
    stats = ppo_ratio_stats(_new_logp(), OLD, MASK, EPS)
    r = RATIO[MASK]                                    # 1.5 0.5 1.1 0.5 1.5 1.0
    assert float(stats["clip_frac"]) == pytest.approx(4 / 6)  # |r - 1| > 0.2 for 1.5, 0.5, 0.5, 1.5
    assert float(stats["approx_kl"]) == pytest.approx(float(((r - 1) - r.log()).mean()), rel=1e-6)
    assert float(stats["approx_kl"]) > 0


def test_ratio_one_gives_zero_kl_zero_clip_and_the_mean_advantage():
    logp = OLD.clone().requires_grad_(True)           # the policy that sampled: r = 1 exactly
    stats = ppo_ratio_stats(logp, OLD, MASK, EPS)
    assert float(stats["approx_kl"]) == 0.0 and float(stats["clip_frac"]) == 0.0
    obj = ppo_clip_objective(logp, OLD, ADV, MASK, EPS)
    torch.testing.assert_close(obj, torch.tensor([2 / 3, 1 / 3]))   # mean A over M: (2+1-1)/3, (-1-1+3)/3
    obj.sum().backward()                                              # the policy gradient A_i / |M|
    torch.testing.assert_close(logp.grad, torch.where(MASK, ADV / 3, 0.0))


def test_value_and_entropy_terms_and_signs():
    assert torch.equal(value_loss(torch.tensor([0.75, 1.0]), torch.tensor([1.0, 0.0])), torch.tensor([0.0625, 1.0]))
    # L_s = -(c1 L_clip - c2 L_vf + c3 H): the policy and entropy terms are rewarded, the value error paid
    ls = tats_ppo_loss(torch.tensor([0.6]), torch.tensor([0.25]), torch.tensor([1.0]), 1e-4, 1e-4, 1e-4)
    torch.testing.assert_close(ls, torch.tensor([-(0.6e-4 - 0.25e-4 + 1e-4)]))
    ls = tats_ppo_loss(torch.tensor([0.6]), torch.tensor([0.25]), torch.tensor([1.0]), 2.0, 3.0, 5.0)
    torch.testing.assert_close(ls, torch.tensor([-(1.2 - 0.75 + 5.0)]))


def _episode(normalize=False):
    ep = Episodes(tokens=torch.zeros(1, 4, 2), is_masked=torch.tensor([[True, True, True, False]]),
                  old_log_probs=torch.full((1, 4), math.log(0.25)), reward=torch.tensor([[0.5, 1.0, 1.5, 0.0]]),
                  old_value=torch.tensor([0.5]), tokens_per_frame=2)
    cfg = TATSPPOConfig(policy_coef=1.0, value_coef=1.0, entropy_coef=1.0, normalize_advantage=normalize)
    return ep, cfg


def test_episode_loss_by_hand():
    # A = R - V_old = [0, 0.5, 1.0] on M; Rbar = 1.0; r = 1 -> L_clip = 0.5; V = 0.75 -> L_vf = 0.0625;
    # H(uniform over 4) = log 4;  L_s = -(0.5 - 0.0625 + log 4)
    ep, cfg = _episode()
    logp = ep.old_log_probs.clone().requires_grad_(True)
    value = torch.tensor([0.75], requires_grad=True)
    entropy = -(logp.exp() * logp).sum(-1)
    loss, m = ppo_episode_loss(logp, value, entropy, ep, cfg)
    torch.testing.assert_close(loss, torch.tensor([-(0.5 - 0.0625 + math.log(4))]))
    assert float(m["ppo_approx_kl"]) == 0 and float(m["ppo_clip_frac"]) == 0
    assert float(m["ppo_advantage_mean"]) == pytest.approx(0.5)
    loss.sum().backward()
    assert float(value.grad) == pytest.approx(2 * (0.75 - 1.0))     # c2 * d(V - Rbar)^2 / dV


def test_episode_loss_normalised_advantage():
    # A on M = [0, 0.5, 1] -> (A - 0.5) / (sqrt(1/6) + 1e-8): mean 0, so at r = 1 L_clip = 0
    ep, cfg = _episode(normalize=True)
    logp = ep.old_log_probs.clone().requires_grad_(True)
    entropy = -(logp.exp() * logp).sum(-1)
    loss, m = ppo_episode_loss(logp, torch.tensor([1.0]), entropy, ep, cfg)
    assert float(m["ppo_policy_objective"]) == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(loss, torch.tensor([-math.log(4)]))


def test_adamae_score_function_loss_by_hand():
    # masked tokens 1 and 2: -(log 0.25 * 2 + log 0.125 * 3) / 2
    logp = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log().requires_grad_(True)
    err = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[False, True, True, False]])
    ls = score_function_loss(logp, err, mask)
    torch.testing.assert_close(ls, torch.tensor([-(math.log(0.25) * 2 + math.log(0.125) * 3) / 2]))
    ls.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -1.0, -1.5, 0.0]]))  # -e_i / |M|
    assert err.grad is None                                                        # sg(e_i)


def test_masked_mean_and_explained_variance():
    assert torch.equal(masked_mean(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)), torch.zeros(2))
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(y, y)) == 1.0
    assert float(explained_variance(torch.full((4,), 2.5), y)) == 0.0     # a constant explains nothing
    assert float(explained_variance(y + 7, y)) == 1.0                     # a bias is not variance
    assert math.isnan(float(explained_variance(y[:1], y[:1])))


def test_config_rules():
    assert validate_tats_ppo_config({}) == TATSPPOConfig()
    for key, bad in [("update_steps_mae", 0), ("clip_eps", 1.5), ("value_coef", -1), ("warmup_steps", -2),
                     ("normalize_advantage", "yes"), ("ppo_minibatches", 1.5)]:
        with pytest.raises(ConfigError, match=f"algorithm.{key}"):
            validate_tats_ppo_config({key: bad})
    with pytest.raises(ConfigError, match="algorithm.clip_epsilon"):
        validate_tats_ppo_config({"clip_epsilon": 0.2})


# ---------------------------------------------------------------------------------- memory
def _chunk(n: int, start: float) -> Episodes:
    v = torch.arange(n, dtype=torch.float32) + start                                   # episode ids
    return Episodes(v[:, None, None].expand(n, 4, 2).clone(), torch.ones(n, 4, dtype=torch.bool),
                    torch.zeros(n, 4), v[:, None].expand(n, 4).clone(), v, 2)


def test_minibatches_take_one_slice_of_every_chunk_independent_of_the_rank():
    full = PPOMemory()
    full.add_step([_chunk(2, 0.0), _chunk(2, 10.0)])            # one rank: micro 2 x acc 2
    rank1 = PPOMemory()
    rank1.add_step([_chunk(2, 10.0)])                           # rank 1 of 2: its own micro-batch
    mbs = full.minibatches(2, torch.Generator().manual_seed(3))
    mbs1 = rank1.minibatches(2, torch.Generator().manual_seed(3))
    assert [len(mb) for mb in mbs] == [2, 2] and [len(mb) for mb in mbs1] == [1, 1]
    seen = sorted(float(e.old_value[0]) for mb in mbs for e in mb)
    assert seen == [0.0, 1.0, 10.0, 11.0]                       # every episode once per epoch
    for mb, mb1 in zip(mbs, mbs1):                              # the same slice of the same chunk
        assert torch.equal(mb[1].old_value, mb1[0].old_value)
        assert float(mb[1].old_value) - float(mb[0].old_value) == 10.0   # one permutation per chunk size


def test_empty_chunks_and_thin_slices_become_empty_items():
    mem = PPOMemory()
    mem.add_step([None, _chunk(1, 0.0)])                        # an all-undecodable micro-batch, then 1 clip
    mbs = mem.minibatches(2, torch.Generator().manual_seed(0))
    assert all(isinstance(mb[0], EmptyItem) and mb[0].batch_size == 0 for mb in mbs)
    assert sorted(mb[1].batch_size for mb in mbs) == [0, 1]     # 1 episode split into 2 slices
    assert len(mem) == 1 and mem.mae_steps == 1


def test_state_dict_round_trip_is_exact():
    mem = PPOMemory()
    mem.add_step([_chunk(2, 0.0), None])
    mem.add_step([_chunk(3, 5.0), _chunk(1, 9.0)])
    state = mem.state_dict()
    again = PPOMemory()
    again.load_state_dict(torch.load(_save(state), weights_only=False))
    assert again.mae_steps == 2 and len(again.chunks) == 4 and again.chunks[1] is None
    for a, b in zip(mem.chunks, again.chunks):
        if a is not None:
            for f in ("tokens", "is_masked", "old_log_probs", "reward", "old_value"):
                assert torch.equal(getattr(a, f), getattr(b, f)), f
            assert a.tokens_per_frame == b.tokens_per_frame
    again.clear()
    assert len(again) == 0 and again.mae_steps == 0 and again.chunks == []


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
