"""Data-loading throughput: decode only vs the full item vs the uint8 item of transform_on_device.

    python benchmarks/data.py [--clips 8] [--frames 16] [--size 448] [--repeats 3]

Writes synthetic mp4 clips to a temp folder, then prints clips/s for 16 x 448 -> 224 clips:

- decode only (decord): ``load_clip``, the floor of any item;
- current item: decode + square crop + uint8 antialiased resize + normalise (``trainer.transform_on_device=False``);
- uint8 item: decode + crop box (``trainer.transform_on_device=True``); the device finishes it.

Each is timed per worker (in-process, one thread, as a DataLoader worker runs) and through a
DataLoader with 2 workers (persistent, warmed up, batch 2, with collation). The variants are
interleaved over repeats and the median is reported. The machine may be shared, so compare ratios,
not absolutes. Also printed: the same for PyAV and for the decoder's own resize, what finishing a
uint8 batch costs on a CPU device, and how many workers keep up with a GPU step of S seconds at
batch B: ceil(B / (S x per-worker clips/s)).
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from autogaze.datasets.decode import load_clip
from autogaze.datasets.synthetic import make_synthetic_dataset
from autogaze.datasets.transforms import VideoTransform
from autogaze.datasets.video_folder import VideoFolder
from autogaze.utils.runtime import tune_cpu

STEPS_S = (0.05, 0.1, 0.25, 0.5)
BATCHES = (32, 64, 256)


class DecodeOnly(Dataset):
    """uint8 [T, 3, H, W] clips as decoded, nothing else (the DataLoader floor)."""

    def __init__(self, paths: list[str], frames: int):
        self.paths, self.frames = paths, frames

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_clip(self.paths[i], self.frames)


def _rate(fn, n_clips: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n_clips / (time.perf_counter() - t0)


def _loader(ds, collate, workers: int = 2) -> DataLoader:
    loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate, persistent_workers=True,
                        prefetch_factor=2)
    list(loader)  # start the workers and warm them up, outside the timing
    return loader


def main() -> None:
    tune_cpu()  # as our entry points do
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=448, help="side of the synthetic videos (released data: 448)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # a DataLoader worker runs with one thread
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_dataset(Path(tmp), n_train=args.clips, n_val=1, num_frames=args.frames,
                                      size=args.size, seed=0)
        paths = sorted(str(p) for p in (root / "train").glob("*.mp4"))
        cfg = {"root": str(root), "clip_len": args.frames}
        current = VideoFolder.from_config(cfg, split="train", size=224)
        uint8 = VideoFolder.from_config(cfg, split="train", size=224)
        uint8.set_transform_on_device(True)
        decode = DecodeOnly(paths, args.frames)
        main_rows = {
            "decode only": lambda: [decode[i] for i in range(len(decode))],
            "current item": lambda: [current[i] for i in range(len(current))],
            "uint8 item": lambda: [uint8[i] for i in range(len(uint8))],
        }
        loaders = {"decode only": _loader(decode, torch.stack), "current item": _loader(current, current.collate),
                   "uint8 item": _loader(uint8, uint8.collate)}
        variants = {f"{k}, per worker": v for k, v in main_rows.items()}
        variants.update({f"{k}, DataLoader 2 workers": (lambda l=l: list(l)) for k, l in loaders.items()})
        raw = uint8.collate([uint8[i] for i in range(min(2, len(uint8)))])
        n_raw = raw.batch_size
        resize = VideoTransform(shortest_edge=224).resize
        extras = {
            "decode only (pyav), per worker": lambda: [load_clip(p, args.frames, backend="pyav") for p in paths],
            "decode + decoder resize (decord), per worker": lambda: [load_clip(p, args.frames, size=224) for p in paths],
            "decode + torch uint8 resize (decord), per worker": lambda: [resize(load_clip(p, args.frames), (224, 224))
                                                                        for p in paths],
        }
        variants.update(extras)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        finish: list[float] = []
        on_gpu: list[float] = []  # only with CUDA: pageable copy + resize + normalise, synchronised
        if torch.cuda.is_available():
            raw.to("cuda")  # warm-up: CUDA context, kernels, lookup tables
        for _ in range(args.repeats):
            for name, fn in variants.items():
                rates[name].append(_rate(fn, len(paths)))
            finish.append(_rate(lambda: raw.to("cpu"), n_raw))
            if torch.cuda.is_available():
                on_gpu.append(_rate(lambda: (raw.to("cuda").video.sum().item()), n_raw))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.clips} clips of {args.frames} frames at {args.size}x{args.size} -> 224, median of {args.repeats}, "
          f"interleaved")
    print(f"  {'':34s} {'per worker':>18s} {'DataLoader 2 workers':>24s}")
    base_w, base_l = med["decode only, per worker"], med["decode only, DataLoader 2 workers"]
    for k in main_rows:
        w, l = med[f"{k}, per worker"], med[f"{k}, DataLoader 2 workers"]
        print(f"  {k:34s} {w:7.2f} clips/s {w / base_w:4.2f}x {l:10.2f} clips/s {l / base_l:4.2f}x   (x: / decode only)")
    for k in extras:
        print(f"  {k:52s} {med[k]:7.2f} clips/s ({med[k] / base_w:4.2f}x decode only)")
    print(f"  finishing a uint8 batch on a CPU device (resize+normalise, main process): "
          f"{statistics.median(finish):.2f} clips/s")
    if on_gpu:
        print(f"  finishing a uint8 batch on {torch.cuda.get_device_name()}: {statistics.median(on_gpu):.2f} clips/s")
    print("workers a GPU step needs, ceil(B / (S x per-worker clips/s)): current item / uint8 item")
    r_cur, r_u8 = med["current item, per worker"], med["uint8 item, per worker"]
    print("  " + f"{'step S':>8s}" + "".join(f"{f'B={b}':>14s}" for b in BATCHES))
    for s in STEPS_S:
        cells = "".join(f"{f'{math.ceil(b / (s * r_cur))} / {math.ceil(b / (s * r_u8))}':>14s}" for b in BATCHES)
        print(f"  {s:7.2f}s{cells}")
    print(f"load average: {open('/proc/loadavg').read().split()[0] if Path('/proc/loadavg').exists() else 'n/a'}")


if __name__ == "__main__":
    main()
