"""The video feature reconstruction task: causality, losses, horizon, padding, frozen tower, GRPO, labeller.

Geometry: scales 32+64 at patch 16 (P = 4 + 16 = 20, K = 16 finest positions), 64-px frames, 2-3 frames.
Towers are tiny random SigLIP / DINOv2 built locally, or a tiny VideoMAE task saved to tmp_path (the demo's
``checkpoint_latest_task.pt`` layout); nothing is downloaded.
"""
from __future__ import annotations

import pytest
import torch

from autogaze.algorithms import GRPO
from autogaze.algorithms.dummy import Dummy
from autogaze.build import validate_components
from autogaze.interfaces import Task, conformance_problems
from autogaze.labeling import label_clip
from autogaze.labeling.forward_scorer import ForwardClip
from autogaze.labeling.greedy import ClipCache, frozen, has_prefix_cache
from autogaze.models.baselines import RandomGaze
from autogaze.tasks.video_feature_reconstruction import VideoFeatureReconstruction
from autogaze.tasks.video_feature_reconstruction.predictor import covered_positions, frame_losses, position_losses
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.tasks.video_mae_reconstruction.weights import WeightsError
from autogaze.utils.parsing import ConfigError
from tests.doubles_grpo import ClipDataset
from tests.frame_inputs import (  # noqa: F401 (mae_checkpoint is a fixture)
    check_greedy_oracle_beats_random, check_padded_slots_change_nothing, gazes_of, mae_checkpoint, video)
from tests.test_config import compose_exp
from tests.test_grpo import make_trainer, one_step_changes_gaze_not_task
from tests.test_grpo_autogaze import tiny_autogaze

P, K, S = 20, 16, 64
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
         "decoder_intermediate_size": 32}
TOWERS = ["tiny-siglip", "tiny-dinov2", "mae"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_task(tower: str = "tiny-siglip", seed: int = 0, mae_path: str | None = None,
              **keys) -> VideoFeatureReconstruction:
    torch.manual_seed(seed)
    rmc = {**SMALL, **keys.pop("recon_model_config", {})}
    cfg = {"vision_model": mae_path if tower == "mae" else tower, "scales": "32+64", "recon_sample_rate": 1.0,
           "recon_model_config": rmc, **keys}
    return VideoFeatureReconstruction.from_config(cfg)


def tower_state(task) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in task.tower.model.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("tower", TOWERS)
def test_is_a_task_with_the_tower_outside_its_state(tower, mae_checkpoint):
    task = make_task(tower, mae_path=mae_checkpoint)
    assert isinstance(task, Task) and conformance_problems(task, Task) == []
    assert task.tokens_per_frame == P and task.scales == [32, 64] and task.frame_size == S
    assert all(k.startswith("predictor.") for k in task.trainable_state_dict())
    tower_ids = {id(p) for p in task.tower.model.parameters()}
    assert not tower_ids & {id(p) for p in task.parameters()}
    assert not any(p.requires_grad for p in task.tower.model.parameters())
    if tower == "mae":  # the tower carries the checkpoint's encoder weights
        saved = torch.load(mae_checkpoint)
        for k, v in task.tower.model.state_dict().items():
            assert torch.equal(v, saved["mae." + k]), k
    task.check_compatible("32+64", P, S)
    with pytest.raises(ConfigError, match="model.scales"):
        task.check_compatible("32+64+128", 84)


# ---------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("horizon", [0, 1])
def test_predictions_of_a_frame_ignore_later_gazes(horizon):
    """Predictions and loss of frame f do not change when gazes of frames > f change; they do for frame f."""
    task = frozen(make_task(horizon=horizon))
    x, fids = video(T=3), torch.tensor([0, 1, 2])
    base = gazes_of([[0, 5, 9], [3, 17], [1, 2, 8, 19]])
    later = gazes_of([[0, 5, 9], [3, 17], [6, 11]])             # frame 2 changed
    middle = gazes_of([[0, 5, 9], [0, 4, 12], [6, 11]])         # frames 1 and 2 changed
    with torch.no_grad():
        z = {n: task.predictor(x, g, fids) for n, g in (("base", base), ("later", later), ("middle", middle))}
        lpf = {n: task(x, g, frame_ids=fids).loss_per_frame for n, g in (("base", base), ("middle", middle))}
    torch.testing.assert_close(z["later"][:, :2], z["base"][:, :2], rtol=0, atol=1e-6)
    torch.testing.assert_close(z["middle"][:, :1], z["base"][:, :1], rtol=0, atol=1e-6)
    torch.testing.assert_close(lpf["middle"][:, 0], lpf["base"][:, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(z["later"][:, 2], z["base"][:, 2])   # the test can see a change
    assert not torch.allclose(z["middle"][:, 1], z["base"][:, 1])


# ---------------------------------------------------------------------------------- losses
def test_losses_on_a_hand_computed_case():
    # one frame, K = 2 positions, Df = 2
    pred = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    target = torch.tensor([[[[1.0, 3.0], [1.0, 1.0]]]])
    # l2: position 0: ((0-1)^2 + (0-3)^2) / 2 = 5; position 1: 0
    torch.testing.assert_close(position_losses("l2", pred, target), torch.tensor([[[5.0, 0.0]]]))
    # ln_l1: LN([1, 3]) = [-1, 1] (mean 2, var 1) -> (|0+1| + |0-1|) / 2 = 1; LN([1, 1]) = [0, 0] -> (1+1)/2 = 1
    torch.testing.assert_close(position_losses("ln_l1", pred, target), torch.tensor([[[1.0, 1.0]]]), atol=1e-5, rtol=0)
    covered = torch.tensor([[[True, False]]])
    # gazed weight 2, other weight 1: l2 (2*5 + 1*0) / 3 = 10/3; ln_l1 (2*1 + 1*1) / 3 = 1
    torch.testing.assert_close(frame_losses(position_losses("l2", pred, target), covered, 2.0, 1.0),
                               torch.tensor([[10 / 3]]))
    # weights 0 / 1 (predict only the unseen): l2 = 0 (position 1); everything covered -> 0, not NaN
    assert frame_losses(position_losses("l2", pred, target), covered, 0.0, 1.0).item() == 0.0
    assert frame_losses(torch.ones(1, 1, 2), torch.ones(1, 1, 2, dtype=torch.bool), 0.0, 1.0).item() == 0.0


def test_coverage_of_the_finest_grid_by_gazes_at_every_scale():
    # coarse id 0 = top-left of the 2x2 grid -> finest (row, col) in {0, 1}^2 = ids 0, 1, 4, 5;
    # finest local 4 + 15 = 19 -> finest id 15; a padded slot at coarse id 3 covers nothing
    g = gazes_of([[0, 19, 3]], [[False, False, True]])
    covered = covered_positions(g, torch.tensor([0]), [2, 4])[0, 0]
    assert covered.nonzero()[:, 0].tolist() == [0, 1, 4, 5, 15]


@pytest.mark.parametrize("loss_type,weights", [("l2", "1"), ("ln_l1", "1"), ("l2+ln_l1", "1+0.5")])
def test_task_loss_is_the_weighted_position_mean(loss_type, weights):
    """task.compute_loss == sum_j w_j * sum_k w_k l_jk / sum_k w_k, written out per position."""
    task = make_task(recon_model_config={"loss_type": loss_type, "loss_weights": weights},
                     loss_weights={"gazed_patch_loss_weight": 3, "patch_reconstruction_loss_weight": 1})
    g = gazes_of([[0, 19], [7]])
    fids = torch.tensor([0, 1])
    pred, target = torch.randn(1, 2, K, 32), torch.randn(1, 2, K, 32)
    got = task.compute_loss(pred, target, g, fids)
    covered = covered_positions(g, fids, [2, 4])
    want = torch.zeros(1, 2)
    for name, lw in zip(loss_type.split("+"), map(float, weights.split("+"))):
        for f in range(2):
            num = den = 0.0
            for k in range(K):
                t = target[0, f, k]
                t = (t - t.mean()) / torch.sqrt(t.var(unbiased=False) + 1e-5) if name == "ln_l1" else t
                err = (pred[0, f, k] - t).pow(2).mean() if name == "l2" else (pred[0, f, k] - t).abs().mean()
                w = 3.0 if covered[0, f, k] else 1.0
                num, den = num + w * err, den + w
            want[0, f] += lw * num / den
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- horizon
def test_horizon_one_targets_the_next_frame_and_the_last_frame_its_own():
    x = video(B=2, T=3)
    fids = torch.tensor([0, 1, 2])
    now, nxt = make_task(horizon=0), make_task(horizon=1)
    feats = now.tower.features(x)  # [B, T, K, Df]; both tasks share the seed, hence the tower
    torch.testing.assert_close(now.targets(x, fids), feats, rtol=0, atol=0)
    torch.testing.assert_close(nxt.targets(x, fids), feats[:, [1, 2, 2]], rtol=0, atol=0)
    # pixels of frame 2 reach frame 1's loss only through the horizon-1 target (the tower is block-causal)
    y = x.clone()
    y[:, 2] += 1.0
    g = gazes_of([[0, 5], [3], [1]], B=2)
    with torch.no_grad():
        for task, moves in ((frozen(now), False), (frozen(nxt), True)):
            a, b = task(x, g, frame_ids=[1]).loss_per_frame, task(y, g, frame_ids=[1]).loss_per_frame
            assert (not torch.allclose(a, b)) == moves


# ---------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("tower", ["tiny-siglip", "tiny-dinov2"])
def test_padded_slots_have_no_effect(tower):
    check_padded_slots_change_nothing(frozen(make_task(tower)))


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("tower", TOWERS)
def test_training_step_moves_the_predictor_not_the_tower(tmp_path, tower, mae_checkpoint):
    task = make_task(tower, mae_path=mae_checkpoint)
    gaze = RandomGaze.from_config({"scales": "32+64", "num_vision_tokens_each_frame": P, "max_num_frames": 2})
    trainer = make_trainer(tmp_path, gaze, task, Dummy.from_config({}), ClipDataset(4, 2, S),
                           train_gaze=False, train_task=True, detach_task=False, optimizer="adam", lr=1e-2)
    tower_before = tower_state(task)
    pred_before = {k: v.clone() for k, v in task.state_dict().items()}
    metrics = trainer.train_step([next(trainer._micro_batches())])
    assert metrics["reconstruction_loss"] > 0 and metrics["target_std"] > 0
    changed = {k for k, v in task.state_dict().items() if not torch.equal(v, pred_before[k])}
    assert {"predictor.decoder.decoder_pred.weight", "predictor.vit.encoder.layer.0.output.dense.weight"} <= changed
    assert not any(k.endswith(("position_embeddings", "decoder_pos_embed")) for k in changed)  # fixed sin-cos
    assert_same(tower_state(task), tower_before)
    assert all(p.grad is None for p in task.tower.model.parameters()) and not task.tower.model.training


def test_predictor_weights_round_trip(tmp_path):
    task = make_task(seed=0)
    path = tmp_path / "checkpoint_latest_task.pt"
    torch.save(task.trainable_state_dict(), path)
    other = make_task(seed=5)
    other.load_task_weights(path)
    assert_same(other.state_dict(), task.state_dict())
    torch.save({"mae.vit.layernorm.weight": torch.ones(3)}, tmp_path / "videomae.pt")
    with pytest.raises(WeightsError, match="missing"):
        other.load_task_weights(tmp_path / "videomae.pt")


@pytest.mark.parametrize("family", ["siglip", "dinov2"])
def test_stock_checkpoint_folders_load_as_the_tower(tmp_path, family):
    """A save_pretrained folder of a stock model (a full SigLIP with its text tower, or DINOv2) is the
    `vision_model` path that real weights take; built tiny here, so nothing is downloaded."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel, SiglipConfig, SiglipModel

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=S, patch_size=16)
    torch.manual_seed(3)
    if family == "siglip":
        stock = SiglipModel(SiglipConfig(text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=64, vocab_size=99),
                                         vision_config={**vision, "intermediate_size": 64}))
        want = {k.removeprefix("vision_model."): v for k, v in stock.state_dict().items()
                if k.startswith("vision_model.")}
    else:
        stock = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**vision, mlp_ratio=2, num_register_tokens=2))
        want = stock.state_dict()
    stock.save_pretrained(tmp_path / "stock")
    task = make_task(str(tmp_path / "stock"))
    got = task.tower.model.state_dict()
    if family == "siglip":
        got = {k.removeprefix("vision_model."): v for k, v in got.items()}
    assert_same(got, want)
    assert task.tower.feature_dim == 32 and task.tokens_per_frame == P


@pytest.mark.parametrize("family,prefix", [("siglip", 0), ("dinov2", 3)])
def test_intermediate_layer_targets_equal_the_stock_hidden_state(family, prefix):
    """One frame, one scale, every patch gazed = the stock model; layer 0's target = hidden_states[1]."""
    from transformers import Dinov2WithRegistersModel, SiglipVisionModel

    task = make_task(f"tiny-{family}", scales="64", layer_with_patch_loss=0, layer_with_reconstruction_loss=0)
    cfg = {k: v for k, v in task.tower.model.config.to_dict().items()
           if k not in ("scales", "attn_type", "max_embed_batch_size", "gazed_attn_implementation")}
    stock_cls = SiglipVisionModel if family == "siglip" else Dinov2WithRegistersModel
    stock = stock_cls(type(task.tower.model.config)(**cfg)).eval()
    stock.load_state_dict(task.tower.model.state_dict())
    x = video(T=1)
    from autogaze.utils.normalization import VIVIT
    mean, std = task.tower.mean, task.tower.std
    with torch.no_grad():
        ref = stock((VIVIT.to_unit(x[:, 0]) - mean) / std, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(task.tower.features(x)[:, 0], ref[:, prefix:], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- GRPO
def test_one_grpo_step_moves_the_gazer_and_nothing_frozen(tmp_path):
    task = make_task("tiny-siglip")
    alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.995, "optimize_task_loss_prediction": True})
    trainer = make_trainer(tmp_path, tiny_autogaze(), task, alg, ClipDataset(4, 2, S))
    tower_before = tower_state(task)
    head = "gazing_model.gaze_decoder."
    metrics = one_step_changes_gaze_not_task(trainer, [head + "lm_head.weight",
                                                       head + "task_loss_prediction_head.weight"])
    assert metrics["advantage_abs_mean"] > 0 and metrics["reward_mean"] < 0
    assert_same(tower_state(task), tower_before)


# ---------------------------------------------------------------------------------- greedy labeller
def forward_loss(task, clip, frames: list[list[int]], t: int) -> float:
    """Frame t's loss through the public forward, frames after t given one padded slot each."""
    frames = [f if s <= t else [0] for s, f in enumerate(frames)]
    pads = [[s > t] * len(f) for s, f in enumerate(frames)]
    return float(task(clip[None], gazes_of(frames, pads), frame_ids=[t]).loss_per_frame[0, 0])


@pytest.mark.parametrize("horizon", [0, 1])
def test_greedy_labeller_runs_through_the_public_forward(horizon):
    task = frozen(make_task(horizon=horizon))
    assert not has_prefix_cache(task)
    clip = video(T=2)[0]
    labels = label_clip(task, clip, [2, 1], candidate_batch=7)  # 7 does not divide 20: ragged chunks
    assert [len(f) for f in labels.gazing_pos] == [2, 1] and len(set(labels.gazing_pos[0])) == 2
    # the first pick of frame 1 (the last frame) is the brute-force argmin given frame 0's labels
    ctx = [g for g in labels.gazing_pos[0]]
    brute = {c: forward_loss(task, clip, [ctx, [c]], 1) for c in range(P)}
    best = min(brute, key=brute.get)
    assert labels.gazing_pos[1] == [P + best]
    assert labels.task_losses[1][0] == pytest.approx(brute[best], rel=1e-5, abs=1e-6)


def test_forward_scorer_equals_the_prefix_cache_on_the_mae_task():
    """The fallback, run on the VideoMAE task, gives the prefix cache's losses (both are exact)."""
    torch.manual_seed(0)
    mae = frozen(VideoMAEReconstruction.from_config({"recon_model": "tiny", "scales": "32+64"}))
    clip = video(T=3)[0]
    base, cands = torch.tensor([5]), torch.tensor([0, 1, 9, 19])
    got = []
    for source in (ClipCache(mae, clip), ForwardClip(mae, clip)):
        source.add_frame(0, [0, 7, 19])
        got.append(source.scorer(1).losses(base, cands))
    torch.testing.assert_close(got[1], got[0], rtol=1e-5, atol=1e-6)


def test_label_cli_runs_against_the_task(tmp_path):
    """``python -m autogaze.label`` with this task's packaged group, tiny overrides and a predictor checkpoint."""
    import json

    from autogaze.config import CONFIG_DIR
    from autogaze.datasets.labels import load_labels
    from autogaze.labeling import cli

    weights = tmp_path / "checkpoint_latest_task.pt"
    torch.save(make_task(horizon=1).trainable_state_dict(), weights)
    overrides = ["task.vision_model=tiny-siglip", "task.scales=32+64", "task.horizon=1",
                 *(f"task.recon_model_config.{k}={v}" for k, v in SMALL.items()),
                 "dataset._target_=tests.test_label_cli.FakeClips"]
    out = tmp_path / "gazing_labels.json"
    args = cli.parse_args([*overrides, "--task-config", str(CONFIG_DIR / "task" / "video_feature_reconstruction.yaml"),
                           "--task-weights", str(weights), "--data-root", "unused", "--clip-len", "2",
                           "--out", str(out),
                           "--ratio-strategy", "fixed", "--ratio", "0.1", "--candidate-batch", "8", "--limit", "2"])
    torch.manual_seed(0)  # the tiny tower's random init
    summary = cli.run(args)
    assert summary["labelled"] == 2
    loaded = load_labels(str(out), clip_len=2, tokens_per_frame=P)  # the loader's own checks
    assert len(loaded) == 2 and all(len(pos) == 2 for pos, _ in loaded.values())
    assert json.loads(out.read_text())


def test_greedy_oracle_and_evaluate_run_against_the_task():
    check_greedy_oracle_beats_random(frozen(make_task()))


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("override,key", [
    ({"horizon": 2}, "task.horizon"),
    ({"layer_with_patch_loss": 0}, "task.layer_with_patch_loss"),
    ({"recon_model_config": {"loss_type": "l3"}}, "task.recon_model_config.loss_type"),
    ({"loss_weights": {"gazed_patch_loss_weight": 0, "patch_reconstruction_loss_weight": 0}}, "task.loss_weights"),
    ({"vision_model": "no/such-model"}, "task.vision_model"),
    ({"layer_with_patch_loss": 5, "layer_with_reconstruction_loss": 5}, "task.layer_with_reconstruction_loss"),
    ({"bogus": 1}, "task.bogus"),
])
def test_bad_config_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as e:
        make_task(**override)
    assert e.value.key == key


def test_a_loaded_tower_fixes_the_patch_size(mae_checkpoint):
    with pytest.raises(ConfigError) as e:  # the MAE tower is at patch 16; a tiny tower would be built at 8
        make_task("mae", mae_path=mae_checkpoint, recon_model_config={"patch_size": 8})
    assert e.value.key == "task.recon_model_config.patch_size"
    with pytest.raises(ConfigError, match="block-causal"):
        make_task("mae", mae_path=mae_checkpoint, frame_independent_encoding=True)


def test_experiment_configs_compose_with_the_task():
    """The predictor-training experiment, and upstream's GRPO / NTP experiments with
    task=video_feature_reconstruction."""
    exp = compose_exp("demo_feature_reconstruction", [])
    assert exp.trainer.train_task and exp.task["_target_"].endswith("VideoFeatureReconstruction")
    validate_components(exp)
    cpu = ["task=video_feature_reconstruction", "task.vision_model=tiny-siglip", "task.scales=32+64",
           "model.scales=32+64", "model.num_vision_tokens_each_frame=20", "dataset.clip_len=4",
           "trainer.train_task=False",
           "trainer.task_weights=exps/demo_feature_reconstruction/checkpoint_latest_task.pt"]
    for stage in ("grpo", "ntp"):
        name = f"video_folder_video_mae_reconstruction_ar_gaze_{stage}"
        exp = compose_exp(name, cpu)
        assert exp.task["_target_"].endswith("VideoFeatureReconstruction") and not exp.trainer.train_task
        validate_components(exp)
