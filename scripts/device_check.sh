#!/usr/bin/env bash
# The one script a session with a GPU runs first: build, the whole test suite on the GPU, one CUDA test under
# compute-sanitizer (memcheck), the benchmark suite. Logs, a results JSON (GPU, torch, CUDA, commit, every
# timing) and a markdown summary go to $OUT; the short table is printed last. Budget: under 8 minutes.
#
# On the device machine (no network; Python 3.12, torch 2.11+cu130 preinstalled):
#   COMMIT=$(git rev-parse HEAD) bash scripts/device_check.sh        # pass COMMIT if .git does not travel
# Commit the results afterwards: cp "$OUT"/{results.json,summary.md} benchmarks/results/<date>-<gpu>/
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
OUT=${OUT:-$repo/device-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
export COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} FUSED_INCEPTION_CUDA=1 PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
export STEPS_FILE=${STEPS_FILE:-$(mktemp)}  # outside $OUT: at most 8 files come back from there
steps_file=$STEPS_FILE

# step NAME TIMEOUT_S LOG COMMAND...: runs COMMAND, records its status and duration.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local begin=$SECONDS
  echo "== $name (limit ${limit}s, log $(basename "$log"))"
  timeout "$limit" "$@" > "$log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - begin))" >> "$steps_file"
  echo "   exit $rc after $((SECONDS - begin))s"; tail -n 3 "$log" | sed 's/^/   | /'
  return $rc
}

step build 240 "$OUT/build.log" "$python" -m pip install -v --no-build-isolation --no-deps . || {
  "$python" "$repo/scripts/device_report.py" "$OUT"; exit 1; }
# Run from outside the source tree so the installed package (with its compiled _C) is imported.
cd /tmp
step tests 240 "$OUT/tests.log" "$python" -m pytest "$repo/tests" -q -p no:cacheprovider \
  --junitxml="$OUT/tests.xml" -o junit_family=xunit2
step sanitizer 150 "$OUT/sanitizer.log" compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$python" -m pytest "$repo/tests/test_forward.py" "$repo/tests/test_simt.py" -q -p no:cacheprovider \
  -k "cuda and ((3a and bf16 and nhwc) or gemm)"
step benchmarks 200 "$OUT/bench.log" "$python" -m pytest "$repo/benchmarks" -q -p no:cacheprovider \
  --benchmark-json="$OUT/bench.json"
cd "$repo"
"$python" "$repo/scripts/device_report.py" "$OUT"
