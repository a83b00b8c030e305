"""Trainer paths without a test elsewhere (issue 14, section 4), single process, test doubles.

* every LR schedule the config offers, against hand-computed values, in the scheduler and in the trainer;
* ``truncate_grads``: gaze and task gradients clipped separately to ``grad_norm`` (hand-set and real
  gradients), off means unclipped, and the ``grad_norm`` metric is the norm before clipping;
* a bf16 (CPU autocast) training step;
* GRPO stop/resume at step k == an uninterrupted run, bit for bit (params, optimizer, scheduler,
  RNG, data order, logged metrics);
* checkpoint pruning (``keep_checkpoints``, by step), valid latest pointers, atomic writes.

The 2-process (gloo) paths are in tests/test_trainer_ddp_paths.py.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import autogaze.checkpoint as checkpoint_mod
from tests.faults import fit_until_fault, seed_all
from autogaze.algorithms import GRPO, NTP
from autogaze.config import LR_SCHEDULES, LoggerConfig, TempScheduleConfig, TrainerConfig
from autogaze.trainer import Trainer
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger, read_metrics
from autogaze.utils.schedules import build_lr_scheduler
from tests.doubles import DoubleDataset, DoubleGazeModel, DoubleTask
from tests.doubles_grpo import ClipDataset, RewardDoubleTask, SamplingGazeModel
from tests.test_grpo import make_trainer as make_grpo_trainer
from tests.test_trainer import make_trainer


# ---------------------------------------------------------------------------------- LR schedules
# lr = 0.1, min_lr = 0.01, 20 optimizer steps, warmup_ratio = 0.25 (-> 5 warm-up steps).
#   constant:        0.1 at every step
#   linear:          0.1 * (1 + (0.01/0.1 - 1) * s/20) = 0.1 * (1 - 0.045 s), held at min_lr after s = 20
#   linear_w_warmup: 0.1 * s/5 for s < 5, then 0.1 * (20 - s)/15, floored at 0 (min_lr ignored)
#   cosine_w_warmup: 0.1 * s/5 for s < 5, then 0.01 + 0.09 * (1 + cos(pi (s - 5)/15)) / 2, held at 0.01
STEPS = [0, 1, 4, 5, 6, 10, 19, 20, 25]
_COS = [0.01 + 0.09 * (1 + math.cos(math.pi * k / 15)) / 2 for k in (0, 1, 5, 14, 15)]
HAND_LR = {
    "constant": [0.1] * 9,
    "linear": [0.1, 0.0955, 0.082, 0.0775, 0.073, 0.055, 0.0145, 0.01, 0.01],
    "linear_w_warmup": [0.0, 0.02, 0.08, 0.1, 0.1 * 14 / 15, 0.1 * 10 / 15, 0.1 / 15, 0.0, 0.0],
    # cos(0) = 1 -> 0.1; cos(pi/3) = 0.5 -> 0.0775 at s = 10; cos(pi) = -1 -> 0.01 at s = 20
    "cosine_w_warmup": [0.0, 0.02, 0.08, *_COS, 0.01],
}


def test_every_configured_schedule_has_hand_values():
    assert set(HAND_LR) == set(LR_SCHEDULES)


def _lrs(kind: str, total: int, warmup_ratio: float, steps: list[int], lr=0.1, min_lr=0.01) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_lr_scheduler(opt, kind, total, lr, min_lr, warmup_ratio)
    return [sched.lr_lambdas[0](s) * lr for s in steps]


@pytest.mark.parametrize("kind", LR_SCHEDULES)
def test_lr_schedule_hand_values(kind):
    assert _lrs(kind, 20, 0.25, STEPS) == pytest.approx(HAND_LR[kind], rel=1e-12, abs=1e-15)


def test_warmup_shorter_than_one_step_starts_at_full_lr():
    # 5 steps x 0.1 -> int(0.5) = 0 warm-up steps: no division by zero, decay 0.1 * (5 - s) / 5
    assert _lrs("linear_w_warmup", 5, 0.1, [0, 1, 4, 5]) == pytest.approx([0.1, 0.08, 0.02, 0.0], rel=1e-12)
    # default warmup_ratio 0.1 of 20 steps = 2 warm-up steps: 0, 0.05, then 0.1 * (20 - s)/18
    assert _lrs("linear_w_warmup", 20, 0.1, [0, 1, 2, 11]) == pytest.approx([0.0, 0.05, 0.1, 0.05], rel=1e-12)


@pytest.mark.parametrize("kind", LR_SCHEDULES)
def test_trainer_steps_the_schedule_once_per_optimizer_step(tmp_path, kind):
    """20 optimizer steps of 2 micro-batches (16 clips, micro 2, acc 2 -> 4 steps/epoch x 5 epochs):
    the optimizer uses lr(s) at step s (SGD: delta = -lr(s) * grad, exactly) and ``train/lr``
    reports lr(s + 1), the value after the step."""
    t = make_trainer(tmp_path, lr_schedule=kind, n_epochs=5, lr=0.1, min_lr=0.01, warmup_ratio=0.25)
    assert (t.total_steps, t.geom.acc_steps) == (20, 2)
    hand = dict(zip(STEPS, HAND_LR[kind]))
    data = t._micro_batches()
    params = t.trainable_parameters()
    for s in range(20):
        used = t.optimizer.param_groups[0]["lr"]
        if s in hand:
            assert used == pytest.approx(hand[s], rel=1e-12, abs=1e-15), s
        before = [p.detach().clone() for p in params]
        m = t.train_step([next(data), next(data)])
        assert all(p.grad is not None for p in params)
        for p, b in zip(params, before):
            assert torch.equal(p.detach(), b.add(p.grad, alpha=-used)), s
        if s + 1 in hand:
            assert m["lr"] == pytest.approx(hand[s + 1], rel=1e-12, abs=1e-15), s
        t.state.train_step += 1


# ---------------------------------------------------------------------------------- truncate_grads
def _set_grads(t: Trainer, gaze: float, task: float) -> None:
    for p in t.gaze_model.parameters():
        p.grad = torch.full_like(p, gaze)
    t.task.scale.grad = torch.full_like(t.task.scale, task)


@pytest.mark.parametrize("truncate,grad_norm,gaze_after,task_after", [
    # gaze: 36 parameters (proj 8x3 + 8, tlp 3 + 1) of grad 0.5 -> norm sqrt(36 * 0.25) = 3; task: |4| = 4
    (False, 1.0, 0.5, 4.0),        # off: untouched whatever grad_norm is
    (True, 2.0, 0.5 * 2 / 3, 2.0),  # both above 2: gaze scaled by 2/3, task by 2/4
    (True, 3.5, 0.5, 3.5),          # separately: gaze (3) stays, task (4) -> 3.5; a joint clip would scale both by 0.7
])
def test_clip_and_norm_hand_values(tmp_path, truncate, grad_norm, gaze_after, task_after):
    t = make_trainer(tmp_path, train_task=True, truncate_grads=truncate, grad_norm=grad_norm)
    assert sum(p.numel() for p in t.gaze_model.parameters()) == 36
    _set_grads(t, 0.5, 4.0)
    total = t._clip_and_norm()
    assert total == pytest.approx(5.0, rel=1e-6)  # sqrt(3^2 + 4^2), measured before clipping
    for p in t.gaze_model.parameters():
        torch.testing.assert_close(p.grad, torch.full_like(p, gaze_after), rtol=1e-5, atol=0)
    torch.testing.assert_close(t.task.scale.grad, torch.tensor(task_after), rtol=1e-5, atol=0)
    gaze_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in t.gaze_model.parameters()))
    assert gaze_norm == pytest.approx(min(3.0, grad_norm) if truncate else 3.0, rel=1e-5)


def _group_norm(params) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))


def test_truncate_grads_in_a_real_step(tmp_path):
    """One GRPO step that also trains the task: the clipped run's gradients are the unclipped ones
    scaled by min(1, c / norm) per group (gaze and task separately), the SGD update uses them, and
    both runs report the same ``grad_norm``: sqrt(gaze_norm^2 + task_norm^2) before clipping."""
    def run(name, **kw):
        torch.manual_seed(0)
        alg = GRPO.from_config({"group_size": 3, "optimize_task_loss_prediction": True})
        t = make_grpo_trainer(tmp_path / name, SamplingGazeModel(), RewardDoubleTask(), alg, ClipDataset(4, 2),
                              train_task=True, detach_task=False, lr=0.1, **kw)
        init = [p.detach().clone() for p in t.trainable_parameters()]
        torch.manual_seed(1)  # same rollouts in both runs
        return t, init, t.train_step([next(t._micro_batches())])

    off, _, m_off = run("off")
    gaze_p, task_p = list(off.gaze_model.parameters()), [off.task.scale]
    n_gaze, n_task = _group_norm(gaze_p), _group_norm(task_p)
    assert m_off["grad_norm"] == pytest.approx(math.hypot(n_gaze, n_task), rel=1e-6)
    lo, hi = sorted([n_gaze, n_task])
    assert hi > 1.5 * lo > 0, (n_gaze, n_task)    # a threshold between them tells separate from joint
    c = (lo + hi) / 2

    on, init, m_on = run("on", truncate_grads=True, grad_norm=c)
    assert m_on["grad_norm"] == m_off["grad_norm"]
    assert m_on["loss"] == m_off["loss"]
    for group_off, group_on, norm in [(gaze_p, list(on.gaze_model.parameters()), n_gaze),
                                      (task_p, [on.task.scale], n_task)]:
        scale = min(1.0, c / (norm + 1e-6))     # clip_grad_norm_'s coefficient
        for po, pn in zip(group_off, group_on):
            torch.testing.assert_close(pn.grad, po.grad * scale, rtol=1e-6, atol=1e-9)
        assert _group_norm(group_on) == pytest.approx(min(norm, c), rel=1e-5)
    for p, p0 in zip(on.trainable_parameters(), init):  # SGD, lr 0.1: the update is -lr * clipped grad
        assert torch.equal(p.detach(), p0.add(p.grad, alpha=-0.1))
    # the group under the threshold took exactly the unclipped step, the other a different one
    for po, pn, norm in [(off.gaze_model.proj.weight, on.gaze_model.proj.weight, n_gaze),
                         (off.task.scale, on.task.scale, n_task)]:
        assert torch.equal(po, pn) == (norm < c)


# ---------------------------------------------------------------------------------- bf16
@pytest.mark.parametrize("algo", ["ntp", "grpo"])
def test_bf16_step_runs_in_bf16_and_moves_the_parameters(tmp_path, algo):
    def build(precision):
        torch.manual_seed(0)
        if algo == "ntp":
            return make_trainer(tmp_path / precision, precision=precision, train_task=True)
        alg = GRPO.from_config({"group_size": 3, "optimize_task_loss_prediction": True})
        return make_grpo_trainer(tmp_path / precision, SamplingGazeModel(), RewardDoubleTask(), alg,
                                 ClipDataset(4, 2), precision=precision)

    results = {}
    for precision in ("fp32", "bf16"):
        t = build(precision)
        dtypes = []
        hook = t.gaze_model.proj.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        init = {k: v.clone() for k, v in t.gaze_model.state_dict().items()}
        torch.manual_seed(1)
        m = t.train_step([next(t._micro_batches())])
        hook.remove()
        assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
        assert m["nonfinite_steps"] == 0
        changed = [k for k, v in t.gaze_model.state_dict().items() if not torch.equal(v, init[k])]
        assert "proj.weight" in changed, changed
        assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                   for p in t.trainable_parameters())  # autocast: fp32 master weights and grads
        results[precision] = (set(dtypes), m, t.gaze_model.proj.weight.detach().clone(), init["proj.weight"])
    assert results["fp32"][0] == {torch.float32}
    assert results["bf16"][0] == {torch.bfloat16}      # the gaze model's matmuls ran in bf16
    if algo == "ntp":  # same data, same init: bf16 follows fp32 closely (not exactly)
        assert results["bf16"][1]["loss"] == pytest.approx(results["fp32"][1]["loss"], abs=2e-2)
        torch.testing.assert_close(results["bf16"][2], results["fp32"][2], atol=2e-2, rtol=0)


# ---------------------------------------------------------------------------------- GRPO resume
class RecordingClips(ClipDataset):
    """ClipDataset that records the indices it serves (the data order; num_workers=0)."""

    seen: list[int]

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def __getitem__(self, i):
        self.seen.append(int(i))
        return super().__getitem__(i)


def _grpo_run(exp: Path, model_seed: int = 0) -> Trainer:
    """GRPO on the sampling doubles; every source of state matters: dropout and sampling draw from the
    global RNG, Adam has moments, the LR warms up then decays, the temperature decays with the step,
    batches of 2 x 2 accumulation steps run over 3 shuffled epochs of 8 clips (6 optimizer steps)."""
    torch.manual_seed(model_seed)
    model = SamplingGazeModel(dropout=0.3)
    alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.9, "optimize_task_loss_prediction": True})
    cfg = TrainerConfig(batch_size=4, per_gpu_max_batch_size=2, lr=0.05, optimizer="adam",
                        lr_schedule="linear_w_warmup", warmup_ratio=0.34, n_epochs=3, num_workers=0, device="cpu",
                        train_task=False, detach_task=True, val_nsteps=1000, save_nsteps=1, visualize_every=0,
                        seed=3, resume="auto", log_nsteps=1000,
                        temp_schedule_args=TempScheduleConfig(exp={"temp_start": 2.0, "temp_end": 0.5}))
    return Trainer(cfg, model, RewardDoubleTask(), alg, RecordingClips(8, 2), None, ClipDataset.collate,
                   DistInfo(), exp, MetricLogger(LoggerConfig(), exp, "t", {}, True), {})


def _train_rows(exp: Path) -> list[dict]:
    return [r for r in read_metrics(exp / "metrics.jsonl") if "train/train_step" in r]


def test_grpo_stop_and_resume_is_bit_identical(tmp_path, monkeypatch):
    """Stopped right after the step-3 checkpoint (mid epoch 1, through the trainer's own fault hook)
    and resumed in a fresh trainer with other initial weights and a scrambled RNG, the run ends
    exactly where an uninterrupted one does."""
    seed_all(0)
    clean = _grpo_run(tmp_path / "clean")
    assert (clean.total_steps, clean.geom.acc_steps, clean.micro_per_epoch) == (6, 2, 4)
    clean.fit()
    clean_rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1])

    exp = tmp_path / "resumed"
    seed_all(0)
    first = _grpo_run(exp)
    fit_until_fault(first, 3, monkeypatch)
    assert torch.load(exp / "checkpoint_latest_train.pt", weights_only=False)["train_step"] == 3
    assert len(first.train_set.seen) == 3 * 4    # 3 steps x 2 micro-batches x 2 clips

    seed_all(12345)                              # only the checkpoint can restore the streams
    second = _grpo_run(exp, model_seed=777)       # other initial weights: only the checkpoint restores them
    assert not torch.equal(second.gaze_model.proj.weight, first.gaze_model.proj.weight)
    second.fit()
    assert second.state.train_step == clean.state.train_step == 6
    assert second.state.micro_step == clean.state.micro_step == 12

    # parameters
    for (k, a), b in zip(clean.gaze_model.state_dict().items(), second.gaze_model.state_dict().values()):
        assert torch.equal(a, b), k
    # optimizer (Adam moments and step counts) and scheduler
    oa, ob = clean.optimizer.state_dict(), second.optimizer.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for key, v in oa["state"][i].items():
            assert torch.equal(v, ob["state"][i][key]), (i, key)
    assert clean.scheduler.state_dict() == second.scheduler.state_dict()
    # RNG streams: torch, python and numpy end in the same state
    assert torch.equal(clean_rng[0], torch.get_rng_state())
    assert clean_rng[1] == random.getstate()
    assert np.array_equal(clean_rng[2], np.random.get_state()[1])
    # data order: the killed run served steps 1-3 and the resumed one steps 4-6 of the same order
    assert first.train_set.seen + second.train_set.seen == clean.train_set.seen
    assert sorted(clean.train_set.seen[:8]) == list(range(8))   # each epoch is a permutation
    assert clean.train_set.seen[:8] != clean.train_set.seen[8:16]  # and epochs differ (set_epoch)
    # every logged metric (loss, rewards, lr, temperature, grad_norm) of every step, exactly
    rows_clean, rows_resumed = _train_rows(tmp_path / "clean"), _train_rows(exp)
    assert [r["train/train_step"] for r in rows_resumed] == [1, 2, 3, 4, 5, 6]
    assert rows_resumed == rows_clean
    # the temperature schedule was live: the row of step s + 1 reports T(s) = 2 * (0.5/2) ** (s/6), the
    # temperature that step sampled at (train/lr, by contrast, is the lr after the step)
    temps = [r["train/temperature"] for r in rows_clean]
    assert temps == pytest.approx([2.0 * 0.25 ** (s / 6) for s in range(6)], rel=1e-12)


# ---------------------------------------------------------------------------------- checkpoints
def _ckpt_trainer(exp: Path, keep: int, **overrides) -> Trainer:
    """32 clips, micro 2, acc 2: 16 micro-batches/epoch, so step s is saved as checkpoint_ep0_iter{2s}."""
    torch.manual_seed(0)
    cfg = TrainerConfig(**{**dict(batch_size=4, per_gpu_max_batch_size=2, lr=0.1, optimizer="sgd",
                                  lr_schedule="constant", n_epochs=1, num_workers=0, device="cpu",
                                  train_task=False, val_nsteps=1000, save_nsteps=1, visualize_every=0,
                                  keep_checkpoints=keep, log_nsteps=1000), **overrides})
    return Trainer(cfg, DoubleGazeModel(), DoubleTask(), NTP.from_config({"optimize_task_loss_prediction": True}),
                   DoubleDataset(32, 2), None, DoubleDataset.collate, DistInfo(), exp,
                   MetricLogger(LoggerConfig(), exp, "t", {}, True), {})


def _leftovers(exp: Path) -> list[str]:
    return [str(p.relative_to(exp)) for p in exp.rglob("*")
            if p.name.startswith(".") or p.name.endswith((".tmp", ".old"))]


def _step_file(d: Path) -> int:
    return json.loads((d / "trainer_step.json").read_text())["train_step"]


@pytest.mark.parametrize("keep", [1, 3])
def test_pruning_keeps_the_newest_by_step(tmp_path, keep):
    """Steps 0..6 are saved as iter0, 2, ..., 12 (plus the final save of step 6 again). By name,
    'iter10' < 'iter8'; pruning goes by step, so the newest ``keep`` are iter12, iter10, iter8."""
    exp = tmp_path / "x"
    t = _ckpt_trainer(exp, keep, max_steps=6)
    t.fit()
    folders = sorted(p.name for p in exp.glob("checkpoint_ep*_iter*"))
    assert folders == sorted(f"checkpoint_ep0_iter{2 * s}" for s in [6, 5, 4][:keep])
    for name in folders:  # each kept folder is complete and self-consistent
        d = exp / name
        step = _step_file(d / "checkpoint_gaze")
        assert name == f"checkpoint_ep0_iter{2 * step}"
        assert torch.load(d / "checkpoint_train.pt", weights_only=False)["train_step"] == step
        assert (d / "checkpoint_gaze" / "model.safetensors").is_file()
        assert not (d / "checkpoint_task.pt").exists()            # train_task=False: the task is not saved
    # latest pointers: step 6, the trainer's final weights
    assert _step_file(exp / "checkpoint_latest_gaze") == 6
    assert torch.load(exp / "checkpoint_latest_train.pt", weights_only=False)["train_step"] == 6
    latest = load_file(str(exp / "checkpoint_latest_gaze" / "model.safetensors"))
    for k, v in t.gaze_model.state_dict().items():
        assert torch.equal(latest[k], v), k
    assert _leftovers(exp) == []
    found = t.ckpt._find(exp)
    assert found is not None and found[1]["train_step"] == 6


def test_failed_save_leaves_no_temp_dir_and_the_previous_checkpoint(tmp_path, monkeypatch):
    """A crash while writing the step-3 folder: no temp dir is left, the step-0..2 folders (keep=3)
    and the latest pointers (step 2) are intact, and resume=auto continues from step 2."""
    exp = tmp_path / "x"
    t = _ckpt_trainer(exp, 3, max_steps=6)
    real = checkpoint_mod.save_gaze_model
    calls = []

    def flaky(model, out):
        calls.append(out)
        if len(calls) == 7:  # saves write (folder, latest) each: call 7 is step 3's folder
            real(model, out)
            raise OSError("disk full")
        real(model, out)

    monkeypatch.setattr(checkpoint_mod, "save_gaze_model", flaky)
    with pytest.raises(OSError, match="disk full"):
        t.fit()
    assert t.state.train_step == 3
    assert sorted(p.name for p in exp.glob("checkpoint_ep*_iter*")) == \
        ["checkpoint_ep0_iter0", "checkpoint_ep0_iter2", "checkpoint_ep0_iter4"]
    assert _leftovers(exp) == []
    assert _step_file(exp / "checkpoint_latest_gaze") == 2
    monkeypatch.undo()
    r = _ckpt_trainer(exp, 3, max_steps=6, resume="auto")
    assert r.ckpt.maybe_resume(r) and r.state.train_step == 2 and r.state.micro_step == 4


# ---------------------------------------------------------------------------------- all-bad micro-batch
def test_all_bad_micro_batch_in_one_process_is_skipped_and_counted(tmp_path):
    """Micro-batch = global batch (acc 1): step 2's two clips are undecodable. fit() goes on, the step
    changes nothing (no gradient), logs loss 0 and grad_norm 0, and both clips are counted."""
    from tests.test_trainer_ddp_paths import SEED, BadClips, bad_collate, rank_order

    exp = tmp_path / "x"
    torch.manual_seed(0)
    cfg = TrainerConfig(batch_size=2, per_gpu_max_batch_size=2, lr=0.1, optimizer="sgd", lr_schedule="constant",
                        n_epochs=1, max_steps=3, num_workers=0, device="cpu", train_task=False, val_nsteps=1000,
                        save_nsteps=1, keep_checkpoints=5, visualize_every=0, seed=SEED, log_nsteps=1000)
    ds = BadClips(rank_order(16, 0, world=1)[2:4])
    t = Trainer(cfg, DoubleGazeModel(), DoubleTask(), NTP.from_config({"optimize_task_loss_prediction": True}),
                ds, None, bad_collate, DistInfo(), exp, MetricLogger(LoggerConfig(), exp, "t", {}, True), {})
    assert t.geom.acc_steps == 1
    t.fit()
    assert t.state.train_step == 3 and t.state.skipped_videos == 2 and t.state.nonfinite_steps == 0
    rows = _train_rows(exp)
    assert [r["train/skipped_videos"] for r in rows] == [0.0, 2.0, 2.0]
    assert rows[1]["train/loss"] == 0.0 and rows[1]["train/grad_norm"] == 0.0
    assert rows[0]["train/loss"] > 0 and rows[2]["train/loss"] > 0
    after1 = load_file(str(exp / "checkpoint_ep0_iter1" / "checkpoint_gaze" / "model.safetensors"))
    after2 = load_file(str(exp / "checkpoint_ep0_iter2" / "checkpoint_gaze" / "model.safetensors"))
    after0 = load_file(str(exp / "checkpoint_ep0_iter0" / "checkpoint_gaze" / "model.safetensors"))
    assert all(torch.equal(after1[k], after2[k]) for k in after1)          # the empty step moved nothing
    assert not torch.equal(after0["proj.weight"], after1["proj.weight"])  # the others did
