#!/usr/bin/env bash
# bench/run_rsmoe.sh - the RS-MoE benchmark of issue 18 end to end: moe (bench_rsmoe: the
# InstructBLIP encoder, batched multi-LoRA decode beside the three experts decoded one after the
# other, the caption end to end, read bandwidth, peak RSS) and the PyTorch reference
# (tools/bench/torch_rsmoe_bench.py: the encoder in bf16 and fp32, the three LoRA experts decoded
# one after the other in bf16, the caption) on the same random-weight folder, pixels and prompt
# ids, at 1 and 2 threads, one after the other, then the tables with the issue's ratios
# (tools/bench/rsmoe_report.py).
#
#   cmake --preset default
#   bench/run_rsmoe.sh [BUILD_DIR]          # default build/default; results in
#                                           # BUILD_DIR/results/rsmoe-<date>/ (report.md)
#   bench/run_rsmoe.sh --report RESULTS_DIR # only the tables, from an earlier run's files
#
# Run it on an otherwise idle machine (2 threads on 2 cores); the load before each step is
# recorded in load.txt. The model folder (4.8 GB, random bf16 weights, seed 23) is written by
# bench_rsmoe on first use. PyTorch holds the encoder in fp32, then bf16, and one bf16 base LLaMA
# with the three adapters (peak ~10 GB).
# Environment: MOE_BENCH_OUT (results folder), MOE_BENCH_DECODE (decode steps, 16),
# MOE_BENCH_NEW_TOKENS (caption tokens per expert, 48), MOE_BENCH_REPS (moe repetitions, 3),
# MOE_BENCH_TORCH_REPS (2), MOE_BENCH_FILTER (bench_rsmoe --benchmark_filter), MOE_BENCH_SKIP (any
# of "moe torch"), MOE_BENCH_NO_BUILD=1, MOE_BENCH_KEEP_CACHE=1 (no page-cache eviction), MOE_RSMOE_MODEL / MOE_CACHE_DIR, PYTHON.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
if [[ "${1:-}" == --report ]]; then
  exec "$PY" "$ROOT/tools/bench/rsmoe_report.py" "${2:?usage: $0 --report RESULTS_DIR}"
fi
BUILD="${1:-$ROOT/build/default}"
OUT="${MOE_BENCH_OUT:-$BUILD/results/rsmoe-$(date -u +%Y%m%d-%H%M%S)}"
CACHE="${MOE_CACHE_DIR:-$HOME/.cache/moe}"
export MOE_RSMOE_MODEL="${MOE_RSMOE_MODEL:-$CACHE/models/random-rsmoe-1b-bench}"
export MOE_BENCH_DECODE="${MOE_BENCH_DECODE:-16}" MOE_BENCH_NEW_TOKENS="${MOE_BENCH_NEW_TOKENS:-48}"
export MOE_BENCH_REPS="${MOE_BENCH_REPS:-3}"
SKIP=" ${MOE_BENCH_SKIP:-} "
mkdir -p "$OUT"
source "$ROOT/bench/common.sh"  # bench_step: before each tool, its weight files out of the page cache
load() { bench_step "$1" "$MOE_RSMOE_MODEL"; }

if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 && "$SKIP" != *" moe "* ]]; then
  cmake --build "$BUILD" -j2 --target moe_bench_bench_rsmoe >&2
fi
{ echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- include bench tools || echo ' (+ uncommitted changes)')"
  echo "model: $MOE_RSMOE_MODEL, $MOE_BENCH_DECODE decode steps, $MOE_BENCH_NEW_TOKENS caption tokens per expert"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc), $(grep -m1 -o 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"; } | tee "$OUT/load.txt" >&2

# moe: bandwidth first (before the model is mapped), then per weight policy the encoder, decode
# (batched, sequential) at 1 and 2 threads and the caption at 2 threads (the model is written on
# first use, before anything is timed)
if [[ "$SKIP" != *" moe "* ]]; then
  load bench_rsmoe
  "$BUILD/bench/bench_rsmoe" --benchmark_filter="${MOE_BENCH_FILTER:-.}" \
      --benchmark_repetitions="$MOE_BENCH_REPS" --benchmark_min_time=0.5 \
      --benchmark_report_aggregates_only=false --benchmark_out="$OUT/bench_rsmoe.json" --benchmark_out_format=json >&2
fi

# PyTorch: the encoder (fp32, bf16), the three experts' decode and the caption (its own process)
if [[ "$SKIP" != *" torch "* ]]; then
  load torch_rsmoe_bench.py
  if ! "$PY" "$ROOT/tools/bench/torch_rsmoe_bench.py" "$MOE_RSMOE_MODEL" --threads 1 2 \
      --decode "$MOE_BENCH_DECODE" --new-tokens "$MOE_BENCH_NEW_TOKENS" --reps "${MOE_BENCH_TORCH_REPS:-2}" \
      > "$OUT/torch_rsmoe.jsonl"; then
    echo "warning: torch_rsmoe_bench.py failed; no PyTorch columns" >&2
  fi
fi
echo "load after: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
"$PY" "$ROOT/tools/bench/rsmoe_report.py" "$OUT" | tee "$OUT/report.md"
echo "results: $OUT" >&2
