#!/usr/bin/env bash
# bench/run_all.sh - the C++ benchmarks and the PyTorch baselines in one run, then the report.
#
#   cmake --preset default
#   bench/run_all.sh [BUILD_DIR]            # default build/default
#
# It first (re)builds the two benchmark targets in BUILD_DIR (cmake --build -j2; a no-op when
# up to date, so the binaries always match the working tree), then runs bench_routing,
# torch_routing.py, bench_layer, torch_layer.py, and ggml's MoE layer (bench/peers/run_ggml.sh, when
# a ggml source tree is at $MOE_BENCH_GGML_SRC) one after the other (same machine state), then
# tools/bench/report.py joins them into Markdown on stdout and $OUT/report.md. Results go to
# $MOE_BENCH_OUT (default BUILD_DIR/results/<date>). Takes about 15 minutes.
#
# Environment:
#   MOE_BENCH_OUT        results directory
#   MOE_BENCH_REPS       Google Benchmark repetitions (default 5; medians are reported)
#   MOE_BENCH_MIN_TIME   --benchmark_min_time of the routing / layer binaries (default 0.5 / 1)
#   MOE_BENCH_FILTER     --benchmark_filter for both binaries (default: all)
#   MOE_BENCH_TORCH_LAYER_ARGS  extra arguments of torch_layer.py (e.g. --shapes gelu_mlp)
#   MOE_BENCH_NO_BUILD   set to 1 to skip the build step
#   MOE_BENCH_MAX_BUSY   warn when other processes keep more than this percentage of the CPUs
#                        busy just before a step (default 10): the numbers are only meaningful on
#                        an otherwise idle machine
#   MOE_BENCH_GGML_SRC   ggml source tree for the ggml peer (default ~/.cache/moe-peers/ggml; skipped
#                        when absent: git clone https://github.com/ggml-org/ggml there)
#   PYTHON               Python with torch (default /usr/bin/python3, Debian's python3-torch)
# The PyTorch scripts run PyTorch's four configurations (stock / oneDNN x fp32 / bf16) in the
# environment of tools/bench/common.py (docs/benchmarks.md, "How baselines are run").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
BIN="$BUILD/bench"
OUT="${MOE_BENCH_OUT:-$BUILD/results/$(date +%Y%m%d-%H%M%S)}"
REPS="${MOE_BENCH_REPS:-5}"
PY="${PYTHON:-/usr/bin/python3}"
FILTER="${MOE_BENCH_FILTER:-.}"
MAX_BUSY="${MOE_BENCH_MAX_BUSY:-10}"
GGML_SRC="${MOE_BENCH_GGML_SRC:-$HOME/.cache/moe-peers/ggml}"

if [[ "${MOE_BENCH_NO_BUILD:-0}" != 1 && -f "$BUILD/CMakeCache.txt" ]]; then
  echo "== build ($BUILD)" >&2
  cmake --build "$BUILD" -j2 --target moe_bench_bench_routing moe_bench_bench_layer >&2
fi
if [[ -f "$GGML_SRC/include/ggml.h" && "${MOE_BENCH_NO_BUILD:-0}" != 1 ]]; then
  echo "== build ggml ($GGML_SRC)" >&2
  "$ROOT/bench/peers/run_ggml.sh" "$GGML_SRC" -- --build-only
fi
for b in bench_routing bench_layer; do
  if [[ ! -x "$BIN/$b" ]]; then
    echo "run_all.sh: $BIN/$b not found; build first:" >&2
    echo "  cmake -S $ROOT -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_EXAMPLES=OFF" >&2
    exit 1
  fi
done
mkdir -p "$OUT"

busy_percent() {  # CPU time used by everything over 2 s, in % of all CPUs (/proc/stat)
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  local t=0 i
  for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
  echo $(( t == 0 ? 0 : 100 * (t - (b[4] - a[4]) - (b[5] - a[5])) / t ))
}
cpu_ticks() {  # "busy nice": busy = user + system + irq + softirq + steal, nice = nice, all CPUs, clock ticks
  local a
  a=($(head -1 /proc/stat))
  echo "$(( a[1] + a[3] + a[6] + a[7] + a[8] )) $(( a[2] ))"
}

# step NAME FUNCTION: runs FUNCTION; logs to $OUT/busy.txt how busy the CPUs were just before, and
# how much CPU time other processes took while it ran, in % of all CPUs: at normal priority (busy
# ticks minus the step's own CPU time) and at nice > 0 (background jobs such as nice'd builds,
# which the scheduler mostly preempts, but which share caches and memory bandwidth).
step() {
  local name=$1 fn=$2 before c0 c1 w0 w1 own others niced
  before="$(busy_percent)"
  echo "== $name (CPU busy before: ${before}%)" >&2
  if (( before > MAX_BUSY )); then
    echo "run_all.sh: WARNING: other processes keep ${before}% of the CPUs busy: timings may be disturbed" >&2
    ps -eo pid,ni,pcpu,etime,comm --sort=-pcpu | head -5 >&2
  fi
  c0=($(cpu_ticks)); w0=$(date +%s.%N)
  local TIMEFORMAT="%U %S"
  { time "$fn" 2>&3; } 3>&2 2> "$OUT/.time"
  c1=($(cpu_ticks)); w1=$(date +%s.%N)
  own=$(awk '{ print $1 + $2 }' "$OUT/.time")
  read -r others niced < <(awk -v b=$((c1[0] - c0[0])) -v nb=$((c1[1] - c0[1])) -v hz="$(getconf CLK_TCK)" \
    -v own="$own" -v w0="$w0" -v w1="$w1" -v n="$(nproc)" 'BEGIN {
      d = (w1 - w0) * n; o = 100 * (b / hz - own) / d; printf "%.0f %.0f\n", (o < 0 ? 0 : o), 100 * nb / hz / d }')
  echo "$name $before $others $niced" >> "$OUT/busy.txt"
  echo "run_all.sh: $name done; meanwhile other processes used ${others}% of the CPUs (+ ${niced}% at nice > 0)" >&2
  if (( others > MAX_BUSY )); then
    echo "run_all.sh: WARNING: timings of $name are disturbed (re-run on an idle machine)" >&2
  fi
}

gbench() {  # gbench NAME MIN_TIME
  "$BIN/$1" --benchmark_filter="$FILTER" --benchmark_repetitions="$REPS" \
    --benchmark_report_aggregates_only=true --benchmark_min_time="$2" --benchmark_min_warmup_time="$2" \
    --benchmark_out="$OUT/${1#bench_}.json" --benchmark_out_format=json >&2
}
routing() { gbench bench_routing "${MOE_BENCH_MIN_TIME:-0.5}"; }
torch_routing() { "$PY" "$ROOT/tools/bench/torch_routing.py" --threads 1 > "$OUT/torch_routing.jsonl"; }
layer() { gbench bench_layer "${MOE_BENCH_MIN_TIME:-1}"; }
torch_layer() {
  # shellcheck disable=SC2086
  "$PY" "$ROOT/tools/bench/torch_layer.py" --threads 1 2 ${MOE_BENCH_TORCH_LAYER_ARGS:-} > "$OUT/torch_layer.jsonl"
}

rm -f "$OUT/busy.txt"
# the commit measured (the report may be made later, from another checkout state)
echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) \
$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" > "$OUT/commit.txt"
step bench_routing routing
step torch_routing.py torch_routing
step bench_layer layer
step torch_layer.py torch_layer
ggml_layer() { "$ROOT/bench/peers/run_ggml.sh" "$GGML_SRC" > "$OUT/ggml_layer.jsonl"; }
if [[ -f "$GGML_SRC/include/ggml.h" ]]; then
  step ggml_layer ggml_layer
else
  echo "run_all.sh: no ggml source tree in $GGML_SRC: the ggml peer is skipped" >&2
fi
rm -f "$OUT/.time"

"$PY" "$ROOT/tools/bench/report.py" "$OUT" -o "$OUT/report.md"
echo >&2
echo "run_all.sh: results and report in $OUT" >&2
