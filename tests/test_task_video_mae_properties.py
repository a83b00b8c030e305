"""VideoMAE task properties on a tiny random model: causality, padding, gradients, outputs, bad input.

Tiny setting: scales 32+64 at patch 16 -> P = 4 + 16 = 20 tokens per frame, frames of 64x64, T = 4.
"""
import pytest
import torch

from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.tasks.video_mae_reconstruction.masks import block_causal_mask
from autogaze.types import Gazes
from autogaze.utils.parsing import ConfigError

B, T, P, S, K = 2, 4, 20, 64, 5  # K gazes per frame


def make_task(loss_type="l1", loss_weights="1", **extra):
    torch.manual_seed(0)
    rmc = {"max_num_frames": 8, "loss_type": loss_type, "loss_weights": loss_weights,
           "dinov2_reg_loss_config": {"model": "tiny"}, "siglip2_loss_config": {"model": "tiny"}}
    rmc.update(extra)
    task = VideoMAEReconstruction.from_config({"recon_model": "tiny", "scales": "32+64", "recon_model_config": rmc})
    # Non-zero scale/time tables so they take part in what the tests check.
    with torch.no_grad():
        for name, p in task.mae.named_parameters():
            if "scale_embed" in name or "time_embed" in name:
                p.normal_(std=0.02)
    return task


def make_gazes(seed=0, k=K):
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :k]  # [B, T, k] distinct per frame
    ids = (local + torch.arange(T)[:, None] * P).reshape(B, T * k)
    return Gazes(ids, torch.zeros(B, T * k, dtype=torch.bool), torch.full((T,), k), tokens_per_frame=P)


def make_video(seed=0):
    return torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(seed))


def test_block_causal_mask_matches_loop_reference():
    frames = torch.tensor([0, 0, 1, 2, 2, 2])
    valid = torch.tensor([[True, False, True, True, True, False]])
    mask = block_causal_mask(frames, valid)[0, 0]  # [7, 7]
    expect = torch.zeros(7, 7, dtype=torch.bool)
    expect[:, 0] = True  # everyone sees CLS; CLS sees only itself
    for q in range(6):
        for k in range(6):
            expect[q + 1, k + 1] = bool(frames[k] <= frames[q] and valid[0, k])
    assert torch.equal(mask, expect)
    full = block_causal_mask(frames, valid, causal=False)[0, 0]
    assert torch.equal(full, torch.cat([torch.tensor([True]), valid[0]]).expand(7, 7))


def test_reconstruction_of_frame_ignores_later_gazes():
    task, video, gazes = make_task(), make_video(), make_gazes()
    base = task(video, gazes, frame_ids=[0, 2]).reconstruction
    # Move every gaze of frame 3 (after both rebuilt frames) and of frame 1 (between them).
    other = make_gazes(seed=1)
    later = gazes.ids.clone()
    later[:, 3 * K:] = other.ids[:, 3 * K:]
    assert not torch.equal(later, gazes.ids)
    out = task(video, Gazes(later, gazes.is_padded, gazes.num_per_frame, P), frame_ids=[0, 2]).reconstruction
    torch.testing.assert_close(out, base, rtol=0, atol=1e-6)
    middle = gazes.ids.clone()
    middle[:, K:2 * K] = other.ids[:, K:2 * K]
    out = task(video, Gazes(middle, gazes.is_padded, gazes.num_per_frame, P), frame_ids=[0, 2]).reconstruction
    torch.testing.assert_close(out[:, 0], base[:, 0], rtol=0, atol=1e-6)  # frame 0 precedes frame 1
    assert (out[:, 1] - base[:, 1]).abs().max() > 1e-4  # frame 2 does see frame 1


def test_padded_gaze_has_no_effect():
    task, video, gazes = make_task(), make_video(), make_gazes(k=K + 1)
    is_padded = gazes.is_padded.clone()
    is_padded[:, 1] = True  # a pad *between* real gazes of frame 0 (upstream's early-stop quirk)
    is_padded[:, (K + 1) * 2 + K] = True  # a trailing pad of frame 2 (a rebuilt frame)
    a = Gazes(gazes.ids, is_padded, gazes.num_per_frame, P)
    ids = gazes.ids.clone()
    ids[:, 1] = (ids[:, 1] + 7) % P  # another in-range id of frame 0
    ids[:, (K + 1) * 2 + K] = 2 * P + (ids[:, (K + 1) * 2 + K] + 3) % P
    b = Gazes(ids, is_padded, gazes.num_per_frame, P)
    out_a, out_b = task(video, a, frame_ids=[2, 3]), task(video, b, frame_ids=[2, 3])
    torch.testing.assert_close(out_b.reconstruction, out_a.reconstruction, rtol=0, atol=1e-6)
    torch.testing.assert_close(out_b.loss_per_frame, out_a.loss_per_frame, rtol=0, atol=1e-6)


def test_gradients_flow_to_mae_only_when_trained():
    task = make_task("l1+dinov2_reg+siglip2", "1+0.3+0.3")
    video, gazes = make_video(), make_gazes()
    frozen = task(video, gazes, frame_ids=[1])
    assert not frozen.loss.requires_grad and not task.mae.training

    task.set_trainable(True).train()
    assert task.mae.training and all(not fl.model.training for fl in task.feature_losses.values())
    out = task(video, gazes, frame_ids=[1, 3])
    out.loss.mean().backward()
    grads = {n: p.grad for n, p in task.mae.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    for name in ("vit.encoder.layer.0.attention.attention.query.weight", "decoder.decoder_pred.weight",
                 "vit.embeddings.time_embed", "decoder.decoder_scale_embed"):
        assert grads[name].abs().sum() > 0, name
    for fl in task.feature_losses.values():  # frozen feature models: no grads, not parameters of the task
        assert all(p.grad is None and not p.requires_grad for p in fl.model.parameters())
    task_params = {id(p) for p in task.parameters()}
    assert not any(id(p) in task_params for fl in task.feature_losses.values() for p in fl.model.parameters())
    assert all(k.startswith("mae.") and "dinov2" not in k and "siglip" not in k for k in task.state_dict())
    assert torch.equal(out.reward, -out.loss_per_frame.detach()) and not out.reward.requires_grad


def test_feature_losses_weighted_sum_and_moves_with_task():
    task = make_task("l1+dinov2_reg+siglip2", "1+0.3+0.3")
    video, gazes = make_video(), make_gazes()
    out = task(video, gazes, frame_ids=[0, 3])
    pred, tgt = out.reconstruction.flatten(0, 1), video[:, [0, 3]].flatten(0, 1)
    l1 = (pred - tgt).abs().mean(dim=(1, 2, 3))
    d = task.feature_losses["dinov2_reg"](pred, tgt)
    s = task.feature_losses["siglip2"](pred, tgt)
    assert (d > 0).all() and (s > 0).all()
    torch.testing.assert_close(out.loss_per_frame.flatten(), l1 + 0.3 * d + 0.3 * s)
    # A perfect reconstruction costs nothing under every term.
    assert task.compute_loss(video[:, :2], video[:, :2]).abs().max() < 1e-6
    task.to(torch.float64)  # nn.Module moves reach the held-out feature models
    assert all(p.dtype == torch.float64 for fl in task.feature_losses.values() for p in fl.model.parameters())


def test_outputs_traj_len_and_task_loss_targets():
    task, video = make_task(), make_video()
    gazes = make_gazes(k=3)  # 3 slots per frame; frame t holds slots 3t..3t+2
    is_padded = torch.zeros(B, T * 3, dtype=torch.bool)
    is_padded[0, 4] = True  # clip 0, frame 1: real, pad, real -> last real gaze is slot 5
    is_padded[1, 5] = True  # clip 1, frame 1: real, real, pad -> last real gaze is slot 4
    is_padded[:, 9:12] = True  # frame 3 fully padded: no target there
    gazes = Gazes(gazes.ids, is_padded, gazes.num_per_frame, P)
    out = task(video, gazes, frame_ids=[3, 1])
    assert out.frame_ids.tolist() == [1, 3]
    assert out.traj_len.tolist() == [6, 12]  # slots (padding included) up to and including frame f
    expect = torch.zeros(B, T * 3, dtype=torch.bool)
    expect[0, 5] = expect[1, 4] = True
    assert torch.equal(out.task_loss_mask, expect)
    assert out.task_loss_targets[0, 5] == out.loss_per_frame[0, 0] and out.task_loss_targets[1, 4] == out.loss_per_frame[1, 0]
    assert (out.task_loss_targets[~expect] == 0).all()
    assert out.reconstruction.shape == (B, 2, 3, S, S) and out.loss.shape == (B,)
    torch.testing.assert_close(out.loss, out.loss_per_frame.mean(1))
    assert out.metrics["avg_gazing_ratio_per_frame"].item() == pytest.approx((B * T * 3 - 2 - 6) / (B * T * P))
    assert out.metrics["reconstruction_loss"].item() == pytest.approx(out.loss_per_frame.mean().item())


def test_frame_sampling_uses_the_generator():
    task = make_task()
    task.config.recon_sample_rate = 0.5
    draws = [task.sample_frame_ids(16, torch.Generator().manual_seed(3), "cpu") for _ in range(2)]
    assert torch.equal(draws[0], draws[1]) and draws[0].numel() == 8
    assert torch.equal(draws[0], draws[0].sort().values)
    out = task(make_video(), make_gazes(), generator=torch.Generator().manual_seed(0))
    assert out.frame_ids.numel() == 2  # int(4 * 0.5)


def test_bf16_autocast_runs():
    task, video, gazes = make_task(), make_video(), make_gazes()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = task(video, gazes, frame_ids=[1, 2])
    ref = task(video, gazes, frame_ids=[1, 2])
    assert torch.isfinite(out.loss).all()
    torch.testing.assert_close(out.loss.float(), ref.loss, rtol=0.05, atol=0.05)


def test_incompatible_gaze_model_is_a_clear_error():
    task = make_task()
    task.check_compatible("32+64", 20, frame_size=64)  # the compatible case passes
    with pytest.raises(ConfigError, match="task.scales.*model.scales=32\\+64\\+112\\+224"):
        task.check_compatible("32+64+112+224", 265)
    with pytest.raises(ConfigError, match="patch_size.*20 tokens.*gaze model has 21"):
        task.check_compatible([64, 32], 21)
    with pytest.raises(ConfigError, match="task.scales.*side 64.*224x224"):
        task.check_compatible("32+64", 20, frame_size=224)
    with pytest.raises(ConfigError, match="task.scales.*side 64.*64x48"):
        task(torch.zeros(B, T, 3, 64, 48), make_gazes())
    with pytest.raises(ValueError, match="tokens/frame"):
        task(make_video(), Gazes(make_gazes().ids, make_gazes().is_padded, torch.full((T,), K), 265))
    with pytest.raises(ValueError, match="frame_ids"):
        task(make_video(), make_gazes(), frame_ids=[1, 1])


@pytest.mark.parametrize("cfg, key", [
    ({"scales": "32+60"}, "task.scales"),  # not a multiple of the patch size
    ({"recon_model_config": {"loss_type": "l1+dinov2_reg", "loss_weights": "1"}}, "loss_weights"),
    ({"recon_model_config": {"loss_type": "l2"}}, "loss_type"),
    ({"recon_model_config": {"hiden_size": 3}}, "hiden_size"),
    ({"recon_sample_rate": 0}, "recon_sample_rate"),
    ({"recon_model": "facebook/vit-mae-gigantic"}, "recon_model"),
    ({"attn_mode": "flash"}, "attn_mode"),
    ({"recon_model_config": {"weight_init": "kaiming"}}, "weight_init"),
])
def test_bad_config_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key):
        VideoMAEReconstruction.from_config({"recon_model": "tiny", **cfg})


def test_visualize_writes_png(tmp_path):
    task, video, gazes = make_task(), make_video(), make_gazes()
    out = task(video, gazes, frame_ids=[1, 3])
    path = task.visualize(video, gazes, out.reconstruction, out.frame_ids, tmp_path / "viz" / "grid.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_xavier_start_keeps_the_encoder_gradient_alive():
    """At 64 / 32 dims transformers' N(0, 0.02) start shrinks every Linear about sixfold, so the loss
    barely reaches the encoder; ``weight_init=xavier`` (MAE's own start) does not."""
    video, gazes = make_video(), make_gazes()
    ratios = {}
    for init in ("normal", "xavier"):
        task = make_task(weight_init=init).set_trainable(True)
        q = task.mae.vit.encoder.layer[0].attention.attention.query.weight
        assert abs(q.std().item() - (0.02 if init == "normal" else (2 / (64 + 64)) ** 0.5)) < 0.01
        task(video, gazes, frame_ids=[1, 3]).loss.mean().backward()
        ratios[init] = (q.grad.norm() / task.mae.decoder.decoder_pred.weight.grad.norm()).item()
    assert ratios["normal"] < 1e-3 < ratios["xavier"], ratios
