#!/usr/bin/env bash
# llama.cpp peer of the decoder benchmark (issue 16): builds llama.cpp (CPU only) outside the
# repository, converts the random-weight model folders of tools/bench/make_decoder_models.py to
# BF16 GGUF (tools/bench/hf_to_gguf.py, llama.cpp's gguf-py) and times them with llama-bench
# (prefill, decode from an empty context) and llama-batched-bench (decode after the prefill).
# See bench/peers/README.md.
#
#   bench/peers/llama_cpp.sh            build + models + convert + benchmark
#   bench/peers/llama_cpp.sh smoke      build + models + convert + a short run of each binary (checks it works)
#   bench/peers/llama_cpp.sh build      only build;   ... convert   only build + models + convert
#
# Environment (defaults):
#   LLAMA_CPP_SRC      llama.cpp source tree          ${MOE_CACHE_DIR:-~/.cache/moe}/llama.cpp-src
#   LLAMA_CPP_BUILD    build folder                   ${MOE_CACHE_DIR:-~/.cache/moe}/llama.cpp-build
#   MOE_MODELS_DIR     model folders                  ${MOE_CACHE_DIR:-~/.cache/moe}/models
#   MOE_DECODER_MODELS folder names                   "qwen2-0.5b-random qwen2moe-0.5b-random"
#   MOE_BENCH_THREADS  thread counts                  1,2
#   MOE_BENCH_PREFILL  prompt tokens                  512
#   MOE_BENCH_DECODE   generated tokens               64
#   MOE_BENCH_REPS     llama-bench repetitions        5      (llama-batched-bench: runs of each thread count)
#   MOE_BENCH_OUT      results folder                 ${MOE_CACHE_DIR:-~/.cache/moe}/results/llama_cpp-<date>
#   MOE_BUILD_JOBS     parallel compile jobs          2
set -euo pipefail

MODE=${1:-bench}
case "$MODE" in bench|smoke|build|convert) ;; *) echo "usage: $0 [bench|smoke|build|convert]" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${MOE_CACHE_DIR:-$HOME/.cache/moe}
SRC=${LLAMA_CPP_SRC:-$CACHE/llama.cpp-src}
BUILD=${LLAMA_CPP_BUILD:-$CACHE/llama.cpp-build}
MODELS_DIR=${MOE_MODELS_DIR:-$CACHE/models}
MODELS=${MOE_DECODER_MODELS:-"qwen2-0.5b-random qwen2moe-0.5b-random"}
THREADS=${MOE_BENCH_THREADS:-1,2}
PP=${MOE_BENCH_PREFILL:-512}
TG=${MOE_BENCH_DECODE:-64}
REPS=${MOE_BENCH_REPS:-5}
JOBS=${MOE_BUILD_JOBS:-2}
PY=/usr/bin/python3

for d in "$SRC" "$BUILD" "$MODELS_DIR"; do
    case "$(realpath -m "$d")/" in "$ROOT"/*) echo "$d is inside the repository: keep llama.cpp and models outside it" >&2; exit 2 ;; esac
done
if [ ! -f "$SRC/CMakeLists.txt" ] || [ ! -d "$SRC/gguf-py/gguf" ]; then
    cat >&2 <<EOF
no llama.cpp source tree at $SRC (set LLAMA_CPP_SRC). For example:
  git clone https://github.com/ggml-org/llama.cpp $SRC
EOF
    exit 2
fi
if [ -d "$SRC/.git" ]; then
    COMMIT=$(git -C "$SRC" rev-parse HEAD)
elif [ -f "$SRC/.snapshot-commit" ]; then
    COMMIT=$(cat "$SRC/.snapshot-commit")   # an exported tree: the commit recorded when it was extracted
else
    COMMIT=unknown
fi
echo "llama.cpp source $SRC (commit $COMMIT), build $BUILD"

# ---- build: as llama.cpp's README / docs/build.md says (cmake -B build; cmake --build build --config Release),
# CPU backend only, -march=native (GGML_NATIVE), no libcurl, only the programs used here.
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF
            -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_SYCL=OFF -DGGML_HIP=OFF
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF)
grep -q 'option(LLAMA_CURL' "$SRC/CMakeLists.txt" && CMAKE_ARGS+=(-DLLAMA_CURL=OFF)
target_of() {  # the CMake target an example folder defines (old snapshots: main, new: llama-cli)
    sed -n 's/^set(TARGET \([^)]*\)).*/\1/p' "$SRC/examples/$1/CMakeLists.txt" 2>/dev/null | head -1
}
BENCH_T=$(target_of llama-bench); CLI_T=$(target_of main); BATCHED_T=$(target_of batched-bench)
[ -n "$BENCH_T" ] || { echo "no examples/llama-bench in $SRC" >&2; exit 2; }
TARGETS=("$BENCH_T")
[ -n "$CLI_T" ] && TARGETS+=("$CLI_T")
[ -n "$BATCHED_T" ] && TARGETS+=("$BATCHED_T")
cmake -S "$SRC" -B "$BUILD" "${CMAKE_ARGS[@]}" > "$BUILD.cmake.log" 2>&1 || { cat "$BUILD.cmake.log" >&2; exit 1; }
cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}" > "$BUILD.build.log" 2>&1 \
    || { tail -40 "$BUILD.build.log" >&2; exit 1; }
BIN=$BUILD/bin
echo "built ${TARGETS[*]} in $BIN"
[ "$MODE" = build ] && exit 0

# ---- models and GGUFs
$PY "$ROOT/tools/bench/make_decoder_models.py" --out "$MODELS_DIR" >&2
export PYTHONPATH="$SRC/gguf-py${PYTHONPATH:+:$PYTHONPATH}"
GGUFS=()
for m in $MODELS; do
    dir=$MODELS_DIR/$m
    gguf=$dir/model-bf16.gguf
    if [ ! -f "$gguf" ] || [ "$dir/model.safetensors" -nt "$gguf" ] || [ "$ROOT/tools/bench/hf_to_gguf.py" -nt "$gguf" ]; then
        $PY "$ROOT/tools/bench/hf_to_gguf.py" "$dir" --out "$gguf" --outtype bf16
    else
        echo "$gguf: up to date"
    fi
    GGUFS+=("$gguf")
done
[ "$MODE" = convert ] && exit 0

if [ "$MODE" = smoke ]; then
    for gguf in "${GGUFS[@]}"; do
        echo "== $gguf"
        "$BIN/llama-bench" -m "$gguf" -p 16 -n 4 -t 2 -r 1 -o md
        [ -n "$BATCHED_T" ] && "$BIN/llama-batched-bench" -m "$gguf" -c 64 -npp 16 -ntg 4 -npl 1 -t 2 --output-format jsonl 2>/dev/null | grep '^{'
        [ -n "$CLI_T" ] && "$BIN/$CLI_T" -m "$gguf" -p "The quick brown fox" -n 8 -t 2 --temp 0 -no-cnv --no-warmup 2>/dev/null </dev/null
        echo
    done
    exit 0
fi

# ---- benchmark
OUT=${MOE_BENCH_OUT:-$CACHE/results/llama_cpp-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
{
    echo "llama.cpp commit: $COMMIT"
    echo "source: $SRC"
    echo "cmake: ${CMAKE_ARGS[*]}"
    echo "date: $(date -Is)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"
    echo "loadavg before: $(cat /proc/loadavg)"
} > "$OUT/info.txt"
for gguf in "${GGUFS[@]}"; do
    name=$(basename "$(dirname "$gguf")")
    echo "== $name: llama-bench -p $PP -n $TG -t $THREADS -r $REPS"
    "$BIN/llama-bench" -m "$gguf" -p "$PP" -n "$TG" -t "$THREADS" -r "$REPS" -o json > "$OUT/llama-bench-$name.json"
    $PY - "$OUT/llama-bench-$name.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1])):
    kind = "prefill" if r["n_prompt"] else "decode"
    print("  %-7s threads %d: %8.2f tok/s (+- %.2f)" % (kind, r["n_threads"], r["avg_ts"], r["stddev_ts"]))
EOF
    if [ -n "$BATCHED_T" ]; then
        : > "$OUT/llama-batched-bench-$name.jsonl"
        for t in ${THREADS//,/ }; do
            for _ in $(seq "$REPS"); do
                "$BIN/llama-batched-bench" -m "$gguf" -c $((PP + TG)) -npp "$PP" -ntg "$TG" -npl 1 -t "$t" -tb "$t" \
                    --output-format jsonl 2>/dev/null | grep '^{' >> "$OUT/llama-batched-bench-$name.jsonl"
            done
        done
        $PY - "$OUT/llama-batched-bench-$name.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for t in sorted({r["n_threads"] for r in rows}):
    rs = [r for r in rows if r["n_threads"] == t]
    print("  batched-bench threads %d: prefill %8.2f tok/s, decode after it %8.2f tok/s (median of %d)"
          % (t, statistics.median(r["speed_pp"] for r in rs), statistics.median(r["speed_tg"] for r in rs), len(rs)))
EOF
    fi
done
echo "loadavg after: $(cat /proc/loadavg)" >> "$OUT/info.txt"
echo "results: $OUT"
