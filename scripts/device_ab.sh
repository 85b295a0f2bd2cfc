#!/usr/bin/env bash
# A/B of kernel build variants on a GPU, for the minutes a GPU session has left after scripts/device_check.sh:
# builds a copy of this checkout per variant (in place, FUSED_INCEPTION_NVCC_FLAGS set to the variant's
# flags; the builds run side by side), then scripts/device_ab.py times every variant's kernel on the same
# cases (routing off; CUDA graph replays, medians) and the NCHW routing threshold. About 2-3 minutes on the
# H200 machine (16 cores) for the default variants.
#
#   OUT=DIR bash scripts/device_ab.sh [NAME=FLAGS ...]      # FLAGS: nvcc flags, space-separated, may be empty
#
# Default variants: base= (the kernel as committed), k32=-DFUSED_INCEPTION_K_CHUNK_16BIT=32 (16-bit K steps of
# 32 elements, as before change 24: its A/B) and ahead2=-DFUSED_INCEPTION_SLICES_LOADED_AHEAD=2 (the output
# GEMMs load two k16 slices' fragments before their multiplies; docs/performance.md, change 23) and
# bar2=-DFUSED_INCEPTION_BARRIERS_PER_STEP=2 (two CTA barriers a K step, as before change 28: its A/B) and
# rows8=-DFUSED_INCEPTION_OUTPUT_PIXELS_AS_N=1 (the output GEMMs compute C^T, 8-pixel tile rows: 7x7 images
# compute 56 rows, not 64; change 37, whose gain the model, latency-bound, does not see). With a
# base variant, base is also timed with FUSED_INCEPTION_TEST_CLUSTERS=0 as "noclusters" (launches without
# thread-block clusters, each 3x3 task computing the whole reduction: change 35's A/B, no build of its own).
# The flags reach nvcc only: a variant's GPU kernel changes, its emulated CPU kernel (the .cpp files) does not;
# tests/test_simt.py checks each variant's source under the emulator instead (KERNEL_VARIANTS).
# $OUT receives ab.json (every number), ab.log (the builds' and the driver's output); the table is printed last.
# Knobs: AB_ROOT (where the copies go, default /tmp/fused-inception-ab), AB_ARGS (more device_ab.py options,
# e.g. "--batches 1,32,256"), PYTHON, CUDA_HOME, TORCH_CUDA_ARCH_LIST (default 9.0).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$repo/device-out}
mkdir -p "$OUT"
python=${PYTHON:-python3}
root=${AB_ROOT:-/tmp/fused-inception-ab}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export FUSED_INCEPTION_CUDA=${FUSED_INCEPTION_CUDA:-1} PIP_NO_INDEX=1 PYTHONUNBUFFERED=1
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=("base=" "k32=-DFUSED_INCEPTION_K_CHUNK_16BIT=32"
                                      "ahead2=-DFUSED_INCEPTION_SLICES_LOADED_AHEAD=2"
                                      "bar2=-DFUSED_INCEPTION_BARRIERS_PER_STEP=2"
                                      "rows8=-DFUSED_INCEPTION_OUTPUT_PIXELS_AS_N=1")
jobs_each=$(( $(nproc) / ${#variants[@]} ))
(( jobs_each < 1 )) && jobs_each=1
log=$OUT/ab.log
: > "$log"
rm -rf "$root"
mkdir -p "$root"
pids=() args=()
for spec in "${variants[@]}"; do
  name=${spec%%=*} flags=${spec#*=}
  case $name in ''|*[!A-Za-z0-9_-]*) echo "variant name must be letters, digits, _ or -: '$name'" >&2; exit 2 ;; esac
  dir=$root/$name/checkout
  mkdir -p "$dir"
  tar -C "$repo" --exclude=./build --exclude=./.git --exclude='*.so' --exclude=./device-out -cf - . | tar -C "$dir" -xf -
  echo "== build $name: FUSED_INCEPTION_NVCC_FLAGS='$flags', $jobs_each jobs" | tee -a "$log"
  (cd "$dir" && FUSED_INCEPTION_NVCC_FLAGS="$flags" MAX_JOBS=$jobs_each "$python" setup.py build_ext --inplace \
     > "$root/$name/build.log" 2>&1) &
  pids+=($!)
  args+=(--variant "$name=$dir")
done
status=0
for index in "${!pids[@]}"; do
  if ! wait "${pids[$index]}"; then
    status=1
    echo "build of ${variants[$index]%%=*} failed; its log's end:" | tee -a "$log"
  fi
  tail -n 3 "$root/${variants[$index]%%=*}/build.log" >> "$log"
done
[ "$status" = 0 ] || { tail -n 30 "$log"; exit 1; }
for spec in "${variants[@]}"; do
  [ "${spec%%=*}" = base ] && args+=(--env-variant "noclusters=base:FUSED_INCEPTION_TEST_CLUSTERS=0")
done
# shellcheck disable=SC2086  # AB_ARGS is a list of options
"$python" "$repo/scripts/device_ab.py" "${args[@]}" --out "$OUT/ab.json" ${AB_ARGS:-} 2>&1 | tee -a "$log"
exit "${PIPESTATUS[0]}"
