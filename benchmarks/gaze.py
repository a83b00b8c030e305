"""Gaze-model speed on CPU (or CUDA): prints figures, asserts nothing. Not a test.

    .venv/bin/python benchmarks/gaze.py [--threads 2] [--repeats 5] [--device cpu]

Times, in one run and side by side (the machine may be shared; compare ratios):
  1. greedy gazing of one 16x224 clip at ratio 0.1, and at ratio 0.75 with requirement 0.7
     (the released architecture, K = 10; fixture weights when ../shared is present, else random);
  2. a teacher-forced forward + backward at batch 8 with 26 gazes per frame.
Each in fp32 and under bf16 autocast. Reference: upstream on the 2-core CPU, 2 threads, random
weights: ~0.81 s for the ratio-0.1 gazing and ~9.3 s for the teacher-forced batch.
"""
from __future__ import annotations

import argparse
import contextlib
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


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best (minimum) seconds over ``repeats`` runs after one warm-up, and the last result.

    The minimum, not the median: on a shared machine other processes only ever add time."""
    out = fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), out


def random_gazes(B: int, T: int, n: int, P: int, device, seed: int = 0) -> Gazes:
    """n distinct random patches per frame, no padding: ids [B, T*n]."""
    g = torch.Generator().manual_seed(seed)
    local = torch.rand(B, T, P, generator=g).argsort(-1)[..., :n]  # [B, T, n]
    ids = (local + torch.arange(T)[None, :, None] * P).flatten(1).to(device)
    return Gazes(ids, torch.zeros_like(ids, dtype=torch.bool), torch.full((T,), n, device=device), P)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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

    def train_step():
        model.zero_grad(set_to_none=True)
        scores = model.score(batch, gazes)
        (-scores.log_probs.mean() + scores.task_loss_prediction.pow(2).mean()).backward()
        return scores.log_probs.detach()

    print(f"device={dev} threads={args.threads} repeats={args.repeats} (best of N, seconds)")
    results = {}
    for precision in ("fp32", "bf16"):
        ctx = (torch.autocast(torch.device(dev).type, dtype=torch.bfloat16) if precision == "bf16"
               else contextlib.nullcontext())
        for name, budget in budgets.items():
            with ctx:
                s, rollout = timed(lambda: model.generate(video, budget), args.repeats)
            results[(precision, name)] = (s, rollout)
        with ctx:
            s, logp = timed(train_step, max(1, args.repeats // 2))
        results[(precision, "train step b8")] = (s, logp)

    for (precision, name), (s, _) in results.items():
        ref = UPSTREAM_S.get(name)
        vs = f"   {ref / s:5.2f}x vs upstream {ref:.2f} s" if ref else ""
        print(f"{precision:5s} {name:28s} {s:7.3f} s{vs}")
    for name in list(budgets) + ["train step b8"]:
        s32, out32 = results[("fp32", name)]
        s16, out16 = results[("bf16", name)]
        if isinstance(out32, torch.Tensor):
            same = f"max |dlogp| bf16 vs fp32 {float((out32 - out16).abs().max()):.3g}"
        else:
            a, b = out32.gazes.to_mask(), out16.gazes.to_mask()
            jac = float(((a * b).sum(-1) / ((a + b) > 0).sum(-1).clamp_min(1)).mean())
            same = f"gaze Jaccard bf16 vs fp32 {jac:.3f}"
        print(f"bf16/fp32 speed-up {name:28s} {s32 / s16:5.2f}x   {same}")
    # fp32 outputs are deterministic run to run (same gazes every repeat)
    again = model.generate(video, budgets["greedy ratio 0.1"])
    print("fp32 greedy repeat identical:", torch.equal(again.gazes.ids, results[("fp32", "greedy ratio 0.1")][1].gazes.ids))


if __name__ == "__main__":
    main()
