"""AdaMAE sampler and the shared sampling code: Plackett-Luce draws, Gazes layout, budgets, scores,
determinism, gradients, config errors.

Tiny preset: 8 frames x 64 px, patch 8, tubelet 2 -> T' = 4 x P = 64 = 256 tokens, width 64.
"""
import math

import pytest
import torch

from autogaze.models.adamae import (AdaMAE, TokenSampler, gazes_from_visible, plackett_luce_log_prob,
                                    sample_without_replacement)
from autogaze.models.adamae.config import ADAMAE_PRESETS, SamplerConfig, parse_sampler_config
from autogaze.tasks.tube_video_mae import TubeVideoMAE
from autogaze.types import Budget
from autogaze.utils.parsing import ConfigError

B, T, S, TP, P = 2, 8, 64, 4, 64
N = TP * P


def make_video(seed=0, rows=B):
    return torch.randn(rows, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def make_model(**keys):
    torch.manual_seed(0)
    return AdaMAE.from_config({"preset": "tiny", "embedding": "own", **keys})


def check_layout(gazes, total):
    """Frame-sorted, padded per frame, no duplicates, exactly ``total`` real ids per row."""
    frame = gazes.frame_index()[None].expand_as(gazes.ids)
    assert torch.equal(gazes.ids // P, frame)                                 # every id in its own frame
    assert int(gazes.num_per_frame.sum()) == gazes.ids.shape[1] and (gazes.num_per_frame >= 1).all()
    for b in range(gazes.ids.shape[0]):
        real = gazes.ids[b][~gazes.is_padded[b]]
        assert real.numel() == int(total[b]) and real.unique().numel() == real.numel()
        assert torch.equal(real, real.sort().values)                         # ascending, frame after frame
        pads = gazes.ids[b][gazes.is_padded[b]]
        assert not torch.isin(pads, real).any()                              # a pad never repeats a gaze


def test_gumbel_top_k_matches_plackett_luce_over_ordered_pairs():
    # N = 4 tokens, draw 2 in order, 20k draws: P(i then j) = p_i p_j / (1 - p_i).
    p = torch.tensor([0.4, 0.3, 0.2, 0.1])
    draws = 20_000
    ids = sample_without_replacement(p.log().expand(draws, 4), 2, torch.Generator().manual_seed(0))
    assert (ids[:, 0] != ids[:, 1]).all()
    counts = torch.zeros(4, 4)
    counts.index_put_((ids[:, 0], ids[:, 1]), torch.ones(draws), accumulate=True)
    expect = p[:, None] * p[None, :] / (1 - p[:, None]) * draws
    off = ~torch.eye(4, dtype=torch.bool)
    chi2 = float(((counts[off] - expect[off]) ** 2 / expect[off]).sum())
    assert chi2 < 31.3, chi2                                                  # 11 dof, 0.1% level
    # The helper's ordered-draw log-prob is the same formula.
    pair = torch.tensor([[2, 0]])
    torch.testing.assert_close(plackett_luce_log_prob(p.log()[None], pair).exp(),
                               torch.tensor([0.2 * 0.4 / 0.8]))


class FixedLogits(TokenSampler):
    """A 4-token clip (16 px, patch 8, one tube-frame) with fixed logits, to test ``generate``."""

    def __init__(self, logits):
        super().__init__(SamplerConfig(image_size=16, max_num_frames=2, patch_size=8, tubelet_size=2,
                                       hidden_size=4, num_attention_heads=1, intermediate_size=4))
        self.logits = logits

    def token_logits(self, tokens):
        return self.logits.expand(tokens.shape[0], -1)


def test_generate_draws_sets_with_plackett_luce_probabilities():
    p = torch.tensor([0.4, 0.3, 0.2, 0.1])
    model, draws = FixedLogits(p.log()), 20_000
    tokens = torch.zeros(draws, 4, 4)
    video = torch.zeros(1, 1, 1, 1, 1).expand(draws, 2, 3, 16, 16)            # shape only
    budget = model.sample_budget(video, tokens=tokens, gazing_ratio=0.5)     # 2 of 4 tokens
    gazes = model.generate(video, budget, tokens=tokens, generator=torch.Generator().manual_seed(1)).gazes
    check_layout(gazes.map(lambda t: t[:50]), budget.total[:50])
    pairs = gazes.ids[:, 0] * 4 + gazes.ids[:, 1]                            # ascending ids: i < j
    counts = torch.bincount(pairs, minlength=16).float()
    chi2 = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            pij = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])         # either order
            chi2 += float((counts[i * 4 + j] - pij * draws) ** 2 / (pij * draws))
    assert chi2 < 20.5, chi2                                                  # 5 dof, 0.1% level


def test_gazes_from_visible_by_hand():
    vis = torch.zeros(2, 2, 4, dtype=torch.bool)
    vis[0, 0, [1, 3]] = True                                                  # clip 0: 2 in frame 0, 0 in frame 1
    vis[1, 0, 2] = True
    vis[1, 1, 0] = True                                                       # clip 1: 1 and 1
    g = gazes_from_visible(vis)
    assert g.num_per_frame.tolist() == [2, 1]                                 # frame 1 keeps one slot
    assert g.ids.tolist() == [[1, 3, 4], [2, 0, 4]]
    assert g.is_padded.tolist() == [[False, False, True], [False, True, False]]


def test_init_is_near_uniform_and_scores_are_a_distribution():
    model = make_model()
    video = make_video()
    budget = model.sample_budget(video, training=True)
    assert budget.total.tolist() == [int(N * (1 - 0.9))] * B == [25, 25]
    rollout = model.generate(video, budget, generator=torch.Generator().manual_seed(0))
    check_layout(rollout.gazes, budget.total)
    s = model.score(video, rollout.gazes)
    assert s.token_log_probs.shape == (B, N)
    torch.testing.assert_close(s.token_log_probs.exp().sum(-1), torch.ones(B))
    assert (s.clip_entropy > math.log(N) - 0.01).all() and s.value is None
    assert torch.equal(s.log_probs[rollout.gazes.is_padded], torch.zeros(int(rollout.gazes.is_padded.sum())))
    real = ~rollout.gazes.is_padded
    torch.testing.assert_close(s.log_probs[real], s.token_log_probs.gather(1, rollout.gazes.ids)[real])
    assert s.entropy.shape == s.log_probs.shape and s.task_loss_prediction.abs().sum() == 0


def test_same_generator_same_gazes():
    model, video = make_model().eval(), make_video()                          # eval: no dropout noise
    budget = model.sample_budget(video, training=False)
    a = model.generate(video, budget, generator=torch.Generator().manual_seed(5)).gazes
    b = model.generate(video, budget, generator=torch.Generator().manual_seed(5)).gazes
    c = model.generate(video, budget, generator=torch.Generator().manual_seed(6)).gazes
    assert torch.equal(a.ids, b.ids) and torch.equal(a.is_padded, b.is_padded)
    assert not torch.equal(a.to_mask(), c.to_mask())
    top = model.generate(video, budget, do_sample=False).gazes               # deterministic top-k
    assert torch.equal(top.to_mask(), model.generate(video, budget, do_sample=False).gazes.to_mask())


def test_gradient_reaches_sampler_and_shared_embedding():
    torch.manual_seed(0)
    task = TubeVideoMAE.from_config({"preset": "tiny"}).set_trainable(True)
    model = AdaMAE.from_config({"preset": "tiny"})                            # embedding: shared
    video = make_video()
    tokens = task.embed_tokens(video)
    rollout = model.generate(video, model.sample_budget(video, tokens=tokens), tokens=tokens,
                             generator=torch.Generator().manual_seed(0))
    out = task(video, rollout.gazes, tokens=tokens)
    s = model.score(video, rollout.gazes, tokens=tokens)
    # AdaMAE's sampler term: -mean_{masked} log p_i * sg(e_i).
    lp = s.token_log_probs
    loss = -(lp * out.loss_per_token).sum(1) / out.token_is_target.sum(1)
    loss.mean().backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name      # pos_table included
    assert task.mae.videomae.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_shared_embedding_needs_tokens():
    model = AdaMAE.from_config({"preset": "tiny"})
    with pytest.raises(ValueError, match="task.embed_tokens"):
        model.generate(make_video(), model.sample_budget(make_video()))
    with pytest.raises(ValueError, match="width"):
        model.score(make_video(), None, tokens=torch.zeros(B, N, 32))


def test_budget_overrides_groups_and_per_frame_budgets():
    model, video = make_model(), make_video(rows=4)
    assert model.sample_budget(video, gazing_ratio=0.05).total.tolist() == [12] * 4
    b = model.sample_budget(video, gazing_ratio=[0.1, 0.05], group_size=2)   # per clip, group-major copies
    assert b.total.tolist() == [25, 12, 25, 12] and b.max_gazes.shape == (4, TP)
    assert Budget(b.max_gazes[:2], total=b.total[:2]).map(lambda t: t + 0).total.tolist() == [25, 12]
    caps = torch.tensor([[1, 2, 3, 4]] * 4)
    g = model.generate(video, Budget(caps), generator=torch.Generator().manual_seed(0)).gazes
    assert torch.equal(g.to_mask().sum(-1).long(), caps)                     # frame by frame without a total
    with pytest.raises(ValueError, match="caps"):
        model.generate(video, Budget(caps, total=torch.full((4,), 5)))


@pytest.mark.parametrize("cfg, key", [
    ({"preset": "tiny", "mask_ration": 0.9}, "model.mask_ration"),
    ({"mask_ratio": 1.0}, "model.mask_ratio"),
    ({"scales": "32+64"}, "model.scales"),
    ({"num_attention_heads": 5}, "model.hidden_size"),
    ({"embedding": "shraed"}, "model.embedding"),
    ({"num_vision_tokens_each_frame": 265}, "model.num_vision_tokens_each_frame"),
    ({"max_num_frames": 9}, "model.max_num_frames"),
    ({"dropout": 1.5}, "model.dropout"),
])
def test_bad_config_raises(cfg, key):
    with pytest.raises(ConfigError) as e:
        AdaMAE.validate_config(cfg)
    assert e.value.key == key


def test_base_preset_matches_the_paper():
    c = parse_sampler_config(type(AdaMAE.validate_config({})), {"preset": "base"}, ADAMAE_PRESETS)
    assert (c.hidden_size, c.num_attention_heads, c.mask_ratio, c.max_tokens) == (768, 8, 0.95, 1568)
    assert int(c.max_tokens * (1 - c.mask_ratio)) == 78
