"""Greedy labelling speed (clips/minute) at tiny and base MAE dimensions.

    .venv/bin/python benchmarks/label.py                          # CPU: tiny and base, 16 x 224 px
    .venv/bin/python benchmarks/label.py --device cuda --dims tiny,base,large --candidate-batch 265
    .venv/bin/python benchmarks/label.py --video /path/to/bikes.mp4   # also label one real clip

Setting (paper section 3.2): 16 frames of 224x224, scales 32+64+112+224 (P = 265), budgets from the
labeller's defaults (ratio ~ Exp(10) truncated to [0.02, 0.2], Dirichlet(10, 3, ..., 3) split),
random MAE weights (speed does not depend on them), l1 loss.

A full 16-frame clip is hundreds of greedy steps (about 0.11 * 265 * 16 = 470 gazes, each scoring
up to 265 candidates), i.e. minutes per clip on CPU at base size. So the benchmark **measures** the
time of one greedy step (all remaining candidates of the frame) at a few frame positions t,
interpolates linearly in t (the context grows linearly with t), multiplies by the expected gazes
per frame, and prints an **extrapolated** clips/minute. ``--check`` also labels one small clip
fully (tiny MAE, 4 frames) and prints measured vs extrapolated time for that clip, as a sanity
check of the extrapolation. Prints one line per setting; not a test.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from autogaze.labeling import LabelBudget, clip_generator, label_clip, sample_clip_budget
from autogaze.labeling.greedy import FrameScorer, frozen, greedy_frame
from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.utils.runtime import tune_cpu_allocator

PRESETS = {"tiny": "tiny", "base": "facebook/vit-mae-base", "large": "facebook/vit-mae-large"}


def expected_budget(T: int, P: int, draws: int = 200) -> list[float]:
    """Mean gazes per frame [T] under the labeller's default budget settings."""
    b = LabelBudget().validate()
    rows = torch.tensor([sample_clip_budget(b, T, P, clip_generator(s, "bench")) for s in range(draws)]).float()
    return rows.mean(0).tolist()


def step_seconds(task, video, t: int, context_per_frame: int, candidate_batch: int, precision: str,
                 repeats: int) -> float:
    """Median seconds of one greedy step at frame t (all P candidates) after ``context_per_frame``
    label gazes in each earlier frame."""
    P = task.tokens_per_frame
    g = torch.Generator().manual_seed(t)
    context = [[s * P + int(i) for i in torch.randperm(P, generator=g)[:context_per_frame]] for s in range(t)]
    scorer = FrameScorer(task, video, t, context, precision)
    times = []
    for i in range(repeats + 1):  # the first step warms up kernels and allocators
        if video.device.type == "cuda":
            torch.cuda.synchronize(video.device)
        t0 = time.perf_counter()
        greedy_frame(scorer, 1, candidate_batch)
        if video.device.type == "cuda":
            torch.cuda.synchronize(video.device)
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def extrapolate(task, video, budget: list[float], candidate_batch: int, precision: str, repeats: int) -> float:
    """Estimated seconds to label one clip: sum_t n_t * step(t), step(t) interpolated from 3 points."""
    T = len(budget)
    ctx = max(1, round(sum(budget[1:]) / max(1, T - 1)))
    points = sorted({0, T // 2, T - 1})
    measured = {t: step_seconds(task, video, t, ctx, candidate_batch, precision, repeats) for t in points}
    est = 0.0
    for t, n in enumerate(budget):
        lo = max(p for p in points if p <= t)
        hi = min(p for p in points if p >= t)
        w = 0.0 if hi == lo else (t - lo) / (hi - lo)
        est += n * ((1 - w) * measured[lo] + w * measured[hi])
    return est


def build_task(dims: str, scales: str, device) -> VideoMAEReconstruction:
    torch.manual_seed(0)
    return frozen(VideoMAEReconstruction.from_config({"recon_model": PRESETS[dims], "scales": scales}).to(device))


def check_small_clip(device, candidate_batch: int) -> None:
    """Tiny MAE, 4 frames of 64 px (P = 20): a fully measured clip vs the extrapolation."""
    task = build_task("tiny", "32+64", device)
    video = torch.randn(4, 3, 64, 64, device=device)
    budget = [8, 3, 3, 3]
    est = extrapolate(task, video, [float(n) for n in budget], candidate_batch, "fp32", 3)
    t0 = time.perf_counter()
    label_clip(task, video, budget, candidate_batch)
    print(f"check   tiny 4x64px P=20 budget={budget}: measured {time.perf_counter() - t0:.3f} s/clip, "
          f"extrapolated {est:.3f} s/clip")


def label_real_clip(path: str, device, candidate_batch: int) -> None:
    """Decode the first 16 frames of a real video (centre square, 224 px) and label it fully with
    the tiny MAE at a fixed 2% ratio (5 gazes per frame): proves the path works on real pixels."""
    from autogaze.datasets.decode import load_clip
    from autogaze.datasets.transforms import VideoTransform, center_square
    from autogaze.datasets.video_folder import TASK_PREPROCESSING

    frames = center_square(load_clip(path, 16, 1, False, torch.Generator().manual_seed(0), "decord", 1))
    video = VideoTransform.from_preprocessing(TASK_PREPROCESSING, size=224)(frames, None).to(device)
    task = build_task("tiny", "32+64+112+224", device)
    t0 = time.perf_counter()
    labels = label_clip(task, video, [5] * video.shape[0], candidate_batch)
    print(f"real    {os.path.basename(path)} {tuple(video.shape)}: labelled in {time.perf_counter() - t0:.1f} s; "
          f"frame 0 ids {labels.gazing_pos[0]}, losses {[round(v, 3) for v in labels.task_losses[0]]}")


def main() -> None:
    tune_cpu_allocator()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dims", default="tiny,base", help="comma list of " + ",".join(PRESETS))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--scales", default="32+64+112+224")
    ap.add_argument("--candidate-batch", type=int, default=64)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--check", action="store_true", help="also time one small clip fully (see docstring)")
    ap.add_argument("--video", help="also label this real video (first 16 frames, tiny MAE)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    S = max(int(s) for s in args.scales.split("+"))
    for dims in args.dims.split(","):
        task = build_task(dims, args.scales, device)
        P = task.tokens_per_frame
        budget = expected_budget(args.frames, P)
        video = torch.randn(args.frames, 3, S, S, device=device)
        sec = extrapolate(task, video, budget, args.candidate_batch, args.precision, args.repeats)
        print(f"{dims:5s} {args.frames}x{S}px P={P} {args.device} {args.precision} threads={args.threads} "
              f"batch={args.candidate_batch}: ~{sum(budget):.0f} gazes/clip, {sec:.1f} s/clip "
              f"-> {60 / sec:.2f} clips/min (extrapolated from per-step timings)")
    if args.check:
        check_small_clip(device, args.candidate_batch)
    if args.video:
        label_real_clip(args.video, device, args.candidate_batch)


if __name__ == "__main__":
    main()
