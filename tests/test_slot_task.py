"""The slot attention task: hand-computed slot updates, padding, block-causality, losses, object metrics,
configs, one slot-model training step, one GRPO step and the greedy labeller.

Geometry: scales 32+64 at patch 16 (P = 4 + 16 = 20 tokens, Pf = 16 finest positions), 64-px frames, 2-3
frames, a tiny random SigLIP tower built locally (nothing downloaded), K = 3 slots of width 16.
"""
from __future__ import annotations

import math

import pytest
import torch

from autogaze.algorithms import GRPO
from autogaze.algorithms.dummy import Dummy
from autogaze.build import build_task, validate_components
from autogaze.evaluation.object_metrics import (adjusted_rand_index, masks_to_labels, slot_persistence,
                                                video_fg_ari)
from autogaze.interfaces import Task, conformance_problems
from autogaze.labeling import label_clip
from autogaze.labeling.greedy import frozen, has_prefix_cache
from autogaze.models.baselines import RandomGaze
from autogaze.tasks.slot_attention import SlotAttentionTask
from autogaze.tasks.slot_attention.losses import feature_reconstruction, slot_contrast
from autogaze.tasks.slot_attention.slots import SlotAttention, attend
from autogaze.tasks.video_mae_reconstruction.weights import WeightsError
from autogaze.utils.parsing import ConfigError
from tests.doubles_grpo import ClipDataset
from tests.frame_inputs import (  # noqa: F401 (mae_checkpoint is a fixture)
    check_greedy_oracle_beats_random, check_padded_slots_change_nothing, gazes_of, mae_checkpoint, video)
from tests.test_config import compose_exp
from tests.test_grpo import make_trainer, one_step_changes_gaze_not_task
from tests.test_grpo_autogaze import tiny_autogaze

P, PF, S = 20, 16, 64
SMALL = {"num_slots": 3, "slot_dim": 16, "mlp_hidden": 32, "predictor_heads": 2, "decoder_hidden": [32]}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_task(seed: int = 0, **keys) -> SlotAttentionTask:
    torch.manual_seed(seed)
    return SlotAttentionTask.from_config({"vision_model": "tiny-siglip", "scales": "32+64", **SMALL, **keys})


def state_of(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------- contract
def test_is_a_task_with_the_tower_outside_its_state():
    task = make_task()
    assert isinstance(task, Task) and conformance_problems(task, Task) == []
    assert task.tokens_per_frame == P and task.scales == [32, 64] and task.frame_size == S and task.patch_size == 16
    assert task.trainable_state_dict() and all(k.startswith("slot_model.") for k in task.trainable_state_dict())
    assert not {id(p) for p in task.tower.model.parameters()} & {id(p) for p in task.parameters()}
    task.check_compatible("32+64", P, S)
    with pytest.raises(ConfigError, match="model.scales"):
        task.check_compatible("32+64+128", 84)


@pytest.mark.parametrize("tower", ["tiny-siglip", "mae"])
def test_slot_inputs_are_the_towers_tokens_at_every_scale(tower, mae_checkpoint):
    """The tower's features at all P tokens; their finest rows are the feature task's targets."""
    task = make_task(vision_model=mae_checkpoint if tower == "mae" else tower)
    x = video(B=2, T=2)
    feats = task.features(x)
    assert feats.shape == (2, 2, P, task.tower.feature_dim) and not feats.requires_grad
    torch.testing.assert_close(feats[:, :, -PF:], task.tower.features(x), rtol=0, atol=0)
    shared = task.features(x[:1].expand(3, -1, -1, -1, -1))   # stride-0 rows (labeller) are encoded once
    torch.testing.assert_close(shared, feats[:1].expand(3, -1, -1, -1), rtol=0, atol=0)


def test_the_packaged_group_builds_with_a_tiny_tower():
    """autogaze/configs/task/slot_attention.yaml through build_task, the tower swapped for a tiny one."""
    from omegaconf import OmegaConf

    from autogaze.config import CONFIG_DIR

    body = OmegaConf.load(CONFIG_DIR / "task" / "slot_attention.yaml")
    body.merge_with(OmegaConf.from_dotlist(["vision_model=tiny-siglip", "scales=32+64"]))
    torch.manual_seed(0)
    task = build_task(type("Exp", (), {"task": OmegaConf.to_container(body)})())
    assert isinstance(task, SlotAttentionTask) and task.config.num_slots == 5 and task.config.decoder_hidden == [256, 256]
    assert set(task.trainable_state_dict()) == set(task.state_dict())


# ---------------------------------------------------------------------------------- slot update by hand
def test_attend_on_a_hand_computed_two_slot_case():
    # D = 2, sqrt(D) scale. q1 = [sqrt2 ln3, 0], q2 = 0. Input 1 (k = e1): logits [ln3, 0] -> A = [3/4, 1/4];
    # input 2 (k = e2): logits [0, 0] -> [1/2, 1/2]; input 3 is padded (its k would favour slot 1).
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    q = torch.tensor([[[math.sqrt(2) * math.log(3), 0.0], [0.0, 0.0]]])
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]])
    valid = torch.tensor([[True, True, False]])
    attn, w, u = attend(k, q, v, valid)
    torch.testing.assert_close(attn, torch.tensor([[[3 / 4, 1 / 4], [1 / 2, 1 / 2], [0.0, 0.0]]]))
    # per slot over inputs: slot 1 [3/4, 1/2] / (5/4) = [3/5, 2/5]; slot 2 [1/4, 1/2] / (3/4) = [1/3, 2/3]
    torch.testing.assert_close(w, torch.tensor([[[3 / 5, 1 / 3], [2 / 5, 2 / 3], [0.0, 0.0]]]))
    assert w[0, 2].abs().max() == 0  # the pad's eps does not leak in
    torch.testing.assert_close(u, torch.tensor([[[3 / 5, 2 / 5], [1 / 3, 2 / 3]]]))
    # a frame of pads only: no weight anywhere, no NaN
    _, w0, u0 = attend(k, q, v, torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(w0, torch.zeros_like(w0)) and torch.equal(u0, torch.zeros_like(u0))


def test_one_slot_attention_iteration_by_hand():
    """Identity k/v projections, q = (ln3 / 2) I, a GRU whose only non-zero weight is W_in = I, a zero MLP
    output: one iteration gives s' = (1 - z) tanh(u) + z s with z = sigmoid(0) = 1/2."""
    D = 4
    sa = SlotAttention(D, D, mlp_hidden=8)
    with torch.no_grad():
        for p in sa.parameters():
            p.zero_()
        for ln in (sa.norm_inputs, sa.norm_slots, sa.mlp[0]):
            ln.weight.fill_(1.0)
        sa.to_k.weight.copy_(torch.eye(D))
        sa.to_v.weight.copy_(torch.eye(D))
        sa.to_q.weight.copy_(torch.eye(D) * math.log(3) / 2)
        sa.gru.weight_ih[2 * D:].copy_(torch.eye(D))   # PyTorch's gate order: r, z, n
    # Inputs and slots have zero mean and unit variance, so LN leaves them (up to LN's eps of 1e-5).
    x1, x2 = torch.tensor([1.0, 1, -1, -1]), torch.tensor([1.0, -1, 1, -1])
    pad = torch.tensor([5.0, -3, 2, 0])
    s = torch.stack([torch.tensor([1.0, 1, -1, -1]), torch.tensor([1.0, -1, -1, 1])])[None]  # [1, K=2, D]
    # logits / sqrt(4): x1.q1 = (ln3/2) 4 / 2 = ln3, x1.q2 = x2.q1 = x2.q2 = 0 -> A = [[3/4, 1/4], [1/2, 1/2]]
    # w: slot 1 [3/5, 2/5], slot 2 [1/3, 2/3] -> u1 = [1, 1/5, -1/5, -1], u2 = [1, -1/3, 1/3, -1]
    u = torch.stack([0.6 * x1 + 0.4 * x2, x1 / 3 + 2 * x2 / 3])
    want = 0.5 * torch.tanh(u) + 0.5 * s[0]
    out, attn = sa(torch.stack([x1, x2, pad])[None], s, torch.tensor([[True, True, False]]), iters=1)
    torch.testing.assert_close(attn[0], torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.0, 0.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[0], want, atol=1e-4, rtol=0)


def test_padded_inputs_change_nothing_in_slot_attention():
    torch.manual_seed(0)
    sa = SlotAttention(8, 8, mlp_hidden=16)
    x, s = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    valid = torch.tensor([[True, False, True, True, False], [False, True, True, True, True]])
    out, attn = sa(x, s, valid, iters=3)
    # the same real inputs alone (row 0: inputs 0, 2, 3; row 1: inputs 1..4), and with the pads' values changed
    ref0, _ = sa(x[:1, [0, 2, 3]], s[:1], torch.ones(1, 3, dtype=torch.bool), iters=3)
    ref1, _ = sa(x[1:, 1:], s[1:], torch.ones(1, 4, dtype=torch.bool), iters=3)
    y = x.clone()
    y[~valid] = 1e3
    other, _ = sa(y, s, valid, iters=3)
    torch.testing.assert_close(out, torch.cat([ref0, ref1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(other, out, atol=1e-6, rtol=0)
    assert attn[~valid].abs().max() == 0


def test_padded_gaze_slots_have_no_effect_on_the_task():
    check_padded_slots_change_nothing(frozen(make_task()))


# ---------------------------------------------------------------------------------- causality
def test_a_frames_reward_ignores_later_gazes():
    task = frozen(make_task())
    x = video(T=3)
    base = gazes_of([[0, 5, 9], [3, 17], [1, 2, 8, 19]])
    later = gazes_of([[0, 5, 9], [3, 17], [6, 11]])             # frame 2 changed
    middle = gazes_of([[0, 5, 9], [0, 4, 12], [6, 11]])         # frames 1 and 2 changed
    with torch.no_grad():
        r = {n: task(x, g, frame_ids=[0, 1, 2]).reward for n, g in (("base", base), ("later", later), ("middle", middle))}
        st = {n: task.slots(x, g) for n, g in (("base", base), ("later", later))}
    torch.testing.assert_close(r["later"][:, :2], r["base"][:, :2], rtol=0, atol=1e-6)
    torch.testing.assert_close(r["middle"][:, :1], r["base"][:, :1], rtol=0, atol=1e-6)
    torch.testing.assert_close(st["later"].masks[:, :2], st["base"].masks[:, :2], rtol=0, atol=1e-6)
    assert not torch.allclose(r["later"][:, 2], r["base"][:, 2])    # the test can see a change
    assert not torch.allclose(r["middle"][:, 1], r["base"][:, 1])
    # one rebuilt frame: the same value as in the full forward (slots still recur over frames 0..1)
    torch.testing.assert_close(task(x, base, frame_ids=[1]).reward[:, 0], r["base"][:, 1], rtol=0, atol=1e-6)


def test_slot_state_shapes_and_masks():
    task = make_task()
    g = gazes_of([[0, 5, 9], [3, 17]], [[False, True, False], [False, False]], B=2)
    st = task.slots(video(B=2, T=2), g)
    K, D = SMALL["num_slots"], SMALL["slot_dim"]
    assert st.slots.shape == (2, 2, K, D) and st.attn.shape == (2, 5, K)
    assert st.masks.shape == (2, 2, K, PF) and st.recon.shape == (2, 2, PF, task.tower.feature_dim)
    torch.testing.assert_close(st.masks.sum(2), torch.ones(2, 2, PF))
    torch.testing.assert_close(st.attn[:, [0, 2, 3, 4]].sum(-1), torch.ones(2, 4))
    assert st.attn[:, 1].abs().max() == 0  # the padded slot


# ---------------------------------------------------------------------------------- losses
def test_losses_on_hand_computed_cases():
    # featrec: one frame, 2 positions, Df = 2: ((0-1)^2 + (0-3)^2 + 0 + 0) / 4 = 2.5
    recon, target = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]]), torch.tensor([[[[1.0, 3.0], [1.0, 1.0]]]])
    torch.testing.assert_close(feature_reconstruction(recon, target), torch.tensor([[2.5]]))
    # contrast, B = 1, K = 2, orthonormal slots kept from frame 0 to 1, tau = 1: logits [[1, 0], [0, 1]]
    # -> each row's CE = log(1 + e^-1); the norm is taken first, so scaling a slot changes nothing
    e = torch.eye(2)
    slots = torch.stack([e, 3 * e])[None]                          # [B=1, T=2, K=2, D=2]
    want = math.log(1 + math.exp(-1))
    torch.testing.assert_close(slot_contrast(slots, 1.0), torch.tensor([want]))
    # batch contrast: B = 2 clips with the same two slots: each frame-1 slot now also sees the other clip's
    # copy of itself among the B*K = 4 frame-0 slots: CE = log(2e + 2) - 1 = log(2 + 2/e)
    torch.testing.assert_close(slot_contrast(torch.cat([slots, slots]), 1.0), torch.full((2,), math.log(2 + 2 / math.e)))
    assert slot_contrast(slots[:, :1], 0.1).item() == 0.0          # one frame: no pair


def test_task_loss_adds_the_weighted_contrast_and_the_reward_is_featrec():
    x, g = video(B=2, T=3), gazes_of([[0, 5], [3], [1, 9]], B=2)
    plain, heavy = frozen(make_task(contrast_weight=0.0)), frozen(make_task(contrast_weight=2.0))
    with torch.no_grad():
        a, b = plain(x, g, frame_ids=[0, 1, 2]), heavy(x, g, frame_ids=[0, 1, 2])
        st = heavy.slots(x, g)
    torch.testing.assert_close(a.reward, b.reward)                 # same seed, same slots: the weight is loss-only
    torch.testing.assert_close(a.loss, a.loss_per_frame.mean(1))
    torch.testing.assert_close(b.loss, b.loss_per_frame.mean(1) + 2.0 * slot_contrast(st.slots, 0.1))
    torch.testing.assert_close(b.reward, -feature_reconstruction(st.recon, heavy.features(x)[:, :, -PF:]))


# ---------------------------------------------------------------------------------- object metrics
def test_fg_ari_on_hand_cases():
    true = torch.tensor([[[[1, 1, 1, 2, 2, 2]]]])                  # [B=1, T=1, H=1, W=6]
    assert video_fg_ari(true, torch.tensor([[[[4, 4, 4, 0, 0, 0]]]])).item() == 1.0   # relabelled = perfect
    # contingency (1,0)=2 (1,1)=1 (2,1)=1 (2,2)=2: index 2, rows 3+3=6, cols 1+1+1=3, C(6,2)=15,
    # E = 6*3/15 = 1.2, max = 4.5 -> ARI = 0.8 / 3.3 = 8/33
    pred = torch.tensor([[[[0, 0, 1, 1, 2, 2]]]])
    assert video_fg_ari(true, pred).item() == pytest.approx(8 / 33)
    # background pixels are ignored whatever they are predicted as
    with_bg = torch.tensor([[[[0, 1, 1, 1, 2, 2, 2, 0]]]])
    assert video_fg_ari(with_bg, torch.tensor([[[[2, 0, 0, 1, 1, 2, 2, 1]]]])).item() == pytest.approx(8 / 33)
    # video ARI: a slot swap between frames is an error even though each frame alone is perfect:
    # points (1,0) (2,1) | (1,1) (2,0): no agreeing pair, E = 2*2/6 -> (0 - 2/3) / (2 - 2/3) = -1/2
    true_v = torch.tensor([[[[1, 2]], [[1, 2]]]])                  # [1, T=2, 1, 2]
    assert video_fg_ari(true_v, torch.tensor([[[[0, 1]], [[1, 0]]]])).item() == pytest.approx(-0.5)
    assert video_fg_ari(true_v, torch.tensor([[[[0, 1]], [[0, 1]]]])).item() == 1.0
    # degenerate partitions: one object, one slot -> 1; no foreground -> NaN
    assert adjusted_rand_index(torch.tensor([3, 3, 3]), torch.tensor([1, 1, 1])).item() == 1.0
    assert math.isnan(video_fg_ari(torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.zeros(1, 1, 2, 2)).item())


def test_masks_resize_to_pixels_then_argmax():
    # 2 slots on a 2x2 grid: slot 1 wins the top-right and bottom-left cells -> 2x2 pixel blocks at 4x4
    masks = torch.tensor([[0.9, 0.2, 0.4, 0.6], [0.1, 0.8, 0.6, 0.4]])[None, None]  # [1, 1, K=2, 4]
    labels = masks_to_labels(masks, (4, 4))
    assert labels.shape == (1, 1, 4, 4)
    assert labels[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]


def test_slot_persistence_on_a_hand_case():
    # object 1 in frames 0-2 with majority slots 0, 0, 2 -> 2/3; object 2 in frames 0 and 2 only, slot 1 both
    # times -> 1; background (0) predicted anything. Mean: (2/3 + 1) / 2 = 5/6.
    true = torch.tensor([[[1, 1, 1, 2], [1, 1, 1, 0], [1, 1, 2, 2]]])[:, :, None]   # [B=1, T=3, H=1, W=4]
    pred = torch.tensor([[[0, 0, 2, 1], [0, 0, 1, 3], [2, 2, 1, 1]]])[:, :, None]
    assert slot_persistence(true, pred).item() == pytest.approx(5 / 6)
    assert math.isnan(slot_persistence(torch.zeros_like(true), pred).item())


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("override,key", [
    ({"num_slots": 0}, "task.num_slots"),
    ({"iters": 1.5}, "task.iters"),
    ({"predictor_heads": 3}, "task.predictor_heads"),             # does not divide slot_dim 16
    ({"decoder_hidden": "a,b"}, "task.decoder_hidden"),
    ({"decoder_hidden": [32, 0]}, "task.decoder_hidden"),
    ({"contrast_weight": -1}, "task.contrast_weight"),
    ({"contrast_temperature": 0}, "task.contrast_temperature"),
    ({"recon_sample_rate": 0}, "task.recon_sample_rate"),
    ({"vision_model_config": {"attn_type": "sideways"}}, "task.vision_model_config.attn_type"),
    ({"vision_model": "no/such-model"}, "task.vision_model"),
    ({"bogus": 1}, "task.bogus"),
])
def test_bad_config_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as e:
        make_task(**override)
    assert e.value.key == key


def test_the_experiment_composes():
    exp = compose_exp("demo_slot_attention", [])
    assert exp.trainer.train_task and not exp.trainer.train_gaze
    assert exp.task["_target_"].endswith("SlotAttentionTask") and exp.algorithm["_target_"].endswith("Dummy")
    validate_components(exp)


# ---------------------------------------------------------------------------------- training
def test_one_training_step_moves_the_slot_model_not_the_tower(tmp_path):
    task = make_task()
    gaze = RandomGaze.from_config({"scales": "32+64", "num_vision_tokens_each_frame": P, "max_num_frames": 2})
    trainer = make_trainer(tmp_path, gaze, task, Dummy.from_config({}), ClipDataset(4, 2, S),
                           train_gaze=False, train_task=True, detach_task=False, optimizer="adam", lr=1e-2)
    tower_before, slots_before = state_of(task.tower.model), state_of(task)
    metrics = trainer.train_step([next(trainer._micro_batches())])
    assert metrics["reconstruction_loss"] > 0 and metrics["contrast_loss"] > 0
    changed = {k for k, v in task.state_dict().items() if not torch.equal(v, slots_before[k])}
    for part in ("encoder", "init", "attention.gru", "predictor", "decoder.mlp", "decoder.pos", "pos_embed"):
        assert any(k.startswith(f"slot_model.{part}") for k in changed), part
    assert_same(state_of(task.tower.model), tower_before)
    assert all(p.grad is None for p in task.tower.model.parameters()) and not task.tower.model.training


def test_slot_model_weights_round_trip(tmp_path):
    task, other = make_task(seed=0), make_task(seed=5)
    torch.save(task.trainable_state_dict(), tmp_path / "checkpoint_latest_task.pt")
    other.load_task_weights(tmp_path / "checkpoint_latest_task.pt")
    assert_same(other.state_dict(), task.state_dict())
    torch.save({"predictor.x": torch.ones(1)}, tmp_path / "feature_task.pt")
    with pytest.raises(WeightsError, match="missing"):
        other.load_task_weights(tmp_path / "feature_task.pt")


def test_one_grpo_step_moves_the_gazer_and_nothing_frozen(tmp_path):
    task = make_task()
    alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.995, "optimize_task_loss_prediction": True})
    trainer = make_trainer(tmp_path, tiny_autogaze(), task, alg, ClipDataset(4, 2, S))
    tower_before = state_of(task.tower.model)
    head = "gazing_model.gaze_decoder."
    # also checks the slot model's state is bit-identical and has no grad
    metrics = one_step_changes_gaze_not_task(trainer, [head + "lm_head.weight",
                                                       head + "task_loss_prediction_head.weight"])
    assert metrics["advantage_abs_mean"] > 0 and metrics["reward_mean"] < 0
    assert_same(state_of(task.tower.model), tower_before)


# ---------------------------------------------------------------------------------- greedy labeller
def forward_loss(task, clip, frames: list[list[int]], t: int) -> float:
    """Frame t's loss through the public forward, frames after t given one padded slot each."""
    frames = [f if s <= t else [0] for s, f in enumerate(frames)]
    pads = [[s > t] * len(f) for s, f in enumerate(frames)]
    return float(task(clip[None], gazes_of(frames, pads), frame_ids=[t]).loss_per_frame[0, 0])


def test_greedy_labeller_runs_through_the_public_forward():
    task = frozen(make_task())
    assert not has_prefix_cache(task)
    clip = video(T=2)[0]
    labels = label_clip(task, clip, [2, 1], candidate_batch=7)  # 7 does not divide 20: ragged chunks
    assert [len(f) for f in labels.gazing_pos] == [2, 1] and len(set(labels.gazing_pos[0])) == 2
    # the pick of frame 1 (the last frame) is the brute-force argmin given frame 0's labels
    brute = {c: forward_loss(task, clip, [labels.gazing_pos[0], [c]], 1) for c in range(P)}
    best = min(brute, key=brute.get)
    assert labels.gazing_pos[1] == [P + best]
    assert labels.task_losses[1][0] == pytest.approx(brute[best], rel=1e-5, abs=1e-6)


def test_greedy_oracle_and_evaluate_run_against_the_task():
    check_greedy_oracle_beats_random(frozen(make_task()))
