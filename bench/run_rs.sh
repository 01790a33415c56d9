#!/usr/bin/env bash
# bench/run_rs.sh - reading + preprocessing real Sentinel-2 samples: moe (bench_rs) and Debian's
# GDAL Python bindings (tools/bench/gdal_read.py), one after the other in the same run, then the
# ratio per benchmark (GDAL median / moe median; > 1: moe is faster).
#
#   bench/run_rs.sh [BUILD_DIR]     (default build/default; builds moe_bench_bench_rs first)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
PY="${PYTHON:-/usr/bin/python3}"
OUT="$(mktemp -d)"
cmake --build "$BUILD" -j2 --target moe_bench_bench_rs >&2
"$BUILD/bench/bench_rs" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_min_time=0.3 --benchmark_min_warmup_time=0.3 --benchmark_format=json > "$OUT/moe.json"
"$PY" "$ROOT/tools/bench/gdal_read.py" > "$OUT/gdal.jsonl"
"$PY" - "$OUT/moe.json" "$OUT/gdal.jsonl" <<'PYEOF'
import json, sys
moe = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median":
        moe[b["run_name"].replace("/real_time", "")] = b["real_time"] * {"us": 1, "ms": 1e3, "ns": 1e-3}[b["time_unit"]]
print("| benchmark | moe (us, median) | GDAL Python (us, median) | GDAL / moe |")
print("|---|---:|---:|---:|")
for line in open(sys.argv[2]):
    g = json.loads(line)
    m = moe.get(g["name"])
    if m:
        print("| %s | %.1f | %.1f | %.2fx |" % (g["name"], m, g["median_us"], g["median_us"] / m))
PYEOF
rm -rf "$OUT"
