#!/usr/bin/env bash
# bench/peers/run_ggml.sh - ggml's MoE layer (ggml_mul_mat_id, the expert matmul llama.cpp uses) at
# bench_layer's gelu_mlp shape, fp32 and bf16 expert weights, 1 and 2 threads: builds ggml (CPU
# backend only, -DGGML_NATIVE=ON, Release) from a ggml source tree OUTSIDE this repository, then
# bench/peers/ggml_moe_layer.cpp against it, and runs it (JSON lines on stdout; what is timed:
# the comment at the top of ggml_moe_layer.cpp).
#
#   bench/peers/run_ggml.sh [--program NAME] [GGML_SRC [BUILD_DIR]] [-- PROGRAM ARGS...]
#     NAME       ggml_moe_layer (default: the MoE layer) or ggml_expert_gemm (one expert matrix,
#                Q8_0 / BF16 / F32, at bench_gemm's gemm/expert shapes; its ARGS default to its own)
#     GGML_SRC   ggml source tree (default ~/.cache/moe-peers/ggml), e.g. from
#                git clone https://github.com/ggml-org/ggml ~/.cache/moe-peers/ggml
#     BUILD_DIR  default GGML_SRC-build (~/.cache/moe-peers/ggml-build)
#     PROGRAM ARGS  default: --threads 1 2 --w f32 bf16 --reps 5 --min-time 0.5;
#                   --build-only: build, run nothing
#
# The ggml commit is printed on stderr (git, or a COMMIT file in GGML_SRC). Environment: JOBS
# (build parallelism, default 2), CXX (default g++). ggml keeps its defaults (OpenMP threads,
# GGML_CPU_REPACK); nothing of ggml is copied into this repository.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROGRAM=ggml_moe_layer
if [[ $# -gt 1 && "$1" == "--program" ]]; then PROGRAM="$2"; shift 2; fi
case "$PROGRAM" in ggml_moe_layer|ggml_expert_gemm) ;; *) echo "run_ggml.sh: unknown --program $PROGRAM" >&2; exit 2 ;; esac
SRC="${HOME}/.cache/moe-peers/ggml"
if [[ $# -gt 0 && "$1" != "--" ]]; then SRC="$1"; shift; fi
BUILD="${SRC%/}-build"
if [[ $# -gt 0 && "$1" != "--" ]]; then BUILD="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
ARGS=("$@")
[[ ${#ARGS[@]} -eq 0 && "$PROGRAM" == ggml_moe_layer ]] && ARGS=(--threads 1 2 --w f32 bf16 --reps 5 --min-time 0.5)

if [[ ! -f "$SRC/include/ggml.h" ]]; then
  echo "run_ggml.sh: no ggml source tree in $SRC; get one first, e.g." >&2
  echo "  git clone https://github.com/ggml-org/ggml $SRC" >&2
  exit 1
fi
commit="$(git -C "$SRC" rev-parse HEAD 2>/dev/null || cat "$SRC/COMMIT" 2>/dev/null || echo unknown)"
echo "run_ggml.sh: ggml $commit ($SRC), build $BUILD" >&2

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
  -DGGML_BLAS=OFF >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target ggml-cpu ggml-base >&2

BIN="$BUILD/moe_peers/$PROGRAM"
mkdir -p "$(dirname "$BIN")"
if [[ ! -x "$BIN" || "$HERE/$PROGRAM.cpp" -nt "$BIN" || "$BUILD/src/libggml-cpu.a" -nt "$BIN" ]]; then
  "${CXX:-g++}" -std=c++20 -O3 -march=native -DNDEBUG -I "$SRC/include" "$HERE/$PROGRAM.cpp" \
    "$BUILD/src/libggml-cpu.a" "$BUILD/src/libggml-base.a" -fopenmp -lpthread -lm -o "$BIN"
fi
[[ ${#ARGS[@]} -gt 0 && "${ARGS[0]}" == --build-only ]] && exit 0
echo "run_ggml.sh: load before: $(cat /proc/loadavg)" >&2
"$BIN" "${ARGS[@]}" | while IFS= read -r line; do
  # annotate each record with the ggml commit
  echo "${line%\}}, \"ggml_commit\": \"$commit\"}"
done
