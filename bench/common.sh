# bench/common.sh - what the bench/run_*.sh scripts share (sourced; needs ROOT, PY and OUT set).
#
#   bench_step NAME DIR...   before a tool runs: drops DIR's weight files (*.safetensors, *.gguf)
#                            from the page cache (tools/bench/page_cache.py says why: every tool
#                            then maps them as after a reboot, in 2 MiB pages; skipped with
#                            MOE_BENCH_KEEP_CACHE=1) and appends the load average to $OUT/load.txt.
bench_step() {
  local name="$1"
  shift
  if [[ "${MOE_BENCH_KEEP_CACHE:-0}" != 1 ]]; then
    local d
    for d in "$@"; do [[ -e "$d" ]] && "$PY" "$ROOT/tools/bench/page_cache.py" evict "$d" 2>/dev/null; done
  fi
  echo "load before $name: $(cat /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
}
