"""Shared timing helpers of the PyTorch baselines (tools/bench/torch_*.py).

Timing: warm-up call(s) (at least one), then `reps` repetitions; a repetition runs the function `inner` times
in a row, `inner` chosen so that one repetition lasts at least `min_time` seconds. The reported
time per call is the median over repetitions (the minimum is reported too). Output: one JSON
object per line, named as the C++ benchmark it mirrors, so tools/bench/report.py can join them.
"""

import json
import re
import statistics
import sys
import time


def measure(fn, reps=5, min_time=0.2, warmup=1):
    """Returns (median, min, all) seconds per call of fn(). The last warm-up call (at least one)
    also sizes `inner`."""
    for _ in range(max(warmup, 1) - 1):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = max(1, int(min_time / max(one, 1e-9)))
    if one > 1.0:  # slow calls (seconds each): three repetitions are enough
        reps = min(reps, 3)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times), min(times), times


def emit(record, out=sys.stdout):
    out.write(json.dumps(record, sort_keys=True) + "\n")
    out.flush()


def torch_info(torch):
    """What this PyTorch build computes with (the BLAS matters: Debian's links the reference BLAS)."""
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    blas = m.group(1) if m else "unknown"
    return {"torch": torch.__version__, "blas_info": blas, "mkldnn": bool(torch.backends.mkldnn.is_available())}
