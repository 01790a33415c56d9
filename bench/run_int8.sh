#!/usr/bin/env bash
# bench/run_int8.sh - the int8 expert GEMM (issue 19) beside its baselines, in one run: bench_gemm's
# gemm/expert/* (moe: f32, bf16, bf16-dot, int8-dot, int8-dot-packed, int8-weight-only through
# cpu::Linear::apply)
# and ggml's ggml_mul_mat_id with Q8_0 / BF16 / F32 expert weights (bench/peers/ggml_expert_gemm.cpp,
# built by bench/peers/run_ggml.sh from a ggml tree outside the repository), one thread, the same
# shapes; then the table of medians and ratios (docs/benchmarks.md, "int8 experts").
#
#   bench/run_int8.sh [BUILD_DIR]     (default build/default; GGML_SRC as run_ggml.sh; without a
#                                      ggml tree the ggml columns are left empty, said so)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
PY="${PYTHON:-/usr/bin/python3}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cmake --build "$BUILD" -j2 --target moe_bench_bench_gemm >&2
echo "run_int8.sh: load before: $(cat /proc/loadavg)" >&2
"$BUILD/bench/bench_gemm" --benchmark_filter='gemm/expert/|peak/' --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true --benchmark_min_time=0.3 --benchmark_format=json > "$OUT/moe.json"
if [[ -f "${GGML_SRC:-$HOME/.cache/moe-peers/ggml}/include/ggml.h" ]]; then
  "$ROOT/bench/peers/run_ggml.sh" --program ggml_expert_gemm ${GGML_SRC:+"$GGML_SRC"} -- --reps 3 --min-time 0.3 \
    > "$OUT/ggml.jsonl"
else
  echo "run_int8.sh: no ggml tree (see bench/peers/run_ggml.sh): ggml columns left empty" >&2
  : > "$OUT/ggml.jsonl"
fi
"$PY" - "$OUT/moe.json" "$OUT/ggml.jsonl" <<'PYEOF'
import json, re, sys
data = json.load(open(sys.argv[1]))
moe, peak = {}, {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"].replace("/real_time", "")
    ms = b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0}[b["time_unit"]]
    if name.startswith("peak/"):
        peak[name] = b.get("GFLOP/s", 0) / 1e9 if b.get("GFLOP/s", 0) > 1e6 else b.get("GFLOP/s", 0)
    else:
        m = re.match(r"gemm/expert/([^/]+)/(M:\d+/K:\d+/N:\d+)", name)
        moe.setdefault(m.group(2), {})[m.group(1)] = ms
ggml = {}
for line in open(sys.argv[2]):
    g = json.loads(line)
    m = re.match(r"gemm/expert/ggml-([^/]+)/(M:\d+/K:\d+/N:\d+)", g["name"])
    ggml.setdefault(m.group(2), {})[m.group(1)] = g["time_ms"]
ctx = data.get("context", {})
print("machine: %s, %s CPUs, moe SIMD path %s; peaks (GFLOP/s, one core): %s" % (
    ctx.get("host_name", "?"), ctx.get("num_cpus", "?"), ctx.get("moe.simd", "?"),
    ", ".join("%s %.0f" % (k[5:], v) for k, v in sorted(peak.items()))))
print()
print("| shape | f32 | bf16-dot | int8-dot | int8-dot-packed | int8-weight-only | ggml Q8_0 | ggml F32 | int8 / f32 | int8 / bf16-dot | int8 / ggml Q8_0 | packed / int8 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for shape, t in moe.items():
    g = ggml.get(shape, {})
    def ms(x):
        return "%.2f" % x if x else ""
    def ratio(a, b):
        return "%.2fx" % (a / b) if a and b else ""
    i8 = t.get("int8-dot")
    pk = t.get("int8-dot-packed")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        shape, ms(t.get("f32")), ms(t.get("bf16-dot")), ms(i8), ms(pk), ms(t.get("int8-weight-only")),
        ms(g.get("q8_0")), ms(g.get("f32")), ratio(t.get("f32"), i8), ratio(t.get("bf16-dot"), i8),
        ratio(g.get("q8_0"), i8), ratio(i8, pk)))
print()
print("times: ms per call, median of 3 repetitions (one thread); ratios > 1: int8-dot is faster (packed / int8:")
print("int8-dot's time over int8-dot-packed's, > 1: packing once is faster)")
PYEOF
