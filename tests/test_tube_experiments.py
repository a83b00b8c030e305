"""The tube VideoMAE experiments (tube_video_mae_{random,adamae,tats_ppo}) from their packaged configs:
config rules that fail before any work, one-step runs on synthetic clips that move the sampler and
the MAE, and (slow) a 2-process torchrun of the TATS experiment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from autogaze.build import validate_components
from autogaze.config import CONFIG_DIR, parse_config
from autogaze.datasets.synthetic import make_synthetic_dataset
from autogaze.train import run
from autogaze.utils.parsing import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["tube_video_mae_random", "tube_video_mae_adamae", "tube_video_mae_tats_ppo"]
# TATS's PPO phase starts after the warm-up; a 1-step smoke run skips the warm-up to reach it.
EXTRA = {"tube_video_mae_tats_ppo": ["algorithm.warmup_epochs=0"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """4 train + 2 val synthetic clips, 8 frames x 64 px (the experiments' geometry)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("clips"), n_train=4, n_val=2, num_frames=8, size=64)


def _overrides(data: Path, logdir: Path, name: str) -> list[str]:
    return [f"dataset.root={data}", f"trainer.logdir={logdir}", f"trainer.exp_name={name}", "trainer.max_steps=1",
            "trainer.batch_size=2", "trainer.per_gpu_max_batch_size=2", "trainer.num_workers=0",
            "trainer.device=cpu", "trainer.max_val_batches=1", *EXTRA.get(name, [])]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_one_step_moves_the_sampler_and_the_mae(tmp_path, data, name):
    state = run(_compose(name, _overrides(data, tmp_path, name)), name)
    assert state.train_step == 1 and state.nonfinite_steps == 0
    exp = tmp_path / name
    start = next(exp.glob("checkpoint_ep0_iter0"))                   # the step-0 save
    task0 = torch.load(start / "checkpoint_task.pt", weights_only=False)
    task1 = torch.load(exp / "checkpoint_latest_task.pt", weights_only=False)
    assert any(not torch.equal(task0[k], task1[k]) for k in task0), "the MAE did not move"
    gaze0 = load_file(str(start / "checkpoint_gaze" / "model.safetensors"))
    gaze1 = load_file(str(exp / "checkpoint_latest_gaze" / "model.safetensors"))
    if name == "tube_video_mae_random":
        assert gaze0 == {} and gaze1 == {}                           # random masks have no parameters
    else:
        moved = {k for k in gaze0 if not torch.equal(gaze0[k], gaze1[k])}
        heads = {k for k in gaze0 if k.startswith(("actor.", "critic.", "head."))}
        assert heads <= moved and any(k.startswith("block.") for k in moved), sorted(set(gaze0) - moved)
        if name == "tube_video_mae_adamae":
            assert moved == set(gaze0)
        # TATS: with c1 = c2 = c3 = 1e-4 some trajectory-block gradients are ~1e-10 at init, below
        # AdamW's eps (1e-8), so a 1e-5 lr moves those tensors by less than a float32 ulp.
    rows = (exp / "metrics.jsonl").read_text()
    assert '"val/reconstruction_loss"' in rows and '"train/reconstruction_loss"' in rows
    if name == "tube_video_mae_tats_ppo":
        assert '"train/ppo_approx_kl": 0.0' in rows and '"train/ppo_clip_frac": 0.0' in rows


def _check(name: str, *overrides: str) -> None:
    exp = parse_config(_compose(name, ["dataset.root=/nowhere", *overrides]), name)
    validate_components(exp)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_packaged_experiments_validate(name):
    _check(name)


@pytest.mark.parametrize("name,override,key", [
    ("tube_video_mae_tats_ppo", "model.embedding=own", "model.embedding"),
    ("tube_video_mae_tats_ppo", "trainer.train_gaze=false", "trainer.train_gaze"),
    ("tube_video_mae_tats_ppo", "model.patch_size=4", "model.patch_size"),
    ("tube_video_mae_adamae", "model.hidden_size=32", "model.hidden_size"),
    ("tube_video_mae_adamae", "model.scales=32", "task.scales"),
    ("tube_video_mae_tats_ppo", "algorithm.update_steps_ppo=0", "algorithm.update_steps_ppo"),
    ("tube_video_mae_adamae", "algorithm.sampler_loss_weight=-1", "algorithm.sampler_loss_weight"),
    ("tube_video_mae_random", "model.masking=blocks", "model.masking"),
])
def test_bad_combinations_fail_before_any_work(name, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _check(name, override)


@pytest.mark.slow
def test_tats_experiment_under_torchrun_two_processes(tmp_path, data):
    """2 gloo ranks, 2 steps (a warm-up step, then an MAE step with its PPO phase); both ranks'
    memories are saved."""
    name = "tube_video_mae_tats_ppo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "autogaze.train",
           "--config-name", name, *_overrides(data, tmp_path, name)[:-1], "trainer.max_steps=2",
           "algorithm.warmup_steps=1", "trainer.batch_size=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    saved = torch.load(tmp_path / name / "checkpoint_latest_train.pt", weights_only=False)
    assert saved["train_step"] == 2 and len(saved["algorithm"]) == 2 and len(saved["rng"]) == 2
    rows = (tmp_path / name / "metrics.jsonl").read_text()
    assert '"train/warmup": 1.0' in rows and '"train/ppo_steps": 1.0' in rows
