"""Gaze-model speed on CPU (or CUDA): prints figures, asserts nothing. Not a test.

    .venv/bin/python benchmarks/gaze.py [--threads 2 1] [--repeats 7] [--device cpu] [--cases all|dict]

Times, in one run and side by side (the machine may be shared; compare ratios):
  1. greedy gazing of one 16x224 clip at ratio 0.1, and at ratio 0.75 with requirement 0.7
     (the released architecture, K = 10; fixture weights when ../shared is present, else random);
  2. a teacher-forced forward + backward at batch 8 with 26 gazes per frame (no padded slot);
  3. the same with 30% of the slots padded;
  4. the dict call ``model({"video": v}, gazing_ratio=...)`` (eval mode: scores read off the decode)
     against ``generate_only=True`` and the two-pass generate + teacher-forced score (fp32, fast path).
Each case runs on the fast path (the default ``SpeedOptions()``: packed decoder layers, the greedy
host scan, oneDNN linears as installed by ``tune_cpu``) and on the reference path
(``SpeedOptions.reference()``: each LlamaDecoderLayer's own forward with one additive mask, the
head-by-head greedy loop, MKL linears), interleaved repeat by repeat so that a change of machine
load hits both alike; in fp32 and under bf16 autocast; for every thread count given. The process
uses the allocator setting of our entry points (autogaze.utils.runtime). Figures: minimum (the
least disturbed run) and median.
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

from autogaze.models.autogaze import AutoGaze, AutoGazeConfig, SpeedOptions, speed_options
from autogaze.types import Gazes
from autogaze.utils.runtime import tune_cpu

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "upstream" / "autogaze_model"
UPSTREAM_S = {"greedy ratio 0.1": 0.81, "train step b8": 9.3}
DICT_CASES = {"dict ratio 0.1": dict(gazing_ratio=0.1),
              "dict ratio 0.75 req 0.7": dict(gazing_ratio=0.75, task_loss_requirement=0.7)}


def load_model(device: str) -> AutoGaze:
    if FIXTURE.is_dir():
        return AutoGaze.from_pretrained(FIXTURE).to(device)
    cfg = AutoGazeConfig(scales="32+64+112+224", num_vision_tokens_each_frame=265,
                         gaze_model_config={"gaze_decoder_config": {"num_multi_token_pred": 10}})
    torch.manual_seed(0)
    return AutoGaze(cfg).to(device)


def path(model: AutoGaze, fast: bool):
    """The fast path (default) or the reference path (see the module docstring), restored after."""
    return speed_options(model, SpeedOptions() if fast else SpeedOptions.reference())


def timed(fns: dict, repeats: int) -> dict:
    """{name: fn} -> {name: (min s, median s, last result)}; one warm-up each, then the variants
    alternate every repeat, so that a change of machine load hits them alike."""
    times, out = {name: [] for name in fns}, {}
    for rep in range(repeats + 1):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[name] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if rep:
                times[name].append(time.perf_counter() - t0)
    return {name: (min(t), statistics.median(t), out[name]) for name, t in times.items()}


def timed_pair(model: AutoGaze, fn, repeats: int) -> dict:
    """fn() on both paths -> {"fast"|"reference": (min s, median s, last result)}, interleaved."""
    def on(fast: bool):
        def run():
            with path(model, fast):
                return fn()
        return run
    return timed({"fast": on(True), "reference": on(False)}, repeats)


def dict_call_cases(model: AutoGaze, video: torch.Tensor, repeats: int) -> dict:
    """The README's dict call (eval mode) against ``generate_only=True`` and the former two-pass
    call (generate, then teacher-forced score), interleaved -> {case: timed result}."""
    res = {}
    for name, kw in DICT_CASES.items():
        def two_pass(kw=kw):
            with torch.no_grad():
                budget = model.sample_budget(video, training=False, **kw)
                return model.score(video, model.generate(video, budget).gazes)
        res[name] = timed({"dict call": lambda kw=kw: model({"video": video}, **kw),
                           "generate_only": lambda kw=kw: model({"video": video}, generate_only=True, **kw),
                           "two-pass": two_pass}, repeats)
    return res


def random_gazes(B: int, T: int, n: int, P: int, device, seed: int = 0, pad_prob: float = 0.0) -> Gazes:
    """n distinct random patches per frame, each slot padded with probability pad_prob: ids [B, T*n]."""
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :n]  # [B, T, n]
    ids = (local + torch.arange(T)[None, :, None] * P).flatten(1)
    pad = torch.rand(ids.shape, generator=g) < pad_prob
    return Gazes(ids.to(device), pad.to(device), torch.full((T,), n, device=device), P)


def train_step(model: AutoGaze, batch: torch.Tensor, gazes: Gazes) -> torch.Tensor:
    """Teacher-forced forward + backward; returns the log-probs [B, N] (detached)."""
    model.zero_grad(set_to_none=True)
    scores = model.score(batch, gazes)
    real = ~gazes.is_padded
    (-scores.log_probs[real].mean() + scores.task_loss_prediction[real].pow(2).mean()).backward()
    return scores.log_probs.detach()


def agreement(a, b) -> str:
    """How close two results of one case are (bf16 vs fp32, or fast vs reference path)."""
    if isinstance(a, torch.Tensor):
        return f"max |dp| {float((a.exp() - b.exp()).abs().max()):.2g}"
    if torch.equal(a.gazes.ids, b.gazes.ids) and torch.equal(a.gazes.is_padded, b.gazes.is_padded):
        return "identical gazes"
    ma, mb = a.gazes.to_mask(), b.gazes.to_mask()
    jac = float(((ma * mb).sum(-1) / ((ma + mb) > 0).sum(-1).clamp_min(1)).mean())
    return f"gaze Jaccard {jac:.3f}"


def run_cases(model, video, budgets, batch, gazes, padded, repeats: int) -> dict:
    """{case: timed_pair result} for the current thread count and autocast state."""
    res = {}
    with torch.no_grad():
        for name, budget in budgets.items():
            res[name] = timed_pair(model, lambda b=budget: model.generate(video, b), repeats)
    n = max(1, repeats // 2)
    res["train step b8"] = timed_pair(model, lambda: train_step(model, batch, gazes), n)
    res["train b8 30% pad"] = timed_pair(model, lambda: train_step(model, batch, padded), n)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--cases", choices=["all", "dict"], default="all", help="dict: only the dict-call rows")
    args = ap.parse_args()
    dev = args.device
    allocator = tune_cpu()
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

    print(f"device={dev} repeats={args.repeats} allocator tuning={allocator}; seconds as min / median; "
          f"loadavg {_loadavg()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        if args.cases == "all":
            results = {}
            for precision in ("fp32", "bf16"):
                ctx = (torch.autocast(torch.device(dev).type, dtype=torch.bfloat16) if precision == "bf16"
                       else contextlib.nullcontext())
                with ctx:
                    results[precision] = run_cases(model, video, budgets, batch, gazes, padded, args.repeats)
            print(f"--- threads={threads}  loadavg after {_loadavg()}")
            print_path_cases(results, threads)
        dict_results = dict_call_cases(model, video, args.repeats)  # fp32, fast path
        print(f"--- threads={threads} (dict call)  loadavg after {_loadavg()}")
        for name, res in dict_results.items():
            (d_min, d_med, _), (g_min, g_med, _), (t_min, t_med, _) = (res[k] for k in
                                                                      ("dict call", "generate_only", "two-pass"))
            print(f"fp32 {name:26s} dict call {d_min:6.3f} / {d_med:6.3f} s   generate_only {g_min:6.3f} / "
                  f"{g_med:6.3f} s   dict/generate_only {d_min / g_min:4.2f}x (min), {d_med / g_med:4.2f}x (median)"
                  f"   two-pass (generate + score) {t_min:6.3f} / {t_med:6.3f} s")
    if args.cases == "all":  # fp32 outputs are deterministic run to run (same gazes every repeat)
        with torch.no_grad():
            again = model.generate(video, budgets["greedy ratio 0.1"])
        print("fp32 greedy repeat identical:",
              torch.equal(again.gazes.ids, results["fp32"]["greedy ratio 0.1"]["fast"][2].gazes.ids))


def print_path_cases(results: dict, threads: int) -> None:
    """One line per case and precision of ``run_cases``: fast vs reference path (and upstream)."""
    for precision in ("fp32", "bf16"):
        for name, res in results[precision].items():
            (f_min, f_med, f_out), (r_min, r_med, r_out) = res["fast"], res["reference"]
            line = (f"{precision} {name:26s} fast {f_min:6.3f} / {f_med:6.3f} s   reference {r_min:6.3f} / "
                    f"{r_med:6.3f} s   fast/reference {r_min / f_min:4.2f}x")
            ref = UPSTREAM_S.get(name) if threads == 2 else None  # upstream was timed with 2 threads
            if ref:
                line += f"   vs upstream {ref:.2f} s: {ref / f_min:4.2f}x (min), {ref / f_med:4.2f}x (median)"
            print(line + f"   fast vs reference: {agreement(f_out, r_out)}")
    for name in results["fp32"]:
        print(f"bf16 vs fp32, {name}: {agreement(results['fp32'][name]['fast'][2], results['bf16'][name]['fast'][2])}")


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
