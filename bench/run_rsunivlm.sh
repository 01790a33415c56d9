#!/usr/bin/env bash
# bench/run_rsunivlm.sh - the full-size RSUniVLM benchmark of issue 17 end to end: moe
# (bench_rsunivlm: time to first token, decode, read bandwidth, RSS) and the PyTorch reference
# (tools/bench/torch_rsunivlm_bench.py: LLaVA-NeXT's computation in bf16, oneDNN linears) on the
# same random-weight folder, image and prompt ids, at 1 and 2 threads, one after the other, then
# one table with the ratios (tools/bench/rsunivlm_report.py).
#
#   cmake --preset default
#   bench/run_rsunivlm.sh [BUILD_DIR]          # default build/default; results in
#                                              # BUILD_DIR/results/rsunivlm-<date>/ (report.md)
#   bench/run_rsunivlm.sh --report RESULTS_DIR # only the table, from an earlier run's files
#
# Run it on an otherwise idle machine (2 threads on 2 cores); the load before each step is
# recorded in load.txt. The model folder (3.3 GB, random bf16 weights, seed 17) is written by
# bench_rsunivlm on first use. PyTorch builds the model in fp32 before casting it (peak ~10 GB).
# Environment: MOE_BENCH_OUT (results folder), MOE_BENCH_DECODE (decode steps, 32), MOE_BENCH_REPS
# (moe repetitions, 3), MOE_BENCH_TORCH_REPS (2), MOE_BENCH_FILTER (bench_rsunivlm
# --benchmark_filter), MOE_BENCH_SKIP (any of "moe torch"), MOE_BENCH_NO_BUILD=1, MOE_BENCH_KEEP_CACHE=1 (no page-cache eviction),
# MOE_RSUNIVLM_MODEL / MOE_CACHE_DIR, MOE_RS_DATA, PYTHON.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
if [[ "${1:-}" == --report ]]; then
  exec "$PY" "$ROOT/tools/bench/rsunivlm_report.py" "${2:?usage: $0 --report RESULTS_DIR}"
fi
BUILD="${1:-$ROOT/build/default}"
OUT="${MOE_BENCH_OUT:-$BUILD/results/rsunivlm-$(date -u +%Y%m%d-%H%M%S)}"
CACHE="${MOE_CACHE_DIR:-$HOME/.cache/moe}"
export MOE_RSUNIVLM_MODEL="${MOE_RSUNIVLM_MODEL:-$CACHE/models/random-rsunivlm-full}"
export MOE_BENCH_DECODE="${MOE_BENCH_DECODE:-32}" MOE_BENCH_REPS="${MOE_BENCH_REPS:-3}"
SKIP=" ${MOE_BENCH_SKIP:-} "
mkdir -p "$OUT"
source "$ROOT/bench/common.sh"  # bench_step: before each tool, its weight files out of the page cache
load() { bench_step "$1" "$MOE_RSUNIVLM_MODEL"; }

if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 && "$SKIP" != *" moe "* ]]; then
  cmake --build "$BUILD" -j2 --target moe_bench_bench_rsunivlm >&2
fi
{ echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- include bench tools || echo ' (+ uncommitted changes)')"
  echo "model: $MOE_RSUNIVLM_MODEL, $MOE_BENCH_DECODE decode steps"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc), $(grep -m1 -o 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"; } | tee "$OUT/load.txt" >&2

# moe: bandwidth first (before the model is mapped), then TTFT and decode at 1 and 2 threads
if [[ "$SKIP" != *" moe "* ]]; then
  load bench_rsunivlm
  "$BUILD/bench/bench_rsunivlm" --benchmark_filter="${MOE_BENCH_FILTER:-.}" \
      --benchmark_repetitions="$MOE_BENCH_REPS" --benchmark_min_time=0.5 \
      --benchmark_report_aggregates_only=false --benchmark_out="$OUT/bench_rsunivlm.json" --benchmark_out_format=json >&2
fi

# PyTorch: the LLaVA-NeXT mirror in bf16, 1 and 2 threads (its own process: its RSS apart)
if [[ "$SKIP" != *" torch "* ]]; then
  load torch_rsunivlm_bench.py
  if ! "$PY" "$ROOT/tools/bench/torch_rsunivlm_bench.py" "$MOE_RSUNIVLM_MODEL" --threads 1 2 \
      --decode "$MOE_BENCH_DECODE" --reps "${MOE_BENCH_TORCH_REPS:-2}" > "$OUT/torch_rsunivlm.jsonl"; then
    echo "warning: torch_rsunivlm_bench.py failed; no PyTorch column" >&2
  fi
fi
echo "load after: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
"$PY" "$ROOT/tools/bench/rsunivlm_report.py" "$OUT" | tee "$OUT/report.md"
echo "results: $OUT" >&2
