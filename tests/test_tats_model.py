"""TATS sampler: trajectory attention against a loop reference, landmarks, actor / critic outputs,
sampling through the shared interface, gradients, config errors.

Tiny preset: 8 frames x 64 px, patch 8, tubelet 2 -> T' = 4 x P = 64 = 256 tokens, width 64, 4 heads.
"""
import math

import pytest
import torch

from autogaze.models.tats import TATS, TrajectoryAttention, frame_attention, landmark_frame_attention
from autogaze.models.tats.attention import orthogonal_landmarks
from autogaze.tasks.tube_video_mae import TubeVideoMAE
from autogaze.utils.parsing import ConfigError

B, T, S, TP, P = 2, 8, 64, 4, 64
N = TP * P


def make_video(seed=0):
    return torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def make_model(**keys):
    torch.manual_seed(0)
    return TATS.from_config({"preset": "tiny", "embedding": "own", **keys})


def slow_trajectory_attention(attn: TrajectoryAttention, x: torch.Tensor, frames: int) -> torch.Tensor:
    """Loop over clips, heads, tokens and frames, written from the two-stage equations."""
    Bx, Nx, D = x.shape
    h, Sx = attn.num_heads, Nx // frames
    d = D // h
    qkv = attn.qkv(x)
    q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
    out = torch.zeros(Bx, Nx, D)
    for b in range(Bx):
        y1 = torch.zeros(Nx, frames, D)                       # token n's trajectory, frame by frame
        for hh in range(h):
            hs = slice(hh * d, (hh + 1) * d)
            for n in range(Nx):
                for t in range(frames):
                    ks, vs = k[b, t * Sx:(t + 1) * Sx, hs], v[b, t * Sx:(t + 1) * Sx, hs]
                    w = torch.softmax(ks @ q[b, n, hs] / math.sqrt(d), 0)
                    y1[n, t, hs] = w @ vs
        y = torch.zeros(Nx, D)
        for n in range(Nx):
            qt = attn.proj_q(y1[n, n // Sx])                  # query from the token's own frame
            kv = attn.proj_kv(y1[n])                          # [frames, D or 2D]
            kt = kv[:, :D]
            vt = y1[n] if attn.trajectory_values else kv[:, D:]
            for hh in range(h):
                hs = slice(hh * d, (hh + 1) * d)
                w = torch.softmax(kt[:, hs] @ qt[hs] / math.sqrt(d), 0)
                y[n, hs] = w @ vt[:, hs]
        out[b] = attn.proj(y)
    return out


@pytest.mark.parametrize("trajectory_values", [False, True])
def test_exact_trajectory_attention_matches_loop(trajectory_values):
    torch.manual_seed(0)
    attn = TrajectoryAttention(8, 2, trajectory_values=trajectory_values)
    x = torch.randn(2, 3 * 4, 8)                              # B=2, T'=3 frames, S=4 tokens, D=8
    with torch.no_grad():
        torch.testing.assert_close(attn(x, 3), slow_trajectory_attention(attn, x, 3), rtol=1e-5, atol=1e-5)


def test_stage_one_shapes_and_landmarks():
    q, k, v = torch.randn(3, 2, 2, 12, 4).unbind(0)          # [B=2, h=2, N=12, d=4]
    exact = frame_attention(q, k, v, 3)
    assert exact.shape == (2, 2, 12, 3, 4)
    idx = orthogonal_landmarks(q, 5)
    assert idx.shape == (2, 2, 5) and all(len(set(r.tolist())) == 5 for r in idx.flatten(0, 1))
    approx = landmark_frame_attention(q, k, v, 3, 5)
    assert approx.shape == exact.shape and torch.isfinite(approx).all()
    attn = TrajectoryAttention(8, 2, landmarks=4)
    x = torch.randn(2, 12, 8, requires_grad=True)
    y = attn(x, 3)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.abs().sum() > 0


def test_actor_mixes_frames_and_critic_pools():
    model = make_model().eval()
    tokens = torch.randn(B, N, 64)
    z = model.token_logits(tokens)
    assert z.shape == (B, N) and model.token_value(tokens).shape == (B,)
    moved = tokens.clone()
    moved[:, -P:] += torch.randn(B, P, 64)                    # change the last tube-frame only
    assert not torch.allclose(model.token_logits(moved)[:, :P], z[:, :P])   # frame 0 sees it


def test_init_uniform_generate_layout_and_value():
    model, video = make_model(), make_video()
    budget = model.sample_budget(video)
    assert budget.total.tolist() == [25, 25]
    rollout = model.generate(video, budget, generator=torch.Generator().manual_seed(0))
    g, s = rollout.gazes, rollout.scores
    assert g.num_frames == TP and g.tokens_per_frame == P
    assert torch.equal((~g.is_padded).sum(1), budget.total)
    for b in range(B):
        real = g.ids[b][~g.is_padded[b]]
        assert real.unique().numel() == 25 and torch.equal(real // P, real.sort().values // P)
    assert torch.equal(g.ids // P, g.frame_index()[None].expand_as(g.ids))
    assert (s.clip_entropy > math.log(N) - 0.01).all() and s.value.shape == (B,)
    torch.testing.assert_close(s.token_log_probs.exp().sum(-1), torch.ones(B))
    assert torch.equal(rollout.sample_log_probs, s.log_probs) and not s.token_log_probs.requires_grad
    again = model.generate(video, budget, generator=torch.Generator().manual_seed(0)).gazes
    assert torch.equal(again.ids, g.ids)                      # no dropout in TATS: same seed, same set


def test_ppo_style_loss_reaches_actor_and_critic():
    torch.manual_seed(0)
    task = TubeVideoMAE.from_config({"preset": "tiny"}).set_trainable(True)
    model, video = make_model(), make_video()
    rollout = model.generate(video, model.sample_budget(video), generator=torch.Generator().manual_seed(0))
    out = task(video, rollout.gazes)
    s = model.score(video, rollout.gazes)
    reward = out.loss_per_token                               # +error on masked tokens, detached
    adv = (reward - s.value.detach()[:, None]) * out.token_is_target
    loss = -(s.token_log_probs * adv).sum() + (s.value - out.loss.detach()).pow(2).sum() - s.clip_entropy.sum()
    loss.backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name
    assert not any(p.grad is not None for p in task.parameters())  # the reward is detached


def test_landmark_model_and_shared_tokens():
    torch.manual_seed(0)
    task = TubeVideoMAE.from_config({"preset": "tiny"})
    model = make_model(landmarks=16, embedding="shared", trajectory_values=True)
    video = make_video()
    tokens = task.embed_tokens(video)
    rollout = model.generate(video, model.sample_budget(video, tokens=tokens), tokens=tokens)
    assert (~rollout.gazes.is_padded).sum(1).tolist() == [25, 25]
    assert task(video, rollout.gazes, tokens=tokens).loss.shape == (B,)
    task.check_compatible(model.scales, model.tokens_per_frame)


@pytest.mark.parametrize("cfg, key", [
    ({"landmarks": 0}, "model.landmarks"),
    ({"trajectory_values": "yes"}, "model.trajectory_values"),
    ({"critic_hidden_size": -1}, "model.critic_hidden_size"),
    ({"critic_width": 8}, "model.critic_width"),
    ({"temperature": 0}, "model.temperature"),
])
def test_bad_config_raises(cfg, key):
    with pytest.raises(ConfigError) as e:
        TATS.validate_config(cfg)
    assert e.value.key == key


def test_base_preset():
    c = TATS.validate_config({"preset": "base", "max_num_frames": 16})
    assert (c.hidden_size, c.num_attention_heads, c.max_tokens, c.landmarks) == (768, 12, 1568, None)
    assert c.embedding == "shared"
    assert [int(1568 * (1 - r)) for r in (0.85, 0.90, 0.95)] == [235, 156, 78]
