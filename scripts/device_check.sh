#!/usr/bin/env bash
# The one script a session with a GPU runs first: build, the whole test suite on the GPU, CUDA tests under
# compute-sanitizer (memcheck; racecheck of the fused kernel), the benchmarks. Budget: under 8 minutes
# (build ~1, tests ~2-3, sanitizers ~1.5, benchmarks at most 3: `bench --budget 150` starts no case that
# would end past 150 s, and the step is killed at 180 s; bench.json is saved every few seconds, so a killed
# run keeps what it measured).
#
# $OUT receives 7 files (the device returns at most 8): build.log; check.log (tests, sanitizer and benchmark
# output, one section each); bench.json (pytest-benchmark layout: every timing, GPU, versions, commit, date,
# ceilings); speedup.png and roofline.png; results.json (steps, test counts) and summary.md (steps, tests,
# the benchmark table), printed last.
#
# On the device machine (no network; Python 3.12, torch 2.11+cu130 preinstalled):
#   COMMIT=$(git rev-parse HEAD) bash scripts/device_check.sh        # pass COMMIT if .git does not travel
#   BENCH_BUDGET=400 BENCH_ARGS=--max-autotune ...                   # a longer benchmark step, extra options
# Commit the results afterwards (README, Benchmarks): copy bench.json into benchmarks/results/<date>-<gpu>/
# and render it there with `python -m fused_inception report benchmarks/results/<date>-<gpu>/bench.json`.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
OUT=${OUT:-$repo/device-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
export COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} FUSED_INCEPTION_CUDA=1 PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
# Outside $OUT: at most 8 files come back from there.
export STEPS_FILE=${STEPS_FILE:-$(mktemp)} JUNIT_XML=${JUNIT_XML:-$(mktemp --suffix=.xml)}
steps_file=$STEPS_FILE

# step NAME TIMEOUT_S LOG COMMAND...: runs COMMAND, appending its output to LOG under a header, and records
# its status and duration.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local begin=$SECONDS
  echo "== $name (limit ${limit}s, log $(basename "$log"))"
  echo "===== $name: $*" >> "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - begin))" >> "$steps_file"
  echo "   exit $rc after $((SECONDS - begin))s"; tail -n 3 "$log" | sed 's/^/   | /'
  return $rc
}

step build 240 "$OUT/build.log" "$python" -m pip install -v --no-build-isolation --no-deps . || {
  "$python" "$repo/scripts/device_report.py" "$OUT"; exit 1; }
# Run from outside the source tree so the installed package (with its compiled _C) is imported. pytest-xdist
# (in the device image) spreads the emulated CPU cases over the cores; the GPU cases share the one GPU.
cd /tmp
parallel=()
"$python" -c "import xdist" 2>/dev/null && parallel=(-n 8)
step tests 240 "$OUT/check.log" "$python" -m pytest "$repo/tests" -q -p no:cacheprovider "${parallel[@]}" \
  --junitxml="$JUNIT_XML" -o junit_family=xunit2
# compute-sanitizer on a program that runs only our kernels (scripts/sanitize_fused.py: the fused kernel in
# every math mode and layout, the emulator's test GEMM): memcheck, then racecheck (shared-memory hazards).
step memcheck 120 "$OUT/check.log" compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$python" "$repo/scripts/sanitize_fused.py"
step racecheck 150 "$OUT/check.log" compute-sanitizer --tool racecheck --error-exitcode 1 \
  "$python" "$repo/scripts/sanitize_fused.py"
# The table goes into summary.md (device_report.py), so bench writes no bench.md here. The budget stops new
# cases; the step's limit (30 s more) covers the case in flight, the report and the plots.
bench_budget=${BENCH_BUDGET:-150}
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
step benchmarks $((bench_budget + 30)) "$OUT/check.log" "$python" -m fused_inception bench \
  --budget "$bench_budget" --out "$OUT" --formats json,png ${BENCH_ARGS:-}
cd "$repo"
"$python" "$repo/scripts/device_report.py" "$OUT"
