#!/usr/bin/env bash
# Builds csrc/ as a C++ library against the installed libtorch with CMake and runs the C++ test (ctest).
# Usage: scripts/cmake_test.sh [build-dir]   (env: PYTHON, FUSED_INCEPTION_CUDA=ON|OFF, TORCH_CUDA_ARCH_LIST)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-cmake}
python=${PYTHON:-python}
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
args=(-DCMAKE_PREFIX_PATH="$torch_prefix" -DFUSED_INCEPTION_CUDA="${FUSED_INCEPTION_CUDA:-OFF}")
command -v ninja >/dev/null && args+=(-G Ninja)
if "$python" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then
  # A CUDA libtorch's CMake config looks for the toolkit, and for NVRTC, which a pip-installed torch ships
  # in its nvidia wheels rather than in the toolkit.
  cuda_home=${CUDA_HOME:-/usr/local/cuda}
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$cuda_home" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
  nvrtc=$(ls "$cuda_home"/lib64/libnvrtc.so* 2>/dev/null | head -n 1 || true)
  if [ -z "$nvrtc" ]; then
    nvrtc=$("$python" - <<'PY'
import glob, os, nvidia
paths = [p for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "**", "libnvrtc.so*"), recursive=True)]
print(sorted(p for p in paths if "builtins" not in p and ".alt." not in p)[0] if paths else "")
PY
)
  fi
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
cmake -S . -B "$build_dir" "${args[@]}"
cmake --build "$build_dir" --parallel "${MAX_JOBS:-2}"
ctest --test-dir "$build_dir" --output-on-failure
