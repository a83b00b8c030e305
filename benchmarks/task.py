"""Time the VideoMAE task's reward pass (forward + loss, frozen) and report peak memory.

    .venv/bin/python benchmarks/task.py                       # CPU: tiny and base, fp32 and bf16
    .venv/bin/python benchmarks/task.py --device cuda --dims tiny,base,large --losses full

Setting: 16 frames of 224x224, scales 32+64+112+224 (265 tokens per frame), 2 frames
rebuilt, a gazing ratio of 0.1 (26 gazes per frame). Random weights: speed does not depend on them.
``--losses full`` adds the DINOv2-reg + SigLIP2 feature losses at base size (l1 only by default).
Also times the block-causal mask alone, to show it is a small, linear share of the work.
Prints one line per setting; not a test.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import torch

from autogaze.tasks.video_mae_reconstruction import VideoMAEReconstruction
from autogaze.tasks.video_mae_reconstruction.masks import block_causal_mask
from autogaze.types import Gazes
from autogaze.utils.runtime import tune_cpu

SCALES, P = "32+64+112+224", 265
PRESETS = {"tiny": "tiny", "base": "facebook/vit-mae-base", "large": "facebook/vit-mae-large"}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; process-wide peak


def make_inputs(B: int, T: int, k: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(B, T, 3, 224, 224, generator=g)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :k]  # [B, T, k]
    ids = (local + torch.arange(T)[:, None] * P).reshape(B, T * k)
    gazes = Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), torch.full((T,), k), P)
    return video.to(device), gazes.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_reward(task, video, gazes, frame_ids, device, dtype, repeats: int) -> float:
    """Median seconds of one frozen forward + loss."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    times = []
    for i in range(repeats + 1):  # the first call warms up kernels and allocators
        sync(device)
        t0 = time.perf_counter()
        with autocast:
            out = task(video, gazes, frame_ids=frame_ids)
        out.loss.sum().item()
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    tune_cpu()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dims", default="tiny,base", help="comma list of " + ",".join(PRESETS))
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--losses", choices=("l1", "full"), default="l1")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--recon", type=int, default=2, help="frames rebuilt per clip")
    ap.add_argument("--gazes", type=int, default=26, help="gazes per frame (26 = ratio 0.1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    T, B, k = args.frames, args.batch, args.gazes
    frames = torch.randperm(T, generator=torch.Generator().manual_seed(0))[: args.recon].sort().values
    video, gazes = make_inputs(B, T, k, device)
    print(f"device={device} threads={args.threads} B={B} T={T} gazes/frame={k} rebuilt={frames.tolist()} "
          f"losses={args.losses}")

    # Mask building alone: encoder-sized (1+T*k) and decoder-sized sequences.
    for L in (T * k, (T - args.recon) * k + args.recon * P, T * P):
        f = torch.arange(T, device=device).repeat_interleave(L // T)
        valid = torch.ones(B, f.numel(), dtype=torch.bool, device=device)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            block_causal_mask(f, valid)
        sync(device)
        print(f"mask L={f.numel():5d}: {(time.perf_counter() - t0) / 10 * 1e3:7.2f} ms")

    rmc = {"max_num_frames": 256}
    if args.losses == "full":
        rmc.update(loss_type="l1+dinov2_reg+siglip2", loss_weights="1+0.3+0.3")
    base_time = {}
    for dims in args.dims.split(","):
        task = VideoMAEReconstruction.from_config(
            {"recon_model": PRESETS[dims], "scales": SCALES, "recon_model_config": rmc}).to(device)
        n_params = sum(p.numel() for p in task.parameters()) / 1e6
        for dtype in args.dtypes.split(","):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sec = time_reward(task, video, gazes, frames, device, dtype, args.repeats)
            base_time.setdefault(dims, sec)
            print(f"{dims:5s} ({n_params:6.1f}M MAE params) {dtype:4s}: {sec * 1e3:8.1f} ms/step "
                  f"({sec / B * 1e3:7.1f} ms/clip, x{sec / base_time[dims]:.2f} of {dims} "
                  f"{args.dtypes.split(',')[0]}), peak {'GPU' if device.type == 'cuda' else 'RSS'} "
                  f"{peak_memory_mb(device):8.0f} MiB")
        del task


if __name__ == "__main__":
    main()
