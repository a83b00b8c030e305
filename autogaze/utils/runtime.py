"""Process-wide CPU settings that our entry points apply (train, gaze, label, evaluate, demo,
benchmarks) through ``tune_cpu``. Library code never calls this: importing autogaze changes nothing.

``tune_cpu`` = the allocator tuning below + the oneDNN route for fp32 linear layers
(``autogaze.utils.linear``: 1.4-2.2x faster products for the gaze decoder on AVX-512 CPUs whose
MKL takes its AVX2 path).

Why the allocator: glibc hands every block over its mmap threshold (at most 32 MiB) back to the
kernel when freed and returns the heap's free top above the trim threshold. A training step
allocates and frees hundreds of activations of 20-65 MiB, so each one was mapped fresh and
page-faulted in on first write: about 15% of a teacher-forced batch-8 step on CPU (profiled:
the time showed up as zero fills and copies). Keeping freed memory in the process removes that;
peak memory is unchanged (it is reused, not grown).
"""
from __future__ import annotations

import ctypes
import os
import sys

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process (glibc only; a no-op elsewhere or with
    AUTOGAZE_MALLOC_TUNING=0). Returns whether the settings are in effect. Idempotent."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("AUTOGAZE_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # No mmap for large blocks (they come from the heap and are reused) and no trimming of the
    # heap's top below 1 GiB of free memory.
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _applied


def tune_cpu() -> bool:
    """What every entry point calls at start-up: ``tune_cpu_allocator`` and the oneDNN linear route
    (off with AUTOGAZE_ONEDNN_LINEAR=0). Returns whether the allocator settings are in effect."""
    from autogaze.utils.linear import enable_onednn

    enable_onednn(os.environ.get("AUTOGAZE_ONEDNN_LINEAR", "1") != "0")
    return tune_cpu_allocator()
