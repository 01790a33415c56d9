#!/usr/bin/env bash
# bench/run_tokenizer.sh - moe's tokenizer (bench_tokenizer) and the JavaScript reference
# (tools/bench/tokenizer_js.mjs: Hugging Face's JS tokenizers, @lenml/tokenizers) on the same
# ~1 MB English, Chinese and mixed texts with the same Qwen tokenizer.json, one thread each, one
# after the other in the same run; then the ratio per text and mode (> 1: moe is faster).
#
#   bench/run_tokenizer.sh [BUILD_DIR]   (default build/default; builds moe_bench_bench_tokenizer)
# Needs node and scripts/install-deps.sh's npm packages (MOE_NPM_DIR, default ~/.cache/moe/npm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build/default}"
NPM="${MOE_NPM_DIR:-$HOME/.cache/moe/npm}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cmake --build "$BUILD" -j2 --target moe_bench_bench_tokenizer >&2
node "$ROOT/tools/bench/tokenizer_texts.mjs" --out "$OUT/texts" --npm-dir "$NPM" >&2
export MOE_TOKENIZER_TEXTS="$OUT/texts" MOE_NPM_DIR="$NPM"
"$BUILD/bench/bench_tokenizer" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
    --benchmark_min_time=0.5 --benchmark_min_warmup_time=0.3 --benchmark_format=json > "$OUT/moe.json"
node "$ROOT/tools/bench/tokenizer_js.mjs" --tokenizer qwen3 --npm-dir "$NPM" --repeat 3 \
    "$OUT/texts/english.txt" "$OUT/texts/chinese.txt" "$OUT/texts/mixed.txt" > "$OUT/js.jsonl"
/usr/bin/python3 - "$OUT/moe.json" "$OUT/js.jsonl" <<'PYEOF'
import json, os, sys
moe = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median":
        ms = b["real_time"] * {"ms": 1, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
        moe[b["run_name"].replace("/real_time", "")] = (ms, b)
print("| text | mode | moe MB/s | moe Mtok/s | JS MB/s | moe / JS |")
print("|---|---|---:|---:|---:|---:|")
for line in open(sys.argv[2]):
    j = json.loads(line)
    if "file" not in j:
        load_ms = moe.get("load", (None,))[0]
        print(f"<!-- load: JS {j['load_seconds'] * 1e3:.0f} ms, moe {load_ms:.0f} ms -->" if load_ms else "")
        continue
    text = os.path.basename(j["file"]).replace(".txt", "")
    m = moe.get(f"encode/{text}/{j['mode']}")
    if not m:
        continue
    ms, b = m
    mbs = j["bytes"] / (ms * 1e-3) / 1e6
    print(f"| {text} | {j['mode']} | {mbs:.1f} | {b['tokens/s'] / 1e6:.2f} | {j['mb_per_s']:.2f} | {mbs / j['mb_per_s']:.1f}x |")
for text in ("english", "chinese", "mixed"):
    c = moe.get(f"encode_cold/{text}/whole")
    p = moe.get(f"pretokenize/{text}")
    w = moe.get(f"encode/{text}/whole")
    if c and p and w:
        print(f"| {text} | cold cache (whole) | {c[1]['bytes_per_second'] / 1e6:.1f} | | | |")
        print(f"<!-- {text}: pre-tokenizer (NFC + Split regex) {p[0]:.1f} ms of {w[0]:.1f} ms warm ({100 * p[0] / w[0]:.0f} %), "
              f"cache hits {w[1]['cache_hit_%']:.1f} % warm, {c[1]['cache_hit_%']:.1f} % cold -->")
PYEOF
