"""Gazed SigLIP encoding against the stock tower: time and peak memory. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/encode.py [--threads 2 1] [--repeats 5] [--precision fp32 bf16]
                                          [--device cpu] [--no-memory]

SigLIP-base dimensions (768 wide, 12 layers, 12 heads, patch 16, 224 px), random weights (speed does
not depend on them). One 16-frame 224x224 clip, scales 32+64+112+224 (P = 265). Cases, timed side by
side in one run, interleaved repeat by repeat (the machine is shared and its load moves by +-40%, so
the ratios to the stock tower, taken within a run, are the figures to compare):
  stock            transformers' SiglipVisionModel on every frame (16 x 196 patches, one batch of 16);
  gazed r=R        our tower, block_causal, random gazes with round(R * 265) distinct patches per frame;
  gazed tau=0.7    our tower on the gazes of our AutoGaze (random weights, default dims) called with
                   gazing_ratio=0.75, task_loss_requirement=0.7 (frames stop early; about 160 slots);
  gaze r=0.1       the AutoGaze call alone (generate_only), and gaze+encode r=0.1, both end to end.
Each case runs in fp32 and under bf16 autocast (stock included, so each precision compares like
with like).
Memory (``--no-memory`` skips it): in a child process, the peak resident memory above the resident
memory just before each call (VmHWM reset through /proc/self/clear_refs, glibc told to hand freed
blocks back at once so RSS follows the live tensors); on CUDA, max_memory_allocated. Cases: the
16-frame ones, and 16/32/64-frame clips at ratio 0.1 under block_causal and frame_independent, the
latter's memory being linear in frames (block_causal's mask and attention are quadratic in slots).
Reference, upstream on this 2-core CPU, 2 threads: stock 3.1 s per clip; upstream's gazed tower
0.42 s at ratio 0.1 (416 slots) and 0.18 s with tau = 0.7 (160 slots).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import SiglipVisionConfig
from transformers import SiglipVisionModel as StockSiglipVisionModel

from autogaze.models.autogaze import AutoGaze, AutoGazeConfig
from autogaze.types import Gazes
from autogaze.vision_encoders.siglip import SiglipVisionModel

T, SIDE, P = 16, 224, 265
RATIOS = (0.05, 0.1, 0.25, 0.5)
UPSTREAM_S = {"stock": 3.1, "gazed r=0.1": 0.42, "gazed tau=0.7": 0.18}  # 2 threads


def siglip_base() -> SiglipVisionConfig:
    return SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=SIDE, patch_size=16)


def build(device: str, attn_type: str = "block_causal") -> tuple[SiglipVisionModel, StockSiglipVisionModel, AutoGaze]:
    torch.manual_seed(0)
    ours = SiglipVisionModel(siglip_base()).eval()
    ours.configure_gazing("32+64+112+224", attn_type)
    stock = StockSiglipVisionModel(siglip_base()).eval()  # sdpa, the default
    stock.load_state_dict(ours.state_dict())
    # AutoGaze at default dims, as benchmarks/gaze.py builds it without the fixture weights.
    cfg = AutoGazeConfig(scales="32+64+112+224", num_vision_tokens_each_frame=P,
                         gaze_model_config={"gaze_decoder_config": {"num_multi_token_pred": 10}})
    gaze = AutoGaze(cfg).eval()
    return ours.to(device), stock.to(device), gaze.to(device)


def random_gazes(frames: int, per_frame: int, device, seed: int = 0) -> Gazes:
    """per_frame distinct random patches in every frame, no padding: ids [1, frames * per_frame]."""
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(1, frames, P, generator=g).argsort(-1)[..., :per_frame]  # [1, T, n]
    ids = (local + torch.arange(frames)[None, :, None] * P).flatten(1)
    return Gazes(ids.to(device), torch.zeros(ids.shape, dtype=torch.bool, device=device),
                 torch.full((frames,), per_frame, device=device), P)


def clip(frames: int, device) -> torch.Tensor:
    return torch.randn(1, frames, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0)).to(device)


def cases(ours, stock, gaze, video: torch.Tensor) -> dict:
    """{name: zero-argument callable}; gazes that do not depend on the timing are made once here."""
    with torch.inference_mode():
        tau_gazes = gaze({"video": video}, gazing_ratio=0.75, task_loss_requirement=0.7, generate_only=True)
    out = {"stock": lambda: stock(video[0]).last_hidden_state}
    for r in RATIOS:
        g = random_gazes(video.shape[1], round(r * P), video.device)
        out[f"gazed r={r}"] = lambda g=g: ours(video, gazing_info=g).last_hidden_state
    out["gazed tau=0.7"] = lambda: ours(video, gazing_info=tau_gazes).last_hidden_state
    out["gaze r=0.1"] = lambda: gaze({"video": video}, gazing_ratio=0.1, generate_only=True)
    out["gaze+encode r=0.1"] = lambda: ours(video, gazing_info=gaze({"video": video}, gazing_ratio=0.1,
                                                                     generate_only=True)).last_hidden_state
    out["_tau_slots"] = (int(tau_gazes["gazing_pos"].shape[1]), int((~tau_gazes["if_padded_gazing"]).sum()))
    return out


def precision_ctx(precision: str, device: str):
    """fp32, or bf16 autocast (this CPU has AMX bf16 units: matmuls run ~2.4x faster)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed(fns: dict, repeats: int, precision: str, device: str) -> dict:
    """{name: fn} -> {name: [seconds]}: one warm-up each, then the cases alternate every repeat."""
    times = {name: [] for name in fns}
    for rep in range(repeats + 1):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            with torch.inference_mode(), precision_ctx(precision, device):
                fn()
            sync()
            if rep:
                times[name].append(time.perf_counter() - t0)
    return times


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def report_times(times: dict, threads: int, tau_slots: tuple[int, int], precision: str) -> None:
    s_min, s_med = min(times["stock"]), statistics.median(times["stock"])
    print(f"{'case':22s} {'min s':>7s} {'median s':>9s}  stock/case (min, median)   vs upstream")
    for name, t in times.items():
        t_min, t_med = min(t), statistics.median(t)
        line = f"{name:22s} {t_min:7.3f} {t_med:9.3f}  {s_min / t_min:6.2f}x {s_med / t_med:6.2f}x"
        ref = UPSTREAM_S.get(name)
        if ref and threads == 2 and precision == "fp32":
            # Upstream's own stock/gazed ratio, to compare with ours (both taken within one machine state).
            line += f"      upstream {ref:.2f} s; upstream stock/case {UPSTREAM_S['stock'] / ref:5.2f}x"
        print(line)
    print(f"(tau=0.7 gazes: {tau_slots[0]} slots, {tau_slots[1]} real)")


# ------------------------------------------------------------------ memory (child process)

def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_mib(fn) -> float:
    """Peak memory of one call above the memory in use just before it, in MiB."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status_kib("VmRSS")
    with torch.inference_mode():
        fn()
    return (_status_kib("VmHWM") - base) / 1024


def memory_child(device: str) -> None:
    ours, stock, gaze = build(device)
    fi, _, _ = build(device, "frame_independent")
    video = clip(T, device)
    res = {}
    for name, fn in cases(ours, stock, gaze, video).items():
        if not name.startswith("_"):
            res[name] = peak_mib(fn)
    for frames in (16, 32, 64):
        v, g = clip(frames, device), random_gazes(frames, round(0.1 * P), device)
        res[f"block_causal r=0.1 T={frames}"] = peak_mib(lambda: ours(v, gazing_info=g))
        res[f"frame_independent r=0.1 T={frames}"] = peak_mib(lambda: fi(v, gazing_info=g))
    v = clip(64, device)
    res["stock T=64"] = peak_mib(lambda: stock(v[0]))
    print("MEMORY " + json.dumps(res))


def report_memory(device: str) -> None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--memory-child", "--device", device], env=env,
                          capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")), None)
    if line is None:
        print("memory child failed:\n" + proc.stderr[-2000:])
        return
    res = json.loads(line[len("MEMORY "):])
    unit = "peak MiB above the pre-call " + ("allocated memory (CUDA)" if device == "cuda" else "RSS")
    print(f"--- memory, {unit}")
    for name, mib in res.items():
        print(f"{name:34s} {mib:9.1f}")
    for kind in ("block_causal", "frame_independent"):
        per = [res[f"{kind} r=0.1 T={f}"] / f for f in (16, 32, 64)]
        print(f"{kind}: MiB per frame at T=16/32/64: " + " / ".join(f"{x:.2f}" for x in per))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                    help="bf16 = autocast for every case, stock included (memory is measured in fp32)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        torch.set_num_threads(args.threads[0])
        memory_child(args.device)
        return
    ours, stock, gaze = build(args.device)
    video = clip(T, args.device)
    fns = cases(ours, stock, gaze, video)
    tau_slots = fns.pop("_tau_slots")
    for threads in args.threads:
        torch.set_num_threads(threads)
        runs = {}
        for precision in args.precision:
            load0 = os.getloadavg()[0]
            runs[precision] = timed(fns, args.repeats, precision, args.device)
            print(f"--- {precision} threads={threads} device={args.device} repeats={args.repeats} "
                  f"loadavg before/after {load0:.2f}/{os.getloadavg()[0]:.2f}")
            report_times(runs[precision], threads, tau_slots, precision)
        if len(runs) == 2:  # what a user gains by switching both on: the stock tower as shipped (fp32)
            stock, ours = min(runs["fp32"]["stock"]), min(runs["bf16"]["gaze+encode r=0.1"])
            print(f"stock fp32 / gaze+encode r=0.1 bf16 (min): {stock / ours:.2f}x")
    if not args.no_memory:
        report_memory(args.device)


if __name__ == "__main__":
    main()
