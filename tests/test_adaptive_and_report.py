"""Adaptive-stopping evaluation, the demo's summary arithmetic and its child-process settings."""
from __future__ import annotations

from pathlib import Path

import torch

from autogaze.demo.report import patch_savings
from autogaze.demo.settings import Demo, load_settings, settings_argv
from autogaze.evaluation.adaptive import evaluate_adaptive, last_real_slot
from autogaze.models.baselines import RandomGaze
from autogaze.types import Batch, Gazes
from tests.doubles_grpo import PlantedPatchTask


def test_last_real_slot_hand_case():
    # frame 0: slots 0-2 (slot 2 padded); frame 1: slots 3-4 (both real)
    gazes = Gazes(torch.tensor([[0, 1, 0, 5, 6], [2, 0, 0, 7, 5]]),
                  torch.tensor([[False, False, True, False, False], [False, True, True, False, False]]),
                  torch.tensor([3, 2]), 5)
    assert last_real_slot(gazes).tolist() == [[1, 4], [0, 4]]


def test_adaptive_rows_count_the_patches_the_stop_left(model):
    """tau above every prediction stops each frame after its first chunk; tau below none never stops."""
    torch.manual_seed(0)
    video = torch.randn(2, 4, 3, 64, 64)
    batches = [Batch(video, video, ["a", "b"])]
    task = PlantedPatchTask(0, frame_ids=range(4))
    rnd = RandomGaze.from_config({"scales": "32+64", "num_vision_tokens_each_frame": 20})
    rows = evaluate_adaptive(model, rnd, task, batches, [1e9, -1e9], cap=0.5)
    early, never = rows
    K = model.config.num_multi_token_pred
    assert early["gazing_ratio"] <= K / 20 + 1e-6          # at most one chunk of K per frame
    assert abs(never["gazing_ratio"] - 0.5) < 1e-6           # ran to the cap: int(0.5 * 20) = 10 per frame
    for r in rows:
        assert 0 <= r["loss"] <= 1 and 0 <= r["random_loss"] <= 1 and r["calibration"] >= 0 and r["clips"] == 2


def test_patch_savings_divides_random_ratio_by_the_model_ratio():
    reach = [{"model": "random", "ratio_to_reach": "0.200"}, {"model": "ntp", "ratio_to_reach": "0.100"},
             {"model": "grid", "ratio_to_reach": ">0.5"}]
    lines = patch_savings(reach)
    assert "2.00x fewer" in lines[0] and "does not reach" in lines[1]


def test_settings_round_trip(tmp_path):
    demo = Demo(root=tmp_path, seed=3, procs=1, extra_overrides=["trainer.lr=1e-3"], data_dir=tmp_path / "v",
                curve_ratios=(0.1, 0.2))
    argv = settings_argv(demo)
    assert argv[0] == "--from-settings" and Path(argv[1]).is_file()
    assert load_settings(argv[1]) == demo


def test_real_stage_without_videos_is_skipped_with_the_fix(tmp_path):
    from autogaze.demo.report import summary_text
    from autogaze.demo.stages import stage_real

    demo = Demo(root=tmp_path, real_videos=tmp_path / "none")
    stage_real(demo)
    note = (demo.exps / "demo_real" / "skipped.txt").read_text()
    assert "scripts/get_real_videos.sh" in note and not (demo.exps / "demo_real" / "ratio_to_reach.csv").exists()
    assert "real clips: no real videos" in summary_text(demo)
