"""Shared timing helpers and run environment of the PyTorch baselines (tools/bench/torch_*.py).

Timing: warm-up call(s) (at least one), then `reps` repetitions; a repetition runs the function `inner` times
in a row, `inner` chosen so that one repetition lasts at least `min_time` seconds. The reported
time per call is the median over repetitions (the minimum is reported too). Output: one JSON
object per line, named as the C++ benchmark it mirrors, so tools/bench/report.py can join them.
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import sys
import time

# The environment every PyTorch baseline runs in (docs/benchmarks.md, "How baselines are run"):
# OpenMP threads sleep when idle instead of spinning (they share 2 cores with OpenBLAS's own
# threads), and glibc keeps freed memory (no mmap for big blocks, no trimming of the heap top): on
# this VM a first-touch page fault costs about 12.5 us, and PyTorch allocates its outputs afresh on
# every call. OPENBLAS_NUM_THREADS is set to the largest thread count of the run; set_threads()
# lowers it at run time through openblas_set_num_threads (torch.set_num_threads does not reach
# OpenBLAS's pthreads).
BENCH_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MALLOC_MMAP_THRESHOLD_": str(4 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}
ENV_KEYS = tuple(BENCH_ENV) + ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def bench_env(thread_flags=("--threads", "--bf16-threads"), default_threads=2):
    """Call before `import torch`: re-executes this script once with BENCH_ENV and
    OPENBLAS_NUM_THREADS (= the largest value given to thread_flags) in its environment, since
    glibc, OpenMP and OpenBLAS read them only at start-up. Variables already set are kept (so a
    caller can override them); the records report what was in effect (torch_info)."""
    if os.environ.get("MOE_BENCH_ENV") == "1":
        return
    if not os.path.isfile(sys.argv[0]):  # python -c / interactive: nothing to re-execute
        sys.stderr.write("common.bench_env: not a script, the environment is left as it is\n")
        return
    ap = argparse.ArgumentParser(add_help=False)
    for flag in thread_flags:
        ap.add_argument(flag, type=int, nargs="+", default=[default_threads])
    known, _ = ap.parse_known_args()
    most = max(max(getattr(known, f.lstrip("-").replace("-", "_"))) for f in thread_flags)
    env = dict(os.environ)
    for key, value in BENCH_ENV.items():
        env.setdefault(key, value)
    env.setdefault("OPENBLAS_NUM_THREADS", str(most))
    env["MOE_BENCH_ENV"] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def loaded_blas():
    """Path of the BLAS library this process has mapped (libblas.so.3 is an alternatives link:
    Debian's reference BLAS or OpenBLAS), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return None
    for p in sorted(paths):
        base = os.path.basename(p)
        if base.startswith(("libblas", "libopenblas", "libmkl_rt", "libblis")):
            return p
    return None


def _openblas():
    p = loaded_blas()
    if p and "openblas" in p:
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_num_threads  # noqa: B018 (raises AttributeError when absent)
            return lib
        except (OSError, AttributeError):
            return None
    return None


def set_threads(torch, n):
    """torch.set_num_threads(n), and OpenBLAS's thread count when torch's BLAS is OpenBLAS."""
    torch.set_num_threads(n)
    lib = _openblas()
    if lib is not None:
        lib.openblas_set_num_threads(n)


def blas_threads():
    lib = _openblas()
    return lib.openblas_get_num_threads() if lib is not None else None


def fastest(records, row, key="median_s", label=lambda r: "%s w:%s" % (r["impl"], r["w"])):
    """Emits the row's summary: every configuration's time and the fastest one (one JSON line,
    impl "fastest", summary true; also a readable line on stderr). records: this row's records."""
    recs = [r for r in records if r.get(key) is not None]
    if not recs:
        return None
    best = min(recs, key=lambda r: r[key])
    configs = {label(r): r[key] for r in recs}
    emit({"name": row, "impl": "fastest", "summary": True, "stat": key, "fastest": label(best),
          "fastest_time": best[key], "configs": configs})
    sys.stderr.write("%s: fastest %s (%s)\n" % (row, label(best), ", ".join(
        "%s %.4g" % (k, v) for k, v in sorted(configs.items(), key=lambda kv: kv[1]))))
    return best


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
    lib = loaded_blas()
    return {"torch": torch.__version__, "blas_info": blas, "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "blas_lib": os.path.realpath(lib) if lib else None, "blas_threads": blas_threads(),
            "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ENV_KEYS if os.environ.get(k) is not None}}


def warn_if_reference_blas(torch):
    """Stderr warning when torch's BLAS is not a tuned one (Debian's default libblas.so.3 is the
    reference BLAS, about 2 GFLOP/s: a strawman for the stock configurations)."""
    lib = loaded_blas() or "?"
    sys.stderr.write("torch %s, BLAS %s (%s threads), %s\n" % (
        torch.__version__, os.path.realpath(lib) if lib != "?" else lib, blas_threads(),
        " ".join("%s=%s" % (k, os.environ.get(k)) for k in ENV_KEYS if os.environ.get(k) is not None)))
    if "openblas" not in lib and "mkl" not in lib and "blis" not in lib:
        sys.stderr.write("WARNING: torch uses the reference BLAS (%s): the stock fp32 configurations are a "
                         "strawman; run scripts/install-deps.sh (libopenblas0-pthread)\n" % lib)


def rss_mb():
    """The resident set now (VmRSS), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    return None


def peak_rss_mb():
    """The peak resident set (ru_maxrss), MB."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def trim():
    """Gives freed heap back to the system (bench_env raises glibc's trim threshold)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
