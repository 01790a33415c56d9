#!/usr/bin/env bash
# Builds (preset `default`) and runs the main example; arguments are passed to it.
#   scripts/run-example.sh [ARGS...]
#   MOE_EXAMPLE=<name> scripts/run-example.sh   runs examples/<name>.cpp instead
# Expects the dependencies to be there: run scripts/install-deps.sh first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The main example: examples/${MAIN_EXAMPLE}.cpp (RingMoE end to end on satellite imagery).
MAIN_EXAMPLE=ringmoe
example=${MOE_EXAMPLE:-$MAIN_EXAMPLE}

if [ ! -f "examples/${example}.cpp" ]; then
  echo "run-example: examples/${example}.cpp does not exist; examples:" >&2
  ls examples/*.cpp 2>/dev/null >&2 || echo "  (none yet)" >&2
  exit 1
fi
cmake --preset default >/dev/null
cmake --build --preset default --target "moe_example_${example}"
exec "build/default/examples/${example}" "$@"
