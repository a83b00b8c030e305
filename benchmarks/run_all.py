"""Run every benchmark once and print a summary table (what `make bench` runs).

    python benchmarks/run_all.py [--quick] [--only gaze,task,...]

Each benchmark is a separate process, so its peak RSS is its own. The per-benchmark tables
(side-by-side variants: K heads, cached vs uncached, decord vs PyAV, fp32 vs bf16, ...) are
printed as they come; the final table lists wall time, peak RSS and exit status per benchmark,
with the machine and its load. Timings on a shared machine are noisy: look at the load average.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (script, full args, quick args, what it measures)
BENCHMARKS = {
    "gaze": ("gaze.py", ["--threads", "2", "1"], ["--threads", "1", "--repeats", "2"],
             "gaze latency (greedy 0.1; 0.75 + tau 0.7) and the NTP step (teacher-forced fwd+bwd, batch 8)"),
    "task": ("task.py", [], ["--dims", "tiny", "--repeats", "2"], "VideoMAE reward forward + loss, tiny / base"),
    "grpo": ("grpo.py", ["--variants", "script,cap10"], ["--variants", "script", "--dtypes", "fp32", "--repeats", "1",
                                                         "--warmup", "0"], "one GRPO step (G=12) split by phase"),
    "data": ("data.py", [], ["--clips", "4", "--repeats", "1"],
             "data items: decode only vs full item vs uint8 item (transform_on_device), per worker and 2 workers"),
    "encode": ("encode.py", [], ["--repeats", "1", "--threads", "2", "--precision", "fp32", "--no-memory"], "gazed SigLIP tower vs the stock tower; gaze + encode end to end"),
    "label": ("label.py", ["--dims", "tiny"], ["--dims", "tiny", "--frames", "4", "--repeats", "1", "--flops-dims", ""],
              "greedy labelling: prefix-cached vs uncached vs public forward (clips/min, FLOPs)"),
}


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller settings (a few minutes in all)")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma list of " + ",".join(BENCHMARKS))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per benchmark")
    args = ap.parse_args()
    rows = []
    for name in args.only.split(","):
        script, full, quick, what = BENCHMARKS[name]
        print(f"\n===== {name}: {what}", flush=True)
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(HERE / script), *(quick if args.quick else full)])
        timer = threading.Timer(args.timeout, proc.kill)
        timer.start()
        # wait4 reaps this child alone, so ru_maxrss (KiB on Linux) is its own peak
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss / 1024
        rows.append((name, time.time() - t0, peak, rc))
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["n/a"]
    print(f"\n===== summary ({time.strftime('%Y-%m-%d')}; {_machine()}; load {' '.join(load)})")
    print(f"{'benchmark':10s} {'wall s':>8s} {'peak RSS MiB':>13s}  status")
    for name, wall, peak, rc in rows:
        print(f"{name:10s} {wall:8.1f} {peak:13.0f}  {'ok' if rc == 0 else rc}")
    return 0 if all(r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
