"""The demo's named sizes (``--preset``) and the guard that keeps two runs out of one root."""
from __future__ import annotations

import pytest

from autogaze.build import build_gaze_model, build_task, validate_components
from autogaze.config import parse_config
from autogaze.demo import compose, grpo_overrides, ntp_overrides
from autogaze.demo.settings import PRESETS, Demo, claim_root, load_settings, preset
from autogaze.demo.stages import GRPO_CONFIG, mae_overrides


def test_proof_preset_has_the_geometry_where_gaze_matters(tmp_path):
    demo = preset("proof", root=tmp_path, seed=2)
    assert (demo.clip_len, demo.frame_size, demo.scales) == (16, 128, "32+64+128")
    assert demo.tokens_per_frame == 4 + 16 + 64 and len(demo.scales.split("+")) >= 3
    assert demo.seed == 2 and demo.preset == "proof"
    assert preset("demo", root=tmp_path) == Demo(root=tmp_path)  # the default sizes are the demo's


def test_unknown_preset_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown preset.*demo.*proof"):
        preset("huge", root=tmp_path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_composes_valid_ntp_and_grpo_experiments(tmp_path, name):
    demo = preset(name, root=tmp_path)
    for config, overrides in (("video_folder_video_mae_reconstruction_ar_gaze_ntp", ntp_overrides(demo)),
                              (GRPO_CONFIG, grpo_overrides(demo, None))):
        exp = parse_config(compose(config, overrides), config)  # fails on any inconsistent key
        validate_components(exp)
        model, task = build_gaze_model(exp), build_task(exp)
        assert exp.dataset["clip_len"] == demo.clip_len
        assert model.config.num_vision_tokens_each_frame == task.tokens_per_frame == demo.tokens_per_frame
        # the MAE these stages load was trained with stage mae's architecture: same shapes everywhere
        mae = build_task(parse_config(compose("demo_mae", mae_overrides(demo)), "demo_mae"))
        assert {k: v.shape for k, v in task.state_dict().items()} == {k: v.shape for k, v in mae.state_dict().items()}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_composes_a_valid_mae_experiment_with_its_decoder(tmp_path, name):
    demo = preset(name, root=tmp_path)
    exp = parse_config(compose("demo_mae", mae_overrides(demo)), "demo_mae")
    validate_components(exp)
    task = build_task(exp)
    assert task.tokens_per_frame == demo.tokens_per_frame and exp.trainer.max_steps == demo.mae_steps
    width = {"demo": 32, "large": 32, "proof": 64}[name]  # proof: the decoder that learned to copy at 128 px
    assert exp.task["recon_model_config"]["decoder_hidden_size"] in (None, width)
    assert task.mae.config.decoder_hidden_size == width


def test_the_decoder_step_size_reaches_both_stages(tmp_path):
    for k in (1, 10):
        demo = Demo(root=tmp_path, multi_token_pred=k)
        for config, overrides in (("video_folder_video_mae_reconstruction_ar_gaze_ntp", ntp_overrides(demo)),
                                  (GRPO_CONFIG, grpo_overrides(demo, None))):
            assert build_gaze_model(parse_config(compose(config, overrides), config)).config.num_multi_token_pred == k


def test_a_root_refuses_a_run_with_other_sizes(tmp_path):
    claim_root(preset("demo", root=tmp_path))
    claim_root(preset("demo", root=tmp_path, procs=1, threads=2))  # processes and threads may differ between runs
    assert load_settings(tmp_path / "exps" / "demo_settings.json").preset == "demo"
    with pytest.raises(ValueError, match=r"clip_len: 8 -> 16.*Use another --root"):
        claim_root(preset("proof", root=tmp_path))
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        claim_root(preset("demo", root=tmp_path, seed=1))


def test_label_extra_reaches_the_labeller_and_the_settings_file(tmp_path):
    from autogaze.demo.stages import label_args
    from autogaze.labeling.cli import parse_args

    extra = ("--ratio-strategy", "uniform", "--ratio-min", "0.05", "--frame-strategy", "uniform")
    demo = Demo(root=tmp_path, label_extra=extra)
    args = parse_args(label_args(demo, "train", tmp_path / "labels.json", 0))
    assert (args.ratio_strategy, args.ratio_min, args.frame_strategy) == ("uniform", 0.05, "uniform")
    default = parse_args(label_args(Demo(root=tmp_path), "train", tmp_path / "labels.json", 0))
    assert (default.ratio_strategy, default.frame_strategy) == ("exponential", "dirichlet")  # the paper's budgets
    claim_root(demo)
    assert load_settings(tmp_path / "exps" / "demo_settings.json").label_extra == extra


def test_gaze_model_size_and_ntp_lr_reach_both_stages(tmp_path):
    demo = Demo(root=tmp_path, gaze_width=32, gaze_layers=3, ntp_lr=1e-3)
    ntp = parse_config(compose("video_folder_video_mae_reconstruction_ar_gaze_ntp", ntp_overrides(demo)),
                       "video_folder_video_mae_reconstruction_ar_gaze_ntp")
    assert ntp.trainer.lr == 1e-3
    for exp in (ntp, parse_config(compose(GRPO_CONFIG, grpo_overrides(demo, None)), GRPO_CONFIG)):
        decoder = build_gaze_model(exp).config.gaze_model_config["gaze_decoder_config"]
        assert (decoder["hidden_size"], decoder["num_hidden_layers"]) == (32, 3)


def test_proof_labels_with_stochastic_greedy_and_threads_follow_the_preset(tmp_path):
    from autogaze.demo.stages import label_args
    from autogaze.labeling.cli import parse_args

    proof = preset("proof", root=tmp_path)
    assert parse_args(label_args(proof, "train", tmp_path / "l.json", 0)).candidate_sample == 16
    assert parse_args(label_args(Demo(root=tmp_path), "train", tmp_path / "l.json", 0)).candidate_sample == 0
    assert (proof.threads, preset("demo").threads, preset("proof", threads=1).threads) == (2, 1, 1)


def test_a_process_beside_another_uses_one_thread():
    import subprocess
    import sys

    import torch

    from autogaze.demo.stages import beside

    before = torch.get_num_threads()
    with beside(None):
        assert torch.get_num_threads() == before
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        with beside(child):
            assert torch.get_num_threads() == 1
    finally:
        child.wait()
    assert torch.get_num_threads() == before
