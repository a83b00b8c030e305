"""Greedy labelling speed: the prefix-cached labeller against the uncached one and the task's
public forward, side by side, with a FLOP cost model.

    .venv/bin/python benchmarks/label.py                      # CPU: tiny and base, 16 x 224 px
    .venv/bin/python benchmarks/label.py --device cuda --dims tiny,base --rows 265
    .venv/bin/python benchmarks/label.py --check              # also label one small clip fully

Setting (paper section 3.2): 16 frames of 224x224, scales 32+64+112+224 (P = 265), budgets from the
labeller's defaults (ratio ~ Exp(10) truncated to [0.02, 0.2], Dirichlet(10, 3, ..., 3) split: about
470 gazes per clip), random MAE weights (speed does not depend on them), l1 loss.

Variants (benchmarks/label_reference.py): ``cached`` = the labeller (block-causal prefix caching);
``cached_bf16`` = the same under bf16 autocast (``--precision bf16``: not bit-equal, losses move by
about 1e-3, so a near-tie can flip); ``uncached`` = the labeller before it (every row reruns all
context gazes); ``public`` = one candidate set per row of the task's public forward.

A clip is hundreds of greedy steps, each scoring up to 265 candidates: minutes to hours on CPU. So
the benchmark **measures** one step (the first of frame t, scoring ``--rows`` candidates in one
forward) at t = 0, T/2, T-1 after the expected number of label gazes in each earlier frame, the
variants interleaved; it scales the step to all P candidates (rows are independent, so a step's
cost is linear in them), interpolates linearly in t, and multiplies by the expected gazes per frame:
an **extrapolated** clips/minute. ``--check`` labels one small clip fully and prints measured
against extrapolated time. FLOPs come from torch's FlopCounterMode on the same step (matmuls and
attention); the clips/hour on a GPU are an **estimate** from FLOPs and the stated throughput.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from autogaze.labeling import LabelBudget, clip_generator, frame_scorer, label_clip, sample_clip_budget
from autogaze.labeling.greedy import frozen, greedy_frame
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.utils.runtime import tune_cpu

from label_reference import PublicForwardScorer, UncachedScorer

PRESETS = {"tiny": "tiny", "base": "facebook/vit-mae-base", "large": "facebook/vit-mae-large"}
VARIANTS = {
    "cached": lambda task, video, t, ctx: frame_scorer(task, video, t, ctx),
    "cached_bf16": lambda task, video, t, ctx: frame_scorer(task, video, t, ctx, precision="bf16"),
    "uncached": UncachedScorer,
    "public": PublicForwardScorer,
}


def expected_budget(T: int, P: int, draws: int = 200) -> list[float]:
    """Mean gazes per frame [T] under the labeller's default budget settings."""
    b = LabelBudget().validate()
    rows = torch.tensor([sample_clip_budget(b, T, P, clip_generator(s, "bench")) for s in range(draws)]).float()
    return rows.mean(0).tolist()


def context_labels(t: int, per_frame: int, P: int) -> list[list[int]]:
    """Random label gazes (global ids) for frames 0..t-1."""
    g = torch.Generator().manual_seed(t)
    return [[s * P + int(i) for i in torch.randperm(P, generator=g)[:per_frame]] for s in range(t)]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(task, video, variants: list[str], points: list[int], ctx: int, rows: int,
               repeats: int) -> dict[tuple[str, int], float]:
    """Median seconds of one full greedy step (all P candidates, scaled from ``rows``) per
    (variant, t); variants interleaved inside every repeat so load changes hit them alike."""
    P = task.tokens_per_frame
    scale = P / rows
    out: dict[tuple[str, int], float] = {}
    for t in points:
        context = context_labels(t, ctx, P)
        scorers = {v: VARIANTS[v](task, video, t, context) for v in variants}
        cands, base = torch.arange(rows, device=video.device), torch.zeros(0, dtype=torch.long, device=video.device)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(repeats + 1):  # the first round warms up kernels and allocators
            for v in variants:
                _sync(video.device)
                t0 = time.perf_counter()
                scorers[v].losses(base, cands)
                _sync(video.device)
                if i:
                    times[v].append(time.perf_counter() - t0)
        for v in variants:
            out[v, t] = sorted(times[v])[len(times[v]) // 2] * scale
    return out


def _attention_flops(query_shape, key_shape, *args, out_shape=None, **kwargs) -> int:
    """q @ k^T and p @ v: 2 * 2 * B * H * Lq * Lk * dh (FlopCounterMode has no rule for the CPU kernel)."""
    B, H, Lq, dh = query_shape
    return 4 * B * H * Lq * key_shape[2] * dh


def step_flops(task, video, variant: str, t: int, ctx: int, rows: int) -> float:
    """FLOPs of one full greedy step of a variant at frame t (scaled from ``rows``)."""
    P = task.tokens_per_frame
    scorer = VARIANTS[variant](task, video, t, context_labels(t, ctx, P))
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        scorer.losses(torch.zeros(0, dtype=torch.long, device=video.device), torch.arange(rows, device=video.device))
    return counter.get_total_flops() * P / rows


def per_clip(budget: list[float], per_step: dict[int, float]) -> float:
    """sum_t n_t * step(t), step(t) linearly interpolated between the measured points."""
    points = sorted(per_step)
    total = 0.0
    for t, n in enumerate(budget):
        lo = max(p for p in points if p <= t)
        hi = min(p for p in points if p >= t)
        w = 0.0 if hi == lo else (t - lo) / (hi - lo)
        total += n * ((1 - w) * per_step[lo] + w * per_step[hi])
    return total


def build_task(dims: str, scales: str, device) -> VideoMAEReconstruction:
    torch.manual_seed(0)
    return frozen(VideoMAEReconstruction.from_config({"recon_model": PRESETS[dims], "scales": scales}).to(device))


def check_small_clip(device) -> None:
    """Tiny MAE, 4 frames of 64 px (P = 20): a fully measured clip against the extrapolation."""
    task = build_task("tiny", "32+64", device)
    video = torch.randn(4, 3, 64, 64, device=device)
    budget = [8, 3, 3, 3]
    steps = time_steps(task, video, ["cached"], [0, 2, 3], 3, 20, 3)
    est = per_clip([float(n) for n in budget], {t: s for (_, t), s in steps.items()})
    t0 = time.perf_counter()
    label_clip(task, video, budget, candidate_batch=20)
    print(f"check   tiny 4x64px P=20 budget={budget}: measured {time.perf_counter() - t0:.3f} s/clip, "
          f"extrapolated {est:.3f} s/clip")


def main() -> None:
    tune_cpu()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dims", default="tiny,base", help="comma list of " + ",".join(PRESETS))
    ap.add_argument("--variants", default="cached,uncached,public", help="comma list of " + ",".join(VARIANTS))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--scales", default="32+64+112+224")
    ap.add_argument("--rows", type=int, default=64, help="candidates timed per step (scaled to all P)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--flops-dims", default="large", help="extra dims for the FLOP cost model only (no timing)")
    ap.add_argument("--gpu-tflops", type=float, default=400.0,
                    help="sustained GPU throughput assumed by the estimate (default: 40%% of an H100's "
                         "989 dense bf16 TFLOP/s)")
    ap.add_argument("--check", action="store_true", help="also time one small clip fully (see docstring)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = args.variants.split(",")
    S = max(int(s) for s in args.scales.split("+"))
    T = args.frames
    for dims in [d for d in args.dims.split(",") if d] + [d for d in args.flops_dims.split(",") if d]:
        task = build_task(dims, args.scales, device)
        P = task.tokens_per_frame
        budget = expected_budget(T, P)
        ctx = max(1, round(sum(budget[1:]) / max(1, T - 1)))
        video = torch.randn(T, 3, S, S, device=device)
        points = sorted({0, T // 2, T - 1})
        head = f"{dims:5s} {T}x{S}px P={P} ~{sum(budget):.0f} gazes/clip"
        flop_variants = ["cached"] + [v for v in variants if v not in ("cached", "cached_bf16")]
        flops = {v: per_clip(budget, {t: step_flops(task, video, v, t, ctx, min(args.rows, 4)) for t in points})
                 for v in flop_variants}
        print(f"{head}: cached {flops['cached'] / 1e12:.1f} TFLOP/clip -> ~{3600 * args.gpu_tflops * 1e12 / flops['cached']:.0f} "
              f"clips/hour/GPU at an assumed {args.gpu_tflops:.0f} TFLOP/s (estimate); "
              + ", ".join(f"{v} {flops[v] / flops['cached']:.2f}x the FLOPs" for v in flop_variants[1:]), flush=True)
        if dims not in args.dims.split(","):
            continue
        steps = time_steps(task, video, variants, points, ctx, args.rows, args.repeats)
        sec = {v: per_clip(budget, {t: steps[v, t] for t in points}) for v in variants}
        ref = sec[variants[0]]
        for v in variants:
            per_t = ", ".join(f"t={t} {steps[v, t]:.2f}s" for t in points)
            print(f"  {v:8s} {args.device} threads={args.threads}: {sec[v]:9.1f} s/clip = {60 / sec[v]:7.3f} clips/min "
                  f"({sec[v] / ref:5.2f}x {variants[0]}); step {per_t}", flush=True)
    if args.check:
        check_small_clip(device)


if __name__ == "__main__":
    main()
