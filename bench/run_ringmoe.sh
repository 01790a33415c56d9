#!/usr/bin/env bash
# bench/run_ringmoe.sh - RingMoE's deployable encoders end to end: bench_ringmoe (moe) and
# tools/bench/torch_ringmoe.py (PyTorch 1.13, tools/reference/vision_swin.py) in one run, then
# the Markdown report (tools/bench/ringmoe_report.py) with the issue's targets, each row compared
# with PyTorch's fastest configuration (stock / oneDNN x fp32 / bf16) in the same run.
#
#   cmake --preset default
#   bench/run_ringmoe.sh [BUILD_DIR]            # default build/default; about 20 minutes
#
# The single-modality model needs about 13 GB of memory (bf16 weights); the 1B folded one 4 GB
# (fp32). Run it on an otherwise idle machine: the load before each step is recorded. The PyTorch
# side builds the single-modality model twice, one after the other (oneDNN bf16, then the stock
# bf16 module); glibc is told to keep freed memory (tools/bench/common.py), so if that step runs
# out of memory, run it alone: MOE_BENCH_TORCH_ARGS=--skip-folded (not yet tried at full size).
# Environment: MOE_BENCH_OUT (results directory), MOE_BENCH_REPS (C++ repetitions, default 3),
# MOE_BENCH_FILTER (--benchmark_filter), MOE_BENCH_TORCH_ARGS (e.g. --skip-single, --skip-stock),
# MOE_BENCH_NO_BUILD=1, PYTHON (default /usr/bin/python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
OUT="${MOE_BENCH_OUT:-$BUILD/results/ringmoe-$(date -u +%Y%m%d-%H%M%S)}"
PY="${PYTHON:-/usr/bin/python3}"
mkdir -p "$OUT"
if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 ]]; then
  cmake --build "$BUILD" -j2 --target moe_bench_bench_ringmoe >&2
fi
{ echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- include bench tools || echo ' (+ uncommitted changes)')"
  echo "load before bench_ringmoe: $(cat /proc/loadavg)"; } | tee "$OUT/load.txt" >&2
"$BUILD/bench/bench_ringmoe" --benchmark_filter="${MOE_BENCH_FILTER:-.}" \
    --benchmark_repetitions="${MOE_BENCH_REPS:-3}" --benchmark_min_time=0.01 \
    --benchmark_min_warmup_time=0.01 \
    --benchmark_report_aggregates_only=false --benchmark_out="$OUT/bench_ringmoe.json" --benchmark_out_format=json >&2
echo "load before torch_ringmoe.py: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
"$PY" "$ROOT/tools/bench/torch_ringmoe.py" ${MOE_BENCH_TORCH_ARGS:-} | tee "$OUT/torch_ringmoe.jsonl" >&2
echo "load after: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
"$PY" "$ROOT/tools/bench/ringmoe_report.py" "$OUT" | tee "$OUT/report.md"
