"""Trainer paths under 2-process DDP (gloo, CPU) that have no test elsewhere (issue 14, section 4).

* GRPO on 2 ranks x micro-batch 2 equals 1 process x micro-batch 2 x 2 accumulation steps.
* So do TATS's PPO (an MAE step, then 2 PPO epochs over each rank's own memory) and AdaMAE's joint
  step, on the real tube VideoMAE and samplers at a tiny size; both modules are trained (two DDP
  wrappers), with AdamW and separate learning rates.
* A micro-batch whose clips are all undecodable on one rank: that rank replays its previous batch at
  weight 0 so that both ranks join the gradient all-reduce; the step completes on both ranks, the
  skipped clips are counted, and the parameters equal a single-process step in which that
  micro-batch contributes nothing.

One ``torch.multiprocessing`` start of 2 spawned processes (file store, module-scoped fixture) runs
every scenario; the single-process references run in the test process. Marked ``slow`` like the other
multi-process tests (tests/test_trainer.py's torchrun tests).
"""
from __future__ import annotations

import datetime
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autogaze.algorithms import GRPO, NTP, AdaMAEAlgorithm, TATSPPO
from autogaze.config import LoggerConfig, TempScheduleConfig, TrainerConfig
from autogaze.trainer import Trainer
from autogaze.types import Batch, Budget, GazeRollout, Gazes
from autogaze.utils.distributed import DistInfo
from autogaze.utils.metric_logger import MetricLogger
from autogaze.utils.sampler import ResumableDistributedSampler
from tests.doubles import P, DoubleDataset, DoubleGazeModel, DoubleTask
from tests.doubles_grpo import ClipDataset, RewardDoubleTask, SamplingGazeModel
from tests.doubles_tokens import SAMPLER_KEYS, ClipSeededAdaMAE, ClipSeededTATS, clips, make_task, make_token_trainer

WORLD = 2
SEED = 5
GRPO_STEPS = 2


# ---------------------------------------------------------------------------------- doubles
class ClipSeededSampler(SamplingGazeModel):
    """TEST DOUBLE: SamplingGazeModel whose draws depend only on (clip content, copy within the
    group), not on the global RNG or on which clips share the micro-batch, so that 2 ranks x micro 2
    and 1 rank x 2 micro-batches of 2 sample the same rollouts for the same clips."""

    def generate(self, video, budget: Budget, *, temperature: float = 1.0, **_) -> GazeRollout:
        keys, outs = [], []
        for r in range(video.shape[0]):
            key = round(float(video[r].double().sum()) * 1e6)
            g = torch.Generator().manual_seed(key * 16 + keys.count(key))
            keys.append(key)
            outs.append(super().generate(video[r:r + 1], Budget(budget.max_gazes[r:r + 1]),
                                         temperature=temperature, generator=g))
        gz = [o.gazes for o in outs]
        gazes = Gazes(torch.cat([x.ids for x in gz]), torch.cat([x.is_padded for x in gz]), gz[0].num_per_frame, P)
        return GazeRollout(gazes, budget=budget, sample_log_probs=torch.cat([o.sample_log_probs for o in outs]))


class _Bad:
    """An undecodable clip (as VideoFolder's ``Skipped`` marker)."""

    def __init__(self, i: int):
        self.path = f"bad{i}.mp4"


class BadClips(DoubleDataset):
    """TEST DOUBLE: DoubleDataset whose clips ``bad`` cannot be decoded."""

    def __init__(self, bad=(), n: int = 16):
        super().__init__(n, 2)
        self.bad = set(bad)

    def __getitem__(self, i: int):
        return _Bad(i) if i in self.bad else super().__getitem__(i)


def bad_collate(items) -> Batch:
    """As VideoFolder.collate: bad clips are dropped and listed; all bad -> a zero-row batch."""
    good = [it for it in items if not isinstance(it, _Bad)]
    skipped = [it.path for it in items if isinstance(it, _Bad)]
    if not good:
        empty = torch.empty(0, 2, 3, 4, 4)
        return Batch(empty, empty, [], None, skipped_paths=skipped)
    batch = DoubleDataset.collate(good)
    batch.skipped_paths = skipped
    return batch


def rank_order(n: int, rank: int, world: int = WORLD) -> list[int]:
    """Epoch-0 indices of ``rank`` under the trainer's sampler (seed SEED, ``world`` ranks)."""
    s = ResumableDistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=SEED, drop_last=True)
    s.set_epoch(0)
    return list(s)


def bad_indices(bad_rank: int, whole_step: bool = False) -> list[int]:
    """Both clips of ``bad_rank``'s second micro-batch of step 1 (micro 2, acc 2), or with
    ``whole_step`` all four clips of its step 1 (nothing earlier to replay)."""
    return rank_order(16, bad_rank)[0 if whole_step else 2:4]


# ---------------------------------------------------------------------------------- trainers
def _trainer(info: DistInfo, exp: Path, kind: str, bad_rank: int | None = None) -> Trainer:
    torch.manual_seed(0)
    common = dict(optimizer="sgd", lr_schedule="constant", n_epochs=1, num_workers=0, device="cpu",
                  train_task=False, val_nsteps=1000, save_nsteps=1000, visualize_every=0, seed=SEED)
    log = MetricLogger(LoggerConfig(), exp, "t", {}, info.is_main)
    if kind in ("tats_ppo", "adamae"):
        # global batch 4: 2 ranks x micro 2, or 1 rank x micro 2 x acc 2; warm-up off (its random masks
        # come from each rank's RNG stream); the clip-seeded samplers draw the same sets in both layouts
        if kind == "tats_ppo":
            model = ClipSeededTATS.from_config(SAMPLER_KEYS)
            alg = TATSPPO.from_config({"warmup_steps": 0, "update_steps_ppo": 2})
        else:
            model = ClipSeededAdaMAE.from_config({**SAMPLER_KEYS, "dropout": 0.0})
            alg = AdaMAEAlgorithm.from_config({"sampler_loss_weight": 1e-2})
        return make_token_trainer(exp, model, make_task(), alg, clips(8), info, batch_size=4, lr=1e-3, gaze_lr=1e-2,
                                  weight_decay=0.05, seed=SEED)
    if kind == "grpo":
        # global batch 4: 2 ranks x micro 2, or 1 rank x micro 2 x acc 2; Adam, decaying temperature
        cfg = TrainerConfig(batch_size=4, per_gpu_max_batch_size=2, detach_task=True,
                            **{**common, "optimizer": "adam", "lr": 0.05},
                            temp_schedule_args=TempScheduleConfig(exp={"temp_start": 2.0, "temp_end": 0.5}))
        alg = GRPO.from_config({"group_size": 3, "discount_factor": 0.9, "optimize_task_loss_prediction": True})
        return Trainer(cfg, ClipSeededSampler(), RewardDoubleTask(), alg, ClipDataset(8, 2), None,
                       ClipDataset.collate, info, exp, log, {})
    # replay: global batch 8: 2 ranks x micro 2 x acc 2, or 1 rank x micro 2 x acc 4
    cfg = TrainerConfig(batch_size=8, per_gpu_max_batch_size=2, lr=0.1, **common)
    ds = BadClips(bad_indices(bad_rank, kind == "replay_first") if bad_rank is not None else ())
    return Trainer(cfg, DoubleGazeModel(), DoubleTask(), NTP.from_config({"optimize_task_loss_prediction": True}),
                   ds, None, bad_collate, info, exp, log, {})


def _steps(t: Trainer, n: int) -> list[dict]:
    """``n`` optimizer steps as Trainer.fit takes them (without validation and checkpoints)."""
    data, out = t._micro_batches(), []
    for _ in range(n):
        micro = [next(data) for _ in range(t.geom.acc_steps)]
        t.state.micro_step += len(micro)
        out.append(t.train_step(micro))
        t.state.train_step += 1
    return out


def _params(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.gaze_model.state_dict().items()}


def _task_params(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.task.state_dict().items()}


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=30))
    info = DistInfo(rank, rank, WORLD, torch.device("cpu"))
    results = {}
    scenarios = [("grpo", None), ("replay", 1), ("replay", 0), ("replay_first", 1), ("tats_ppo", None),
                 ("adamae", None)]
    try:
        for kind, bad_rank in scenarios:
            name = kind if bad_rank is None else f"{kind}{bad_rank}"
            try:
                t = _trainer(info, Path(out) / name, kind, bad_rank)
                metrics = _steps(t, 1 if kind.startswith("replay") else GRPO_STEPS)
                results[name] = {"params": _params(t), "metrics": metrics, "state": vars(t.state).copy(),
                                 "geom": (t.geom.micro_batch, t.geom.acc_steps), "task": _task_params(t)}
            except Exception:
                results[name] = {"error": traceback.format_exc()}
    finally:
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict[int, dict]:
    """Every scenario on 2 gloo ranks; {rank: {scenario: results}}."""
    out = tmp_path_factory.mktemp("ddp")
    # Spawned, not forked: a fork after torch's lazy optimizer imports (torch._dynamo) can deadlock
    # the children. Most of the ~15 s is each rank's imports and its first optimizer construction.
    start = time.monotonic()
    ctx = mp.start_processes(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=False,
                             start_method="spawn")
    try:
        while not ctx.join(timeout=5):
            if time.monotonic() - start > 120:
                raise AssertionError("2-process run did not finish in 120 s (a rank left the all-reduce?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return {r: torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)}


def _ok(ddp: dict, name: str) -> list[dict]:
    res = [ddp[r][name] for r in range(WORLD)]
    for r, x in enumerate(res):
        assert "error" not in x, f"rank {r}:\n{x['error']}"
    return res


def _assert_params_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


# ---------------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_grpo_two_ranks_equal_one_with_accumulation(ddp, tmp_path):
    r0, r1 = _ok(ddp, "grpo")
    assert r0["geom"] == r1["geom"] == (2, 1)
    for k in r0["params"]:                            # DDP keeps the ranks in lock-step, bit for bit
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    single = _trainer(DistInfo(), tmp_path, "grpo")
    init = _params(single)
    assert (single.geom.micro_batch, single.geom.acc_steps) == (2, 2)
    metrics = _steps(single, GRPO_STEPS)
    _assert_params_close(r0["params"], _params(single), atol=1e-6)
    assert not torch.equal(init["proj.weight"], r0["params"]["proj.weight"])  # the steps moved the policy
    assert metrics[-1]["advantage_abs_mean"] > 0
    # the global gradient norm is the same too (DDP averages before clipping/measuring)
    for m_ddp, m_single in zip(r0["metrics"], metrics):
        assert m_ddp["grad_norm"] == pytest.approx(m_single["grad_norm"], rel=1e-5)
        assert m_ddp["temperature"] == m_single["temperature"] and m_ddp["lr"] == m_single["lr"]


@pytest.mark.slow
@pytest.mark.parametrize("bad_rank", [1, 0])
def test_all_bad_micro_batch_is_replayed_at_weight_zero(ddp, tmp_path, bad_rank):
    res = _ok(ddp, f"replay{bad_rank}")
    good_rank = 1 - bad_rank
    for r in range(WORLD):                            # the step completed on both ranks
        assert res[r]["geom"] == (2, 2) and res[r]["state"]["train_step"] == 1
        assert res[r]["metrics"][0]["nonfinite_steps"] == 0
    for k in res[0]["params"]:
        assert torch.equal(res[0]["params"][k], res[1]["params"][k]), k

    # single-process reference: the same 4 micro-batches, the empty one contributing nothing
    ref = _trainer(DistInfo(), tmp_path / "ref", "replay", bad_rank)
    assert ref.geom.acc_steps == 4
    ds = ref.train_set
    micro = [bad_collate([ds[i] for i in rank_order(16, r)[s:s + 2]]) for r in range(WORLD) for s in (0, 2)]
    assert micro[2 * bad_rank + 1].batch_size == 0 and len(micro[2 * bad_rank + 1].skipped_paths) == 2
    init = _params(ref)
    with torch.no_grad():
        first_loss = float(ref._forward(micro[2 * bad_rank])[0])
        good_losses = [float(ref._forward(micro[2 * good_rank + s])[0]) for s in (0, 1)]
    m_ref = ref.train_step(micro)
    _assert_params_close(res[0]["params"], _params(ref), atol=1e-6)
    assert not torch.equal(init["proj.weight"], res[0]["params"]["proj.weight"])
    assert m_ref["skipped_videos"] == 2.0

    # the weight-0 replay is not reported either: each rank's loss is the mean over its acc_steps
    # micro-batches with the empty one counting 0, as the single-process step reports it
    assert res[bad_rank]["metrics"][0]["loss"] == pytest.approx(first_loss / 2, rel=1e-6)
    assert res[good_rank]["metrics"][0]["loss"] == pytest.approx(sum(good_losses) / 2, rel=1e-6)

    # negative control: had the replay counted at full weight, the parameters would differ
    full = _trainer(DistInfo(), tmp_path / "full", "replay", bad_rank)
    replayed = list(micro)
    replayed[2 * bad_rank + 1] = micro[2 * bad_rank]
    full.train_step(replayed)
    assert (_params(full)["proj.weight"] - res[0]["params"]["proj.weight"]).abs().max() > 1e-4

    # the 2 undecodable clips are counted, on every rank (rank 0 is the one that logs)
    for r in range(WORLD):
        assert res[r]["state"]["skipped_videos"] == 2, (r, res[r]["state"])
        assert res[r]["metrics"][0]["skipped_videos"] == 2.0, r


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tats_ppo", "adamae"])
def test_token_algorithms_two_ranks_equal_one_with_accumulation(ddp, tmp_path, kind):
    r0, r1 = _ok(ddp, kind)
    assert r0["geom"] == r1["geom"] == (2, 1)
    for part in ("params", "task"):                   # DDP keeps the ranks in lock-step, bit for bit
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), (part, k)
    torch.manual_seed(0)
    single = _trainer(DistInfo(), tmp_path, kind)
    init, init_task = _params(single), _task_params(single)
    assert (single.geom.micro_batch, single.geom.acc_steps) == (2, 2)
    metrics = _steps(single, GRPO_STEPS)
    # The logit bias (actor.bias / head.bias) shifts every token's logit alike, so p does not depend on
    # it and its gradient is 0 up to float rounding; AdamW turns that noise into steps of up to
    # lr * noise / eps, whose sign depends on the summation order. It is left out; the gaze atol is
    # 1e-5 because other tiny gradients (near AdamW's eps) amplify rounding the same way.
    ddp_gaze, single_gaze = dict(r0["params"]), _params(single)
    for k in ("actor.bias", "head.bias"):
        ddp_gaze.pop(k, None), single_gaze.pop(k, None)
    _assert_params_close(ddp_gaze, single_gaze, atol=1e-5)
    # The MAE (xavier start, so its encoder gets real gradients) has such elements too: up to 3e-6 seen at
    # its lr 1e-3, so the same 1e-5 (1% of that lr).
    _assert_params_close(r0["task"], _task_params(single), atol=1e-5)
    assert [k for k in init if not torch.equal(init[k], r0["params"][k])]           # the sampler moved
    assert [k for k in init_task if not torch.equal(init_task[k], r0["task"][k])]   # and the MAE
    for m_ddp, m_single in zip(r0["metrics"], metrics):
        assert m_ddp["grad_norm"] == pytest.approx(m_single["grad_norm"], rel=1e-5)
        if kind == "tats_ppo":  # 2 PPO epochs of one minibatch (the whole memory) each
            assert m_ddp["ppo_steps"] == m_single["ppo_steps"] == 2
            assert m_ddp["ppo_grad_norm"] == pytest.approx(m_single["ppo_grad_norm"], rel=1e-5)


@pytest.mark.slow
def test_a_rank_whose_first_step_is_all_bad_replays_a_clip_of_the_split(ddp, tmp_path):
    """Rank 1's first four clips are undecodable, so it has no earlier micro-batch to replay: it
    replays the split's first decodable clip at weight 0 instead of leaving the all-reduce."""
    res = _ok(ddp, "replay_first1")
    for r in range(WORLD):
        assert res[r]["state"]["train_step"] == 1 and res[r]["state"]["skipped_videos"] == 4
    for k in res[0]["params"]:
        assert torch.equal(res[0]["params"][k], res[1]["params"][k]), k
    assert res[1]["metrics"][0]["loss"] == 0.0                      # the replay reports nothing

    ref = _trainer(DistInfo(), tmp_path / "ref", "replay_first", 1)
    ds = ref.train_set
    micro = [bad_collate([ds[i] for i in rank_order(16, r)[s:s + 2]]) for r in range(WORLD) for s in (0, 2)]
    assert [m.batch_size for m in micro] == [2, 2, 0, 0]
    init = _params(ref)
    ref.train_step(micro)                                            # rank 0's clips, weighted 1/4 each
    _assert_params_close(res[0]["params"], _params(ref), atol=1e-6)
    assert not torch.equal(init["proj.weight"], res[0]["params"]["proj.weight"])
