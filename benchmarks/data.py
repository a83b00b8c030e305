"""Data-loading throughput: decord vs PyAV, decode-time vs torch resize, DataLoader workers.

    python benchmarks/data.py [--clips 8] [--frames 16] [--size 448]

Writes synthetic mp4 clips to a temp folder, then prints clips/s, side by side, for: the raw decode
with each backend; decode + resize to 224 done by the decoder's scaler vs by torch (the fixture-exact
uint8 antialiased bilinear); the full item (decode + square crop + resize + normalise); and a
DataLoader at 0 and 2 workers with each resize. Variants are interleaved over repeats and the median
is reported. The machine may be shared: the load average is printed, compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from autogaze.datasets.decode import load_clip
from autogaze.datasets.synthetic import make_synthetic_dataset
from autogaze.datasets.transforms import VideoTransform
from autogaze.datasets.video_folder import VideoFolder
from autogaze.utils.runtime import tune_cpu_allocator


def _rate(fn, n_clips: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n_clips / (time.perf_counter() - t0)


def main() -> None:
    tune_cpu_allocator()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=448, help="side of the synthetic videos (released data: 448)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(Path(tmp), n_train=args.clips, n_val=1, num_frames=args.frames,
                                      size=args.size, seed=0)
        paths = sorted(str(p) for p in (root / "train").glob("*.mp4"))
        cfg = {"root": str(root), "clip_len": args.frames}
        resize = VideoTransform(shortest_edge=224).resize
        torch_resize = lambda clip: resize(clip, (224, 224))
        exact, fast = torch_resize(load_clip(paths[0], args.frames)), load_clip(paths[0], args.frames, size=224)
        diff = (exact.int() - fast.int()).abs().float()
        variants = {}
        for backend in ("decord", "pyav"):
            variants[f"decode only ({backend})"] = (
                lambda b=backend: [load_clip(p, args.frames, backend=b) for p in paths])
            ds = VideoFolder.from_config({**cfg, "backend": backend}, split="train", size=224)
            variants[f"item: decode+resize+normalise ({backend})"] = (lambda d=ds: [d[i] for i in range(len(d))])
            variants[f"decode + decoder resize ({backend})"] = (
                lambda b=backend: [load_clip(p, args.frames, backend=b, size=224) for p in paths])
            variants[f"decode + torch resize ({backend})"] = (
                lambda b=backend: [torch_resize(load_clip(p, args.frames, backend=b)) for p in paths])
        for decode_resize in (False, True):
            ds = VideoFolder.from_config({**cfg, "decode_resize": decode_resize}, split="train", size=224)
            for workers in (0, 2):
                loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=ds.collate)
                how = "decoder" if decode_resize else "torch"
                variants[f"DataLoader batch 2, {workers} workers, {how} resize"] = (lambda l=loader: list(l))
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                rates[name].append(_rate(fn, len(paths)))
    print(f"{args.clips} clips of {args.frames} frames at {args.size}x{args.size} -> 224, median of {args.repeats}")
    base = statistics.median(rates["decode only (decord)"])
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"  {name:52s} {med:7.2f} clips/s  ({med / base:4.2f}x decord decode)")
    print(f"decoder resize vs fixture-exact torch resize (decord, uint8): mean |diff| {diff.mean():.2f}, "
          f"max {diff.max():.0f} -> not bit-identical, hence off by default (dataset.decode_resize)")
    print(f"load average: {open('/proc/loadavg').read().split()[0] if Path('/proc/loadavg').exists() else 'n/a'}")


if __name__ == "__main__":
    main()
