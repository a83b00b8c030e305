"""Trainer core: batch geometry, accumulation, DDP equivalence, exact resume, non-finite skips.

Uses the test doubles in tests/doubles.py (the real model and task have their own tests).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from autogaze.algorithms import NTP
from autogaze.config import TrainerConfig
from autogaze.trainer import BatchGeometry, Trainer
from autogaze.utils.distributed import DistInfo
from autogaze.config import LoggerConfig
from autogaze.utils.metric_logger import MetricLogger
from tests.doubles import DoubleDataset, DoubleGazeModel, DoubleTask

REPO = Path(__file__).resolve().parents[1]


def make_trainer(tmp_path, seed=0, dropout=0.0, **overrides) -> Trainer:
    torch.manual_seed(seed)
    cfg = TrainerConfig(**{**dict(batch_size=4, per_gpu_max_batch_size=2, lr=0.1, optimizer="sgd",
                                  lr_schedule="constant", n_epochs=1, num_workers=0, device="cpu",
                                  train_task=False, val_nsteps=1000, save_nsteps=1000, visualize_every=0,
                                  seed=seed), **overrides})
    ds = DoubleDataset(16, 2)
    return Trainer(cfg, DoubleGazeModel(dropout), DoubleTask(), NTP.from_config({"optimize_task_loss_prediction": True}),
                   ds, None, DoubleDataset.collate, DistInfo(), tmp_path,
                   MetricLogger(LoggerConfig(), tmp_path, "t", {}, True), {})


@pytest.mark.parametrize("bs,world,cap,expect", [(1024, 8, 32, (32, 4)), (64, 1, 2, (2, 32)), (4, 1, 8, (4, 1)),
                                                 (10, 3, 64, (3, 1))])
def test_batch_geometry(bs, world, cap, expect):
    g = BatchGeometry.from_config(bs, cap, world)
    assert (g.micro_batch, g.acc_steps) == expect
    assert g.global_batch <= bs


def test_accumulation_equals_full_batch(tmp_path):
    """Micro-batch 2 x 2 accumulation steps gives the same update as one batch of 4."""
    a = make_trainer(tmp_path / "a", per_gpu_max_batch_size=2)
    b = make_trainer(tmp_path / "b", per_gpu_max_batch_size=4)
    assert (a.geom.acc_steps, b.geom.acc_steps) == (2, 1)
    da, db = a._micro_batches(), b._micro_batches()
    a.train_step([next(da), next(da)])
    b.train_step([next(db)])
    for (name, pa), pb in zip(a.gaze_model.named_parameters(), b.gaze_model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6, msg=name)
    # and the step really moved the parameters
    fresh = make_trainer(tmp_path / "c")
    assert not torch.equal(fresh.gaze_model.proj.weight, a.gaze_model.proj.weight)


def test_nonfinite_loss_skips_step(tmp_path):
    t = make_trainer(tmp_path)
    before = {k: v.clone() for k, v in t.gaze_model.state_dict().items()}
    data = t._micro_batches()
    micro = [next(data), next(data)]
    micro[0].video[0, 0, 0, 0, 0] = float("nan")
    metrics = t.train_step(micro)
    assert metrics["nonfinite_steps"] == 1.0 and t.state.nonfinite_steps == 1
    for k, v in t.gaze_model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_console_logs_every_log_nsteps_and_files_every_step(tmp_path, caplog):
    """7 steps at log_nsteps=3: console lines at steps 3, 6 and the last (7); metrics.jsonl has all 7."""
    t = make_trainer(tmp_path, n_epochs=2, max_steps=7, log_nsteps=3)
    logger = logging.getLogger("autogaze")
    extra = not logger.propagate  # setup_logging (an earlier in-process run) stops it reaching caplog's root
    if extra:
        logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="autogaze"):
            t.fit()
    finally:
        if extra:
            logger.removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train step ")]
    assert [int(m.split()[2].rstrip(":")) for m in lines] == [3, 6, 7], lines
    assert "loss=" in lines[0] and "grad_norm=" in lines[0]
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/train_step"] for r in rows if "train/train_step" in r] == list(range(1, 8))


def test_log_nsteps_must_be_positive():
    from autogaze.config import validate_trainer
    from autogaze.utils.parsing import ConfigError

    with pytest.raises(ConfigError, match="log_nsteps"):
        validate_trainer(TrainerConfig(log_nsteps=0))


def _train_cmd(logdir: Path, name: str, *extra: str, nproc: int | None = None) -> list[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone"] \
        if nproc else [sys.executable]
    return [*launch, "-m", "autogaze.train", "--config-dir", "tests/configs", "--config-name", "double_ntp",
            f"trainer.logdir={logdir}", f"trainer.exp_name={name}", *extra]


def _run(cmd, env_extra=None, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:  # say where it stopped, not only that it did
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError(f"timed out after 240 s: {cmd}\n{err[-3000:]}") from None
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _final_params(exp: Path) -> dict[str, torch.Tensor]:
    return load_file(str(exp / "checkpoint_latest_gaze" / "model.safetensors"))


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_with_accumulation(tmp_path):
    """2 ranks x micro 2 == 1 rank x micro 2 x 2 accumulation steps, after 2 Adam steps."""
    common = ["trainer.max_steps=2", "trainer.save_nsteps=100"]
    _run(_train_cmd(tmp_path, "ddp", *common, nproc=2))
    _run(_train_cmd(tmp_path, "single", *common))
    ddp, single = _final_params(tmp_path / "ddp"), _final_params(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for k in ddp:
        torch.testing.assert_close(ddp[k], single[k], rtol=0, atol=1e-6, msg=k)
    state = torch.load(tmp_path / "ddp" / "checkpoint_latest_train.pt", weights_only=False)
    assert state["train_step"] == 2 and len(state["rng"]) == 2  # both ranks' RNG streams saved


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(tmp_path):
    """SIGKILL after step 5 (mid epoch 1), resume=auto -> same parameters at step 6 as a clean run.

    Dropout makes the run depend on the RNG, and shuffling on the data order, so both must be
    restored exactly for the parameters to match bit for bit.
    """
    common = ["trainer.max_steps=6", "model.dropout=0.3", "trainer.save_nsteps=1"]
    _run(_train_cmd(tmp_path, "clean", *common))
    killed = _run(_train_cmd(tmp_path, "resumed", *common), {"AUTOGAZE_FAULT_AT_STEP": "5"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = torch.load(tmp_path / "resumed" / "checkpoint_latest_train.pt", weights_only=False)
    assert partial["train_step"] == 5
    _run(_train_cmd(tmp_path, "resumed", *common))
    clean, resumed = _final_params(tmp_path / "clean"), _final_params(tmp_path / "resumed")
    for k in clean:
        assert torch.equal(clean[k], resumed[k]), k
    rows = [json.loads(l) for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["train/train_step"] for r in rows if "train/train_step" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step trained exactly once across the two processes


def test_resume_skips_inconsistent_latest(tmp_path):
    """A kill between writing latest_gaze and latest_train leaves them at different steps: resume
    must fall back to the newest complete checkpoint_ep*_iter* folder."""
    _run(_train_cmd(tmp_path, "x", "trainer.max_steps=2"))
    exp = tmp_path / "x"
    (exp / "checkpoint_latest_gaze" / "trainer_step.json").write_text(json.dumps({"train_step": 99}))
    t = make_trainer(exp)
    t.cfg.resume = "auto"
    assert t.ckpt.maybe_resume(t)
    assert t.state.train_step == 2
