#!/usr/bin/env bash
# Builds (preset `default`: Release, -march=native) and runs one benchmark; the benchmarks live
# in build/default/bench/<name>, built from bench/<name>.cpp.
#   scripts/run-bench.sh NAME [ARGS...]     e.g. scripts/run-bench.sh bench_routing --benchmark_filter=topk
#   scripts/run-bench.sh --list             the benchmarks there are
# ARGS go to the benchmark (Google Benchmark flags). Expects the dependencies: scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

list() { for f in bench/*.cpp; do n=${f##*/}; echo "  ${n%.cpp}"; done; }
if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  echo "benchmarks:"; list
  [ $# -eq 0 ] && exit 2 || exit 0
fi
if [ "$1" = "--list" ]; then list; exit 0; fi
name=${1%.cpp}; name=${name#bench/}; shift
if [ ! -f "bench/${name}.cpp" ]; then
  echo "run-bench: no benchmark '${name}' (bench/${name}.cpp does not exist); benchmarks:" >&2
  list >&2
  exit 2
fi
cmake --preset default >/dev/null
cmake --build --preset default --target "moe_bench_${name}"
exec "build/default/bench/${name}" "$@"
