"""Gaze-model speed on CPU (or CUDA): prints figures, asserts nothing. Not a test.

    .venv/bin/python benchmarks/gaze.py [--threads 2 1] [--repeats 5] [--device cpu]

Times, in one run and side by side (the machine may be shared; compare ratios):
  1. greedy gazing of one 16x224 clip at ratio 0.1, and at ratio 0.75 with requirement 0.7
     (the released architecture, K = 10; fixture weights when ../shared is present, else random);
  2. a teacher-forced forward + backward at batch 8 with 26 gazes per frame (no padded slot);
  3. the same with 30% of the slots padded, packed (decoder.packed_attention) against the
     reference masked path, run interleaved: the before/after ratio of the padding fast path.
Each in fp32 and under bf16 autocast, for every thread count given. Medians (and minima) of the
repeats; the load average is printed, since other processes only ever add time.
Reference: upstream on the 2-core CPU, 2 threads, random weights: ~0.81 s for the ratio-0.1
gazing and ~9.3 s for the teacher-forced batch.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

from autogaze.models.autogaze import AutoGaze, AutoGazeConfig
from autogaze.types import Budget, Gazes

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "upstream" / "autogaze_model"
UPSTREAM_S = {"greedy ratio 0.1": 0.81, "train step b8": 9.3}


def load_model(device: str) -> AutoGaze:
    if FIXTURE.is_dir():
        return AutoGaze.from_pretrained(FIXTURE).to(device)
    cfg = AutoGazeConfig(scales="32+64+112+224", num_vision_tokens_each_frame=265,
                         gaze_model_config={"gaze_decoder_config": {"num_multi_token_pred": 10}})
    torch.manual_seed(0)
    return AutoGaze(cfg).to(device)


def timed_interleaved(fns: dict, repeats: int) -> dict:
    """{name: fn} -> {name: (median s, min s, last result)}; one warm-up each, then the variants
    run in turn every repeat, so a change of machine load hits them alike."""
    out = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[name] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t), out[name]) for name, t in times.items()}


def random_gazes(B: int, T: int, n: int, P: int, device, seed: int = 0, pad_prob: float = 0.0) -> Gazes:
    """n distinct random patches per frame, each slot padded with probability pad_prob: ids [B, T*n]."""
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :n]  # [B, T, n]
    ids = (local + torch.arange(T)[None, :, None] * P).flatten(1)
    pad = torch.rand(ids.shape, generator=g) < pad_prob
    return Gazes(ids.to(device), pad.to(device), torch.full((T,), n, device=device), P)


def train_step(model: AutoGaze, batch: torch.Tensor, gazes: Gazes, packed: bool = True) -> torch.Tensor:
    """Teacher-forced forward + backward; returns the log-probs [B, N] (detached)."""
    model.decoder.packed_attention = packed
    try:
        model.zero_grad(set_to_none=True)
        scores = model.score(batch, gazes)
        real = ~gazes.is_padded
        (-scores.log_probs[real].mean() + scores.task_loss_prediction[real].pow(2).mean()).backward()
    finally:
        model.decoder.packed_attention = True
    return scores.log_probs.detach()


def agreement(a, b) -> str:
    """How close two results of one case are (bf16 vs fp32, or fast vs reference path)."""
    if isinstance(a, torch.Tensor):
        return f"max |dp| {float((a.exp() - b.exp()).abs().max()):.2g}"
    ma, mb = a.gazes.to_mask(), b.gazes.to_mask()
    jac = float(((ma * mb).sum(-1) / ((ma + mb) > 0).sum(-1).clamp_min(1)).mean())
    return f"gaze Jaccard {jac:.3f}"


def run_cases(model, video, budgets, batch, gazes, padded, repeats: int) -> dict:
    """{case: (median, min, result)} for the current thread count and autocast state."""
    res = {}
    for name, budget in budgets.items():
        res.update(timed_interleaved({name: lambda b=budget: model.generate(video, b)}, repeats))
    n = max(1, repeats // 2)
    res.update(timed_interleaved({"train step b8": lambda: train_step(model, batch, gazes)}, n))
    res.update(timed_interleaved({"train b8 30% pad, packed": lambda: train_step(model, batch, padded),
                                  "train b8 30% pad, masked": lambda: train_step(model, batch, padded, False)}, n))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-batch", type=int, default=8)
    args = ap.parse_args()
    dev = args.device
    model = load_model(dev).eval()
    P = model.tokens_per_frame
    video = torch.randn(1, 16, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(dev)
    budgets = {
        "greedy ratio 0.1": model.sample_budget(video, training=False, gazing_ratio=0.1),
        "greedy ratio 0.75 req 0.7": model.sample_budget(video, training=False, gazing_ratio=0.75,
                                                         task_loss_requirement=0.7),
    }
    batch = video.repeat(args.train_batch, 1, 1, 1, 1)
    gazes = random_gazes(args.train_batch, 16, 26, P, dev)
    padded = random_gazes(args.train_batch, 16, 26, P, dev, seed=1, pad_prob=0.3)

    print(f"device={dev} repeats={args.repeats}; seconds as median (min); loadavg {_loadavg()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        results = {}
        for precision in ("fp32", "bf16"):
            ctx = (torch.autocast(torch.device(dev).type, dtype=torch.bfloat16) if precision == "bf16"
                   else contextlib.nullcontext())
            with ctx:
                results[precision] = run_cases(model, video, budgets, batch, gazes, padded, args.repeats)
        print(f"--- threads={threads}  loadavg after {_loadavg()}")
        for name in results["fp32"]:
            line = f"{name:28s}"
            for precision in ("fp32", "bf16"):
                med, low, _ = results[precision][name]
                line += f"  {precision} {med:7.3f} ({low:6.3f}) s"
            ref = UPSTREAM_S.get(name)
            if ref:
                line += f"  vs upstream {ref:.2f} s: fp32 {ref / results['fp32'][name][0]:4.2f}x, " \
                        f"bf16 {ref / results['bf16'][name][0]:4.2f}x"
            print(line + f"   bf16 vs fp32: {agreement(results['fp32'][name][2], results['bf16'][name][2])}")
        for precision in ("fp32", "bf16"):
            fast, ref = results[precision]["train b8 30% pad, packed"], results[precision]["train b8 30% pad, masked"]
            print(f"padded training, packed vs masked ({precision}): {ref[0] / fast[0]:4.2f}x faster, "
                  f"{agreement(fast[2], ref[2])}")
    # fp32 outputs are deterministic run to run (same gazes every repeat)
    again = model.generate(video, budgets["greedy ratio 0.1"])
    print("fp32 greedy repeat identical:", torch.equal(again.gazes.ids, results["fp32"]["greedy ratio 0.1"][2].gazes.ids))


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
