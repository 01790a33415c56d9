#!/usr/bin/env bash
# bench/run_decoder.sh - the decoder benchmark of issue 16 end to end: moe's decoder runtime
# (bench_decoder: prefill, decode, read bandwidth, GEMM rate, RSS), llama.cpp
# (bench/peers/llama_cpp.sh: llama-bench and llama-batched-bench) and PyTorch
# (tools/bench/torch_decoder_bench.py, bf16) on the same random Qwen2-0.5B / Qwen2-MoE-0.5B
# models, one after the other, then one table (tools/bench/decoder_report.py).
#
#   cmake --preset default
#   bench/run_decoder.sh [BUILD_DIR]          # default build/default; results in
#                                             # BUILD_DIR/results/decoder-<date>/ (report.md)
#   bench/run_decoder.sh --report RESULTS_DIR # only the table, from an earlier run's files
#
# Run it on an otherwise idle machine (2 threads on 2 cores: any other load distorts the
# 2-thread figures most); the load before each step is recorded in load.txt. Needs the model
# folders (made here by tools/bench/make_decoder_models.py when missing: 2.8 GB), the llama.cpp
# source tree of bench/peers/README.md (skipped with a warning when absent) and PyTorch
# (/usr/bin/python3; the MoE model's loading peaks at ~8.5 GB).
# Environment: MOE_BENCH_OUT (results folder), MOE_BENCH_PREFILL (512), MOE_BENCH_DECODE (64),
# MOE_BENCH_REPS (moe and llama.cpp repetitions, 5), MOE_BENCH_TORCH_REPS (3), MOE_BENCH_FILTER
# (bench_decoder --benchmark_filter), MOE_BENCH_SKIP (any of "moe llama torch"),
# MOE_BENCH_NO_BUILD=1, MOE_BENCH_KEEP_CACHE=1 (no page-cache eviction), MOE_MODELS_DIR / MOE_CACHE_DIR, MOE_DECODER_MODELS, PYTHON.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-/usr/bin/python3}"
if [[ "${1:-}" == --report ]]; then
  exec "$PY" "$ROOT/tools/bench/decoder_report.py" "${2:?usage: $0 --report RESULTS_DIR}"
fi
BUILD="${1:-$ROOT/build/default}"
OUT="${MOE_BENCH_OUT:-$BUILD/results/decoder-$(date -u +%Y%m%d-%H%M%S)}"
CACHE="${MOE_CACHE_DIR:-$HOME/.cache/moe}"
export MOE_MODELS_DIR="${MOE_MODELS_DIR:-$CACHE/models}"
export MOE_DECODER_MODELS="${MOE_DECODER_MODELS:-qwen2-0.5b-random qwen2moe-0.5b-random}"
export MOE_BENCH_PREFILL="${MOE_BENCH_PREFILL:-512}" MOE_BENCH_DECODE="${MOE_BENCH_DECODE:-64}"
export MOE_BENCH_REPS="${MOE_BENCH_REPS:-5}"
SKIP=" ${MOE_BENCH_SKIP:-} "
mkdir -p "$OUT"
source "$ROOT/bench/common.sh"  # bench_step: before each tool, its weight files out of the page cache
load() { bench_step "$1" $(for m in $MOE_DECODER_MODELS; do echo "$MOE_MODELS_DIR/$m"; done); }

if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 && "$SKIP" != *" moe "* ]]; then
  cmake --build "$BUILD" -j2 --target moe_bench_bench_decoder >&2
fi
"$PY" "$ROOT/tools/bench/make_decoder_models.py" --out "$MOE_MODELS_DIR" >&2   # a no-op when they exist
{ echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- include bench tools || echo ' (+ uncommitted changes)')"
  echo "prompt $MOE_BENCH_PREFILL tokens, $MOE_BENCH_DECODE decode steps, models: $MOE_DECODER_MODELS"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"; } | tee "$OUT/load.txt" >&2

# moe: the bounds (bandwidth, GEMM) first, then each model's prefill and decode at 1 and 2 threads
if [[ "$SKIP" != *" moe "* ]]; then
  load bench_decoder
  "$BUILD/bench/bench_decoder" --benchmark_filter="${MOE_BENCH_FILTER:-.}" \
      --benchmark_repetitions="$MOE_BENCH_REPS" --benchmark_min_time=0.5 --benchmark_min_warmup_time=0.5 \
      --benchmark_report_aggregates_only=false --benchmark_out="$OUT/bench_decoder.json" --benchmark_out_format=json >&2
fi

# llama.cpp: its own benchmark mode (llama-bench pp/tg, llama-batched-bench decode after the prompt)
if [[ "$SKIP" != *" llama "* ]]; then
  load llama_cpp.sh
  if ! MOE_BENCH_OUT="$OUT/llama_cpp" MOE_BENCH_PREFILL="$MOE_BENCH_PREFILL" MOE_BENCH_DECODE="$MOE_BENCH_DECODE" \
      "$ROOT/bench/peers/llama_cpp.sh" bench >&2; then
    echo "warning: bench/peers/llama_cpp.sh failed (see bench/peers/README.md); no llama.cpp columns" >&2
  fi
fi

# PyTorch: the Hugging Face loop in bf16, 1 and 2 threads
if [[ "$SKIP" != *" torch "* ]]; then
  for m in $MOE_DECODER_MODELS; do
    load "torch_decoder_bench.py $m"
    if ! "$PY" "$ROOT/tools/bench/torch_decoder_bench.py" "$MOE_MODELS_DIR/$m" --dtype bf16 --threads 1 2 \
        --prefill "$MOE_BENCH_PREFILL" --decode "$MOE_BENCH_DECODE" --reps "${MOE_BENCH_TORCH_REPS:-3}" \
        > "$OUT/torch-$m.jsonl"; then
      echo "warning: torch_decoder_bench.py failed on $m; no PyTorch column for it" >&2
    fi
  done
fi
echo "load after: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
"$PY" "$ROOT/tools/bench/decoder_report.py" "$OUT" | tee "$OUT/report.md"
echo "results: $OUT" >&2
