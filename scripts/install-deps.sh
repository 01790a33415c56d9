#!/usr/bin/env bash
# Installs what moe's build, tests, examples and benchmarks need on Debian 12 — only the
# packages that are missing, so it is quick when everything is there.
#   scripts/install-deps.sh            the main configuration (g++): what the README commands need
#   scripts/install-deps.sh --clang    + clang 14 and its OpenMP/sanitizer runtimes (clang, fuzz)
# Runs apt-get as root, or through sudo.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache
  libeigen3-dev libxsimd-dev catch2 libbenchmark-dev
  nlohmann-json3-dev libtiff-dev
  python3 python3-numpy python3-torch python3-torchvision python3-pil python3-tifffile python3-gdal
  # OpenBLAS as libblas.so.3 (the alternatives link, priority above the reference BLAS): Debian's
  # PyTorch calls libblas.so.3, so without it the stock PyTorch baselines run the reference BLAS
  # (about 2 GFLOP/s, a strawman); see docs/benchmarks.md, "How baselines are run"
  libopenblas0-pthread
)
for arg in "$@"; do
  case "$arg" in
    --clang) packages+=(clang-14 libomp-14-dev libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: missing ${missing[*]}, and not root (no sudo): install them as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
