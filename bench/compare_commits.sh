#!/usr/bin/env bash
# bench/compare_commits.sh - the benchmarks of a base commit and of the working tree, in the
# same run, alternating, and their ratios: "are the figures at this commit within noise of the
# previous ones?"
#
#   bench/compare_commits.sh BASE [ROUNDS]      e.g. bench/compare_commits.sh HEAD~3 2
#
# BASE's benchmarks are built in a git worktree (build/compare-<sha>/, preset default's flags:
# Release, -march=native), the working tree's in build/default (cmake --preset default first).
# Each round runs every selected benchmark with BASE's binary, then with the new one; ROUNDS
# (default 2) alternations, 3 repetitions each. The report (stdout and
# build/default/results/compare-<date>/report.md) gives, per benchmark, the median time of
# each side over all its repetitions, new/base of the medians and of the fastest runs, and the
# spread (max/min) of each side: a ratio inside the spread is noise. On a shared VM the machine
# switches between a fast and a slow state for seconds at a time (both binaries alike), so use
# several rounds; the fastest-run ratio is the steadier one then. Selection: MOE_COMPARE_SET (default below, about 10 minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE=${1:?usage: bench/compare_commits.sh BASE [ROUNDS]}
ROUNDS=${2:-2}
sha=$(git rev-parse --short "$BASE")
# binary|filter pairs
SET=${MOE_COMPARE_SET:-"bench_routing|route/fused/T:(512|65536)/E:(8|64|256)/
bench_layer|layer/moe/
bench_hierarchical|hier/moe/
bench_vision|vision/vit_b16/batch:1/
bench_ringmoe|ringmoe/folded_1b/img:224/w:bf16/threads:2"}
bins=$(printf '%s\n' "$SET" | cut -d'|' -f1 | sort -u)

wt="$ROOT/build/compare-$sha/src"
bb="$ROOT/build/compare-$sha/build"
if [ ! -d "$wt" ]; then git worktree add --detach "$wt" "$BASE" >&2; fi
cmake -S "$wt" -B "$bb" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_EXAMPLES=OFF >/dev/null
cmake --preset default >/dev/null
for b in $bins; do
  cmake --build "$bb" -j2 --target "moe_bench_$b" >&2
  cmake --build --preset default --target "moe_bench_$b" >&2
done

out="$ROOT/build/default/results/compare-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
{ echo "base: $BASE ($sha)"; echo "new: working tree of $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + changes')"
  lscpu | grep -E 'Model name|^CPU\(s\)'; } > "$out/machine.txt"
for r in $(seq 1 "$ROUNDS"); do
  printf '%s\n' "$SET" | while IFS='|' read -r b f; do
    for side in base new; do
      bin="$bb/bench/$b"; [ "$side" = new ] && bin="$ROOT/build/default/bench/$b"
      echo "round $r: $side $b '$f'" >&2
      "$bin" --benchmark_filter="$f" --benchmark_repetitions=3 --benchmark_min_time=0.2 --benchmark_min_warmup_time=0.2 \
        --benchmark_format=json --benchmark_out="$out/$side-$b-$r.json" --benchmark_out_format=json >/dev/null
    done
  done
done
python3 - "$out" <<'PY' | tee "$out/report.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
times = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    side = os.path.basename(path).split("-")[0]
    with open(path) as f:
        data = json.load(f)
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        t = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        times.setdefault(b["run_name"], {}).setdefault(side, []).append(t)
print(open(os.path.join(out, "machine.txt")).read())
print("| benchmark | base median | new median | new / base (medians) | new / base (fastest) | base spread | new spread |")
print("|---|---:|---:|---:|---:|---:|---:|")
ratios, fastest = [], []
for name, s in times.items():
    if "base" not in s or "new" not in s:
        continue
    mb, mn = statistics.median(s["base"]), statistics.median(s["new"])
    ratios.append(mn / mb)
    fastest.append(min(s["new"]) / min(s["base"]))
    fmt = lambda x: "%.4g ms" % (x * 1e3)
    print("| %s | %s | %s | %.3f | %.3f | %.3f | %.3f |" % (name, fmt(mb), fmt(mn), mn / mb, fastest[-1],
          max(s["base"]) / min(s["base"]), max(s["new"]) / min(s["new"])))
if ratios:
    print("\ngeometric mean of new / base over %d benchmarks: %.3f (medians), %.3f (fastest runs)" % (
        len(ratios), statistics.geometric_mean(ratios), statistics.geometric_mean(fastest)))
PY
