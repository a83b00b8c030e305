"""Tube VideoMAE task on the tiny preset: shapes, masked-only loss, normalised targets, full
attention, HF reference equivalence, bad gazes and bad config.

Tiny preset: 8 frames x 64 px, patch 8, tubelet 2 -> T' = 4 tube-frames x P = 64 tokens, N = 256.
"""
import pytest
import torch
from transformers import VideoMAEForPreTraining

from autogaze.tasks.tube_video_mae import TubeVideoMAE, patchify, tubelet_targets
from autogaze.types import Gazes
from autogaze.utils.parsing import ConfigError

B, T, S, TP, P, K = 2, 8, 64, 4, 64, 6  # K visible tokens per tube-frame
N = TP * P


def make_task(**keys):
    torch.manual_seed(0)
    return TubeVideoMAE.from_config({"preset": "tiny", **keys}).set_trainable(True)


def make_gazes(seed=0, k=K):
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, TP, P, generator=g).argsort(-1)[..., :k].sort(-1).values  # distinct per frame
    ids = (local + torch.arange(TP)[:, None] * P).reshape(B, TP * k)
    return Gazes(ids, torch.zeros(B, TP * k, dtype=torch.bool), torch.full((TP,), k), P)


def make_video(seed=0):
    return torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def test_output_shapes_and_sign_convention():
    task, video, gazes = make_task(), make_video(), make_gazes()
    out = task(video, gazes)
    assert out.loss.shape == (B,) and out.loss.requires_grad
    assert out.loss_per_frame.shape == (B, TP) and torch.equal(out.reward, -out.loss_per_frame)
    assert out.loss_per_token.shape == (B, N) and not out.loss_per_token.requires_grad
    assert torch.equal(out.token_is_target.sum(1), torch.full((B,), N - TP * K))
    assert (out.loss_per_token >= 0).all() and (out.loss_per_token[~out.token_is_target] == 0).all()
    assert torch.equal(out.frame_ids, torch.arange(TP)) and out.traj_len.tolist() == [6, 12, 18, 24]
    assert not out.task_loss_mask.any() and out.task_loss_targets.shape == gazes.ids.shape
    # loss = mean of e_i over masked tokens; per frame likewise (equal counts per frame here).
    e, m = out.loss_per_token, out.token_is_target
    torch.testing.assert_close(out.loss.detach(), e.sum(1) / m.sum(1))
    torch.testing.assert_close(out.loss_per_frame.mean(1), out.loss.detach())


def test_loss_reads_masked_tokens_only():
    task, video, gazes = make_task(), make_video(), make_gazes()
    target = tubelet_targets(video, task.pixel_norm, 8, 2)                          # [B, N, 384]
    visible = gazes.to_mask().view(B, N).bool()
    # A prediction that is exact on masked tokens and garbage on visible ones has zero loss.
    task.mae.forward = lambda v, g, tokens=None: target + 100.0 * visible[..., None]
    out = task(video, gazes)
    assert torch.equal(out.loss, torch.zeros(B))


def test_loss_matches_hand_mse_on_masked_tokens():
    task, video, gazes = make_task(), make_video(), make_gazes()
    out = task(video, gazes)
    pred = task.mae(video, gazes)
    target = tubelet_targets(video, task.pixel_norm, 8, 2)
    masked = gazes.to_mask().view(B, N) == 0
    for b in range(B):
        hand = ((pred[b][masked[b]] - target[b][masked[b]]) ** 2).mean()
        torch.testing.assert_close(out.loss[b], hand, rtol=1e-5, atol=1e-6)


def test_normalised_target_of_one_tubelet_by_hand():
    gen = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (1, T, 3, S, S), generator=gen).float()      # p in [0, 255]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    video = (pixels / 127.5 - 1 - mean) / std                                      # the dataset's task transform
    task = make_task()
    target = tubelet_targets(video, task.pixel_norm, 8, 2)                          # [1, N, 2*8*8*3]
    t_, r, c = 1, 2, 3                                                             # token id 1*64 + 2*8 + 3 = 83
    cube = pixels[0, 2 * t_: 2 * t_ + 2, :, 8 * r: 8 * r + 8, 8 * c: 8 * c + 8] / 255  # [u, C, p, p]
    for ch in range(3):
        x = cube[:, ch].reshape(-1)                                                # 128 pixels of one channel
        mu, sd = x.sum() / 128, ((x - x.sum() / 128) ** 2).sum().div(127).sqrt()  # unbiased std
        expect = (cube[:, ch] - mu) / (sd + 1e-6)                                  # [u, p, p]
        got = target[0, 83].view(2, 8, 8, 3)[..., ch]                              # layout (u, row, col, channel)
        torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-4)
    raw = tubelet_targets(video, task.pixel_norm, 8, 2, norm_pix=False)
    torch.testing.assert_close(raw[0, 83].view(2, 8, 8, 3), cube.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_patchify_orders_tokens_like_gaze_ids():
    video = torch.arange(T * S * S).float().view(1, T, 1, S, S).expand(1, T, 3, S, S)
    tok = patchify(video, 8, 2)                                                    # [1, N, 128, 3]
    t_, r, c = 2, 5, 7
    assert tok[0, t_ * P + r * 8 + c, 0, 0] == video[0, 2 * t_, 0, 8 * r, 8 * c]


def test_full_attention_slot_order_and_padding_do_not_matter():
    task, video, gazes = make_task(), make_video(), make_gazes()
    task.eval()
    base = task(video, gazes).loss
    order = torch.cat([torch.arange(f * K, (f + 1) * K).flip(0) for f in range(TP)])  # reverse inside frames
    shuffled = Gazes(gazes.ids[:, order], gazes.is_padded[:, order], gazes.num_per_frame, P)
    torch.testing.assert_close(task(video, shuffled).loss, base, rtol=1e-5, atol=1e-6)
    # One padded slot appended to every frame (an in-frame id, flagged padded) changes nothing.
    ids = gazes.ids.view(B, TP, K)
    pad_ids = torch.cat([ids, ids[..., :1]], -1).view(B, -1)
    is_pad = torch.zeros(B, TP, K + 1, dtype=torch.bool)
    is_pad[..., -1] = True
    padded = Gazes(pad_ids, is_pad.view(B, -1), torch.full((TP,), K + 1), P)
    torch.testing.assert_close(task(video, padded).loss, base, rtol=1e-5, atol=1e-6)


def test_attention_is_not_causal_over_frames():
    task, video, gazes = make_task(), make_video(), make_gazes()
    task.eval()
    pred = task.mae(video, gazes)
    later = video.clone()
    later[:, -2:] += 1.0                                      # only the last tube-frame's pixels change
    pred2 = task.mae(later, gazes)
    assert not torch.allclose(pred[:, :P], pred2[:, :P])      # tube-frame 0 predictions see the future


def test_matches_transformers_videomae_on_a_rectangular_mask():
    # Plain ImageNet input normalisation, as transformers' VideoMAEForPreTraining assumes.
    task = make_task(pixel_rescale=1 / 255, pixel_offset=False).eval()
    ref = VideoMAEForPreTraining(task.mae.config).eval()
    ref.load_state_dict(task.mae.state_dict())               # same module tree, key for key
    video, gazes = make_video(), make_gazes()
    bool_masked = gazes.to_mask().view(B, N) == 0             # HF: True = masked
    with torch.no_grad():
        hf = ref(video, bool_masked_pos=bool_masked)
        ours = task(video, gazes)
        logits = task.mae(video, gazes)[bool_masked].view(B, -1, logits_dim := hf.logits.shape[-1])
    torch.testing.assert_close(logits, hf.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.loss.mean(), hf.loss, rtol=1e-4, atol=1e-5)
    assert logits_dim == 2 * 8 * 8 * 3


def test_gazes_over_frames_not_tube_frames_raise():
    task, video = make_task(), make_video()
    per_frame = Gazes(torch.zeros(B, T, dtype=torch.long) + torch.arange(T) * P, torch.zeros(B, T, dtype=torch.bool),
                      torch.ones(T, dtype=torch.long), P)
    with pytest.raises(ValueError, match="tube-frames"):
        task(video, per_frame)
    with pytest.raises(ValueError, match="multiple of task.tubelet_size"):
        task(video[:, :7], make_gazes())


def test_frozen_task_has_no_grad_and_stays_in_eval():
    task = make_task().set_trainable(False)
    task.train()
    assert not task.training and not any(p.requires_grad for p in task.parameters())
    out = task(make_video(), make_gazes())
    assert not out.loss.requires_grad
    assert not task.embed_tokens(make_video()).requires_grad


def test_trainable_gradients_reach_embedding_and_tokens_reuse(tmp_path):
    task, video, gazes = make_task(), make_video(), make_gazes()
    tokens = task.embed_tokens(video)                          # [B, N, D]
    assert tokens.shape == (B, N, 64)
    out = task(video, gazes, tokens=tokens)
    torch.testing.assert_close(out.loss, task(video, gazes).loss)
    out.loss.mean().backward()
    assert task.mae.videomae.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    # Checkpoint round trip through load_task_weights.
    torch.save(task.trainable_state_dict(), tmp_path / "mae.pt")
    other = make_task()
    with torch.no_grad():
        other.mae.mask_token.fill_(1.0)
    report = other.load_task_weights(tmp_path / "mae.pt")
    assert report.loaded == len(task.state_dict()) and not report.missing
    assert torch.equal(other.mae.mask_token, task.mae.mask_token)


@pytest.mark.parametrize("cfg, key", [
    ({"preset": "tiny", "patchsize": 8}, "task.patchsize"),
    ({"preset": "small"}, "task.preset"),
    ({"scales": "32+64"}, "task.scales"),
    ({"scales": 60}, "task.scales"),
    ({"max_num_frames": 7}, "task.max_num_frames"),
    ({"hidden_size": 66}, "task.hidden_size"),
    ({"pixel_mean": [0.5, 0.5]}, "task.pixel_mean"),
    ({"norm_pix_loss": "yes"}, "task.norm_pix_loss"),
])
def test_bad_config_raises_before_building(cfg, key):
    with pytest.raises(ConfigError) as e:
        TubeVideoMAE.validate_config(cfg)
    assert e.value.key == key and "Fix:" in str(e.value)


def test_base_preset_has_the_paper_token_count():
    c = TubeVideoMAE.validate_config({"preset": "base"})
    assert c.max_num_frames // c.tubelet_size * c.tokens_per_frame == 1568
    assert (c.hidden_size, c.num_hidden_layers, c.decoder_hidden_size, c.decoder_num_hidden_layers) == (768, 12, 384, 4)


def test_check_compatible_names_the_mismatch():
    task = make_task()
    task.check_compatible([64], 64, frame_size=64)
    with pytest.raises(ConfigError, match="task.scales"):
        task.check_compatible("32+64", 64)
    with pytest.raises(ConfigError, match="tokens per tube-frame"):
        task.check_compatible(64, 16)


def test_xavier_start_keeps_the_encoder_gradient_alive():
    """VideoMAE's own code starts Linear weights xavier-uniform; transformers' N(0, 0.02) at the tiny
    preset's 64 / 32 dims leaves the encoder's gradient about 1e-6 of the head's."""
    video, gazes = make_video(), make_gazes()
    ratios = {}
    for init in ("normal", "xavier"):
        task = make_task(weight_init=init)
        task(video, gazes).loss.mean().backward()
        q = task.mae.videomae.encoder.layer[0].attention.attention.query.weight.grad
        ratios[init] = (q.norm() / task.mae.decoder.head.weight.grad.norm()).item()
    assert ratios["normal"] < 1e-4 < ratios["xavier"], ratios
    with pytest.raises(ConfigError, match="weight_init"):
        TubeVideoMAE.from_config({"preset": "tiny", "weight_init": "zeros"})
