#!/usr/bin/env bash
# bench/run_hierarchical.sh - RingMoE's hierarchical MoE layer: bench_hierarchical (moe) and
# tools/bench/torch_hierarchical.py (the PyTorch reference) in one run, then the ratios.
#
#   cmake --preset default
#   bench/run_hierarchical.sh [BUILD_DIR]        # default build/default
#
# It (re)builds moe_bench_bench_hierarchical in BUILD_DIR (a no-op when up to date), runs it
# (MOE_BENCH_REPS repetitions, every repetition kept), then torch_hierarchical.py (the reference in
# four configurations: stock fp32, stock bf16, oneDNN fp32, oneDNN bf16 weights; 1 and 2 threads),
# one after the other on the same machine state, and prints a Markdown table (also $OUT/report.md):
# best-of-N and median times, tokens/s, useful-expert GFLOP/s, and ours / PyTorch's fastest
# configuration (best over best). The issue's target: stage 1, fp32, 1 thread, at least 2x the
# PyTorch reference in the same run.
#
# Environment:
#   MOE_BENCH_OUT        results directory (default BUILD_DIR/results/hier-<date>)
#   MOE_BENCH_REPS       repetitions of the C++ benchmark and of the PyTorch runs (default 5)
#   MOE_BENCH_STOCK_REPS repetitions of the stock PyTorch runs (default MOE_BENCH_REPS)
#   MOE_BENCH_TORCH_ARGS extra arguments of torch_hierarchical.py (e.g. --skip-stock)
#   MOE_BENCH_FILTER     --benchmark_filter of the C++ binary (default: all)
#   MOE_BENCH_NO_BUILD   set to 1 to skip the build step
#   MOE_BENCH_JOBS       build parallelism (default 2)
#   MOE_BENCH_MAX_BUSY   warn when other processes keep more than this % of the CPUs busy (default 10)
#   PYTHON               Python with torch (default /usr/bin/python3, Debian's python3-torch)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
BIN="$BUILD/bench/bench_hierarchical"
OUT="${MOE_BENCH_OUT:-$BUILD/results/hier-$(date +%Y%m%d-%H%M%S)}"
REPS="${MOE_BENCH_REPS:-5}"
PY="${PYTHON:-/usr/bin/python3}"
FILTER="${MOE_BENCH_FILTER:-.}"
MAX_BUSY="${MOE_BENCH_MAX_BUSY:-10}"

if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 && -f "$BUILD/CMakeCache.txt" ]]; then
  echo "== build ($BUILD)" >&2
  cmake --build "$BUILD" -j"${MOE_BENCH_JOBS:-2}" --target moe_bench_bench_hierarchical >&2
fi
if [[ ! -x "$BIN" ]]; then
  echo "run_hierarchical.sh: $BIN not found; build first:" >&2
  echo "  cmake -S $ROOT -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_EXAMPLES=OFF" >&2
  exit 1
fi
mkdir -p "$OUT"

busy_percent() {  # CPU time used by everything over 2 s, in % of all CPUs (/proc/stat)
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  local t=0 i
  for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
  echo $(( t == 0 ? 0 : 100 * (t - (b[4] - a[4]) - (b[5] - a[5])) / t ))
}
check_load() {
  local busy
  busy="$(busy_percent)"
  echo "run_hierarchical.sh: CPU busy before $1: ${busy}% (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  echo "$1 ${busy}" >> "$OUT/busy.txt"
  if (( busy > MAX_BUSY )); then
    echo "run_hierarchical.sh: WARNING: other processes keep ${busy}% of the CPUs busy: timings may be disturbed" >&2
    ps -eo pid,pcpu,etime,comm --sort=-pcpu | head -5 >&2
  fi
}

check_load bench_hierarchical
echo "== bench_hierarchical" >&2
"$BIN" --benchmark_filter="$FILTER" --benchmark_repetitions="$REPS" --benchmark_min_time=0.5 \
  --benchmark_min_warmup_time=0.5 --benchmark_out="$OUT/hierarchical.json" --benchmark_out_format=json >&2

check_load torch_hierarchical.py
echo "== torch_hierarchical.py" >&2
# shellcheck disable=SC2086
"$PY" "$ROOT/tools/bench/torch_hierarchical.py" --threads 1 2 --reps "$REPS" \
  --stock-reps "${MOE_BENCH_STOCK_REPS:-$REPS}" ${MOE_BENCH_TORCH_ARGS:-} | tee "$OUT/torch_hierarchical.jsonl" >&2

"$PY" - "$OUT" <<'EOF' | tee "$OUT/report.md"
import json, os, re, statistics, sys
out = sys.argv[1]
with open(os.path.join(out, "hierarchical.json")) as f:
    data = json.load(f)
ours = {}
for b in data["benchmarks"]:
    if b.get("run_type") != "iteration" or b.get("error_occurred"):
        continue
    name = re.sub(r"/real_time$", "", b["run_name"])
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    r = ours.setdefault(name, {"times": [], "kept": b.get("kept")})
    r["times"].append(b["real_time"] * scale)
torch = {}
with open(os.path.join(out, "torch_hierarchical.jsonl")) as f:
    for line in f:
        if line.startswith("{"):
            r = json.loads(line)
            if not r.get("summary"):
                torch[(r["name"], r["impl"])] = r
flops = {}
for r in torch.values():
    flops[r["name"]] = r.get("flops")

def shape_flops(name):
    m = re.search(r"C:(\d+)/F:(\d+)/T:(\d+)", name)
    C, F, T = map(int, m.groups())
    return 12.0 * T * C * F, T

ctx = data.get("context", {})
print("# Hierarchical MoE layer (RingMoE): moe vs. the PyTorch reference\n")
print("Machine: %s CPUs, %s MHz; moe SIMD %s; torch %s (BLAS %s, %s)\n" % (
    ctx.get("num_cpus"), ctx.get("mhz_per_cpu"), ctx.get("moe.simd"),
    next(iter(torch.values()), {}).get("torch"), next(iter(torch.values()), {}).get("blas_info"),
    next(iter(torch.values()), {}).get("blas_lib")))
print("GFLOP/s: useful expert FLOPs, 3 FFNs per token x 2 GEMMs x 2*C*F (nominal). "
      "Times: best of N (median in brackets). Speed-up = PyTorch best / moe best; PyTorch fastest = the "
      "fastest of its four configurations (stock / oneDNN x fp32 / bf16 weights) at the same thread count.\n")
IMPLS = ("torch", "torch_bf16", "torch_onednn", "torch_onednn_bf16")
print("| benchmark | moe ms | moe tok/s | moe GFLOP/s | " + " | ".join("%s ms" % i for i in IMPLS)
      + " | PyTorch fastest | **x vs fastest** | kept moe / torch |")
print("|---" * (7 + len(IMPLS)) + "|")
verdict = []
for name in sorted(ours):
    fl, T = shape_flops(name)
    t = ours[name]["times"]
    best, med = min(t), statistics.median(t)
    row = ["`%s`" % name, "%.1f (%.1f)" % (best * 1e3, med * 1e3), "%.0f" % (T / best), "%.1f" % (fl / best * 1e-9)]
    fast = None
    for impl in IMPLS:
        r = torch.get((name, impl))
        row.append("%.1f (%.1f)" % (r["min_time_ms"], r["time_ms"]) if r else "-")
        if r and (fast is None or r["min_time_ms"] < fast[0]):
            fast = (r["min_time_ms"], impl)
    row.append(fast[1] if fast else "-")
    row.append("%.2f" % (fast[0] * 1e-3 / best) if fast else "-")
    tk = torch.get((name, "torch_onednn")) or torch.get((name, "torch")) or {}
    row.append("%.4f / %s" % (ours[name]["kept"], "%.4f" % tk["kept"] if "kept" in tk else "-"))
    print("| " + " | ".join(row) + " |")
    if name.startswith("hier/moe/stage1/") and name.endswith("/threads:1"):
        if fast:
            x = fast[0] * 1e-3 / best
            verdict.append("stage 1, fp32, 1 thread vs PyTorch's fastest configuration (%s): %.2fx (target >= 2x): %s"
                           % (fast[1], x, "MET" if x >= 2 else "NOT MET"))
        for impl in ("torch", "torch_onednn"):
            r = torch.get((name, impl))
            if r:
                x = r["min_time_ms"] * 1e-3 / best
                verdict.append("stage 1, fp32, 1 thread vs %s (fp32): %.2fx" % (impl, x))
print()
for v in verdict:
    print("- " + v)
EOF
echo >&2
echo "run_hierarchical.sh: results and report in $OUT" >&2
