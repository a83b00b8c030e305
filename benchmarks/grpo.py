"""Time ONE GRPO training step on CPU and split it into phases; prints a table, not a test.

    .venv/bin/python benchmarks/grpo.py                          # all variants, fp32 and bf16
    .venv/bin/python benchmarks/grpo.py --variants cap75 --clips 1,2 --dtypes fp32
    .venv/bin/python benchmarks/grpo.py --profile cap75          # + torch.profiler top ops

Setting: the seed RL script scaled for CPU. G=12 rollouts of B clips of 16 frames
at 224x224; the released AutoGaze architecture (K=10, hidden 192, 4 layers; the upstream fixture
checkpoint when present, else the same config with random weights); the ``tiny`` VideoMAE preset
(l1 loss, recon_sample_rate 0.125 = 2 rebuilt frames, frozen, ``detach_task``); SGD; a fixed
temperature of 3 (the schedule's start). Per-frame budgets are ``self``:

    script  ratio 0.75, tau ~ U(0.5, 1.0)   the script's settings. With random weights the task-loss
                                            head predicts ~0, far below tau, so the probe stops
                                            after ONE gaze per frame: a degenerate, cheap rollout.
    cap75   ratio 0.75, tau unreachable     the probe runs to the 198-gaze cap on every frame: what a
                                            trained policy's long frames cost (an upper bound).
    cap10   ratio 0.10, tau unreachable     26 gazes per frame (the cheaper setting).

Each step is timed in two modes in the same run, with the same seed, interleaved; the losses are
printed (they agree):

    before  ``GRPO.share_vision_tokens = False``: every call encodes the video itself (the probe on
            the B clips, the rollout and the re-score on all G*B copies).
    after   shared: one no-grad encode of the B clips for probe + rollout, one with-grad encode of
            the B clips inside the re-score, repeated over the G copies. Times are the MIN over
``--repeats`` per phase and for the total (the cores are shared; min is the least disturbed run).
A line first times the vision encoder alone on 1 and G copies: the exact work the change removes.
Phases:

    encode  the shared no-grad vision encode (after only)
    probe   the ``self`` budget probe (a no-grad generation of the first group copy)
    rollout the sampled generation of all G*B rollouts (no grad)
    rescore teacher-forced scoring with grad (the forward)
    reward  the frozen task's forward (no grad)
    loss    GRPO's loss (advantages, discounting, REINFORCE) -- forward only
    backward .backward() of the mean loss
    optim   SGD step
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import defaultdict
from pathlib import Path

import torch

from autogaze.algorithms import GRPO, GazePolicy
from autogaze.algorithms.base import ScoreAdapter
from autogaze.models.autogaze import AutoGaze, AutoGazeConfig
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.types import Batch
from autogaze.utils.runtime import tune_cpu

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "upstream" / "autogaze_model"
VARIANTS = {  # name -> (video gazing ratio, tau range used by the probe)
    "script": (0.75, (0.5, 1.0)),
    "cap75": (0.75, (-1e4, -1e4 + 1)),
    "cap10": (0.10, (-1e4, -1e4 + 1)),
}
PHASES = ("encode", "probe", "rollout", "rescore", "reward", "loss", "backward", "optim")
G, T, S, TEMPERATURE = 12, 16, 224, 3.0


def build_model(ratio: float, tau: tuple[float, float]) -> AutoGaze:
    """The released architecture with the RL script's budget settings."""
    budget = dict(
        gazing_ratio_config={"sample_strategy_during_training": "fixed", "fixed": {"gazing_ratio": ratio}},
        gazing_ratio_each_frame_config={"sample_strategy_during_training": "self"},
        task_loss_requirement_config={"sample_strategy_during_training": "uniform",
                                      "uniform": {"task_loss_requirement_min": tau[0],
                                                  "task_loss_requirement_max": tau[1]}},
        has_task_loss_requirement_during_training=False)
    if FIXTURE.is_dir():
        cfg = AutoGazeConfig.from_pretrained(FIXTURE)
        for k, v in budget.items():
            setattr(cfg, k, v if not isinstance(v, dict) else {**getattr(cfg, k), **v})
        return AutoGaze.from_pretrained(FIXTURE, config=cfg).train()
    torch.manual_seed(0)
    cfg = AutoGazeConfig(scales="32+64+112+224", num_vision_tokens_each_frame=265, max_num_frames=T,
                         gaze_model_config={"gaze_decoder_config": {"num_multi_token_pred": 10}}, **budget)
    return AutoGaze(cfg).train()


def build_task() -> VideoMAEReconstruction:
    return VideoMAEReconstruction.from_config({"recon_model": "tiny", "scales": "32+64+112+224",
                                               "recon_sample_rate": 0.125,
                                               "recon_model_config": {"loss_type": "l1"}})


class Timer:
    """Accumulates wall time per phase."""

    def __init__(self):
        self.sec: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sec[phase] += time.perf_counter() - t0


class TimedPolicy(GazePolicy):
    """GazePolicy that books each call to its phase (the probe is the generate inside sample_budget)."""

    def __init__(self, model, scorer, timer: Timer):
        super().__init__(model, scorer)
        self.timer, self._in_probe, self._in_score = timer, False, False
        inner, inner_encode = model.generate, getattr(model, "encode_video", None)

        def generate(*args, **kwargs):  # the probe calls model.generate from sample_budget
            with timer("probe" if self._in_probe else "rollout"):
                return inner(*args, **kwargs)
        model.generate = generate

        def encode_video(*args, **kwargs):  # the shared encode of GRPO.rollout (after), not score's own
            with contextlib.nullcontext() if self._in_score else timer("encode"):
                return inner_encode(*args, **kwargs)
        if inner_encode is not None:
            model.encode_video = encode_video

    def sample_budget(self, video, **kwargs):
        self._in_probe = True
        try:
            return super().sample_budget(video, **kwargs)
        finally:
            self._in_probe = False

    def score(self, video, gazes, **kwargs):
        self._in_score = True
        try:
            with self.timer("rescore"):
                return super().score(video, gazes, **kwargs)
        finally:
            self._in_score = False


def train_step(model, task, alg: GRPO, video: torch.Tensor, precision: str, timer: Timer, seed: int):
    """Trainer._forward + train_step on one micro-batch, phase by phase. Returns (loss, grads, rollout)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    policy = TimedPolicy(model, ScoreAdapter(model), timer)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every repeat starts from the same weights
    opt.zero_grad(set_to_none=True)
    batch = alg.prepare(Batch(video, video, [f"clip{i}" for i in range(video.shape[0])]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        rollout = alg.rollout(policy, batch, TEMPERATURE)
        with timer("reward"), torch.no_grad():
            task_out = task(batch.video_for_task, rollout.gazes, generator=g)
        with timer("loss"):
            loss = alg.loss(batch, rollout, task_out).loss.float().mean()
    with timer("backward"):
        loss.backward()
    with timer("optim"):
        opt.step()
    del model.generate, model.encode_video  # drop the timing wrappers (instance attributes)
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, rollout


def main() -> None:
    tune_cpu()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="script,cap10,cap75")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--clips", default="1", help="comma list of B (clips per micro-batch); G*B rollouts")
    ap.add_argument("--repeats", type=int, default=2, help="timed steps per setting (min is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per variant before the first setting")
    ap.add_argument("--modes", default="before,after")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--profile", default="", help="variant to profile with torch.profiler (fp32, 'before')")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = build_task()
    print(f"threads={args.threads} G={G} T={T} {S}x{S} weights={'fixture' if FIXTURE.is_dir() else 'random'} "
          f"temperature={TEMPERATURE}; seconds per step, min of {args.repeats} interleaved runs")
    head = f"{'variant':7s} {'B':>2s} {'dtype':5s} {'mode':6s} {'gz/fr':>5s} " + \
        " ".join(f"{p:>8s}" for p in PHASES) + f" {'total':>8s} {'x':>5s}  loss"
    encoder_alone(args.repeats + 1)
    print(head)
    for name in args.variants.split(","):
        model = build_model(*VARIANTS[name])
        for i in range(args.warmup):  # kernels, allocator and thread pool
            train_step(model, task, make_alg(True), torch.randn(1, T, 3, S, S), "fp32", Timer(), seed=100 + i)
        for B in map(int, args.clips.split(",")):
            video = torch.randn(B, T, 3, S, S, generator=torch.Generator().manual_seed(B))
            for dtype in args.dtypes.split(","):
                modes = args.modes.split(",")
                runs, losses, gpf = defaultdict(list), {}, 0.0
                for i in range(args.repeats):  # modes interleaved, so load drift hits both alike
                    for mode in modes:
                        timer = Timer()
                        losses[mode], _, rollout = train_step(model, task, make_alg(mode == "after"), video,
                                                              dtype, timer, seed=i)
                        runs[mode].append(dict(timer.sec))
                        gpf = float((~rollout.gazes.is_padded).sum()) / (G * B * T)
                base = min(sum(r.values()) for r in runs[modes[0]])
                for mode in modes:  # min over repeats: the least disturbed run on shared cores
                    sec = {p: min(r.get(p, 0.0) for r in runs[mode]) for p in PHASES}
                    total = min(sum(r.values()) for r in runs[mode])
                    print(f"{name:7s} {B:2d} {dtype:5s} {mode:6s} {gpf:5.1f} " +
                          " ".join(f"{sec[p]:8.3f}" for p in PHASES) +
                          f" {total:8.3f} {base / total:5.2f}  {losses[mode]:.6f}", flush=True)
        if name == args.profile:
            profile(model, task)


def encoder_alone(repeats: int) -> None:
    """The work the change removes, without the noise of a whole step: encode 1 vs G copies."""
    model = build_model(*VARIANTS["script"])
    video = torch.randn(G, T, 3, S, S)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def fwd_bwd(rows: int):
        model.zero_grad(set_to_none=True)
        model.encode_video(video[:rows]).float().square().mean().backward()
    with torch.no_grad():
        nograd = {r: best(lambda: model.encode_video(video[:r])) for r in (1, G)}
    grad = {r: best(lambda: fwd_bwd(r)) for r in (1, G)}
    print(f"vision encoder alone (fp32, min of {repeats}): no-grad 1 clip {nograd[1]:.3f}s, {G} copies "
          f"{nograd[G]:.3f}s; fwd+bwd 1 clip {grad[1]:.3f}s, {G} copies {grad[G]:.3f}s. Before a step pays "
          f"1 + {G} no-grad + {G} fwd+bwd = {nograd[1] + nograd[G] + grad[G]:.2f}s, after 1 no-grad + 1 "
          f"fwd+bwd = {nograd[1] + grad[1]:.2f}s")


def make_alg(share: bool) -> GRPO:
    alg = GRPO.from_config({"group_size": G, "discount_factor": 0.995, "optimize_task_loss_prediction": True})
    alg.share_vision_tokens = share
    return alg


def profile(model, task) -> None:
    from torch.profiler import ProfilerActivity, profile as tprofile

    video = torch.randn(1, T, 3, S, S, generator=torch.Generator().manual_seed(1))
    alg = make_alg(False)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, task, alg, video, "fp32", Timer(), seed=0)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
