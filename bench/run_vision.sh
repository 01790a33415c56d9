#!/bin/sh
# Vision encoder benchmarks: bench_vision (moe) and tools/bench/torch_vision.py (PyTorch 1.13)
# in the same run, then the Markdown report (docs/benchmarks.md, "Vision encoders").
#   bench/run_vision.sh <build dir>      default build/default (cmake --preset default)
# Environment: MOE_BENCH_REPS (default 3), MOE_BENCH_TORCH_ARGS (e.g. --skip-stock).
set -eu
BUILD=${1:-build/default}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${MOE_BENCH_OUT:-$BUILD/results/vision-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
cmake --build "$BUILD" -j2 --target moe_bench_bench_vision
echo "load before: $(cat /proc/loadavg)" | tee "$OUT/load.txt"
"$BUILD/bench/bench_vision" --benchmark_repetitions="${MOE_BENCH_REPS:-3}" --benchmark_min_time=0.5 \
    --benchmark_min_warmup_time=1 \
    --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench_vision.json" --benchmark_out_format=json
echo "load after moe: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt"
# shellcheck disable=SC2086
/usr/bin/python3 "$ROOT/tools/bench/torch_vision.py" ${MOE_BENCH_TORCH_ARGS:-} | tee "$OUT/torch_vision.jsonl"
echo "load after torch: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt"
/usr/bin/python3 "$ROOT/tools/bench/vision_report.py" "$OUT/bench_vision.json" "$OUT/torch_vision.jsonl" | tee "$OUT/report.md"
