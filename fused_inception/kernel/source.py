"""Where the fused kernel's CUDA source is, and how to compile it at run time (NVRTC).

The kernel headers are torch-free and NVRTC-clean, and ship with the package (``fused_inception/include``,
copied from ``csrc/`` at build time; a source checkout reads ``csrc/`` directly). This module needs neither
torch nor CuPy: the CuPy path compiles with ``cupy.RawModule``, tests compile with ``cuda.bindings.nvrtc``.
"""

import glob
import os

KERNEL_HEADER = "kernels/inception_kernel.h"
#: The program NVRTC compiles: the kernel template, instantiated through the name expressions below.
SOURCE = f'#include "{KERNEL_HEADER}"\n'
#: Math mode -> the kernel's C++ name expression (for nvrtcAddNameExpression / RawModule name_expressions).
KERNEL_NAMES = {
    mode: f"fused_inception::gpu::inception::inception_kernel<fused_inception::MathMode::{enum}>"
    for mode, enum in (("f16", "kF16"), ("bf16", "kBF16"), ("tf32", "kTF32"), ("f32", "kF32"))
}


def include_dir() -> str:
    """The directory the kernel headers are included from."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # fused_inception/
    for candidate in (os.path.join(package, "include"), os.path.join(os.path.dirname(package), "csrc")):
        if os.path.exists(os.path.join(candidate, KERNEL_HEADER)):
            return candidate
    raise FileNotFoundError(f"fused_inception: the kernel headers ({KERNEL_HEADER}) are missing from the "
                            "installation; reinstall fused_inception")


def cuda_include_dirs() -> list:
    """Directories with cuda_fp16.h and cuda_bf16.h: the toolkit's (CUDA_HOME, CUDA_PATH, /usr/local/cuda),
    else the headers of the pip-installed CUDA runtime (nvidia-cuda-runtime)."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.exists(os.path.join(root, "include", "cuda_fp16.h")):
            return [os.path.join(root, "include")]
    try:
        import nvidia
    except ImportError:
        return []
    for path in nvidia.__path__:
        found = sorted(glob.glob(os.path.join(path, "*", "include", "cuda_fp16.h")))
        if found:
            return [os.path.dirname(found[-1])]
    return []


def nvrtc_options(arch="compute_90") -> list:
    """NVRTC options for the kernel: C++17, the include paths and the target architecture (None: leave it
    to the caller; CuPy adds the current device's)."""
    options = ["-std=c++17", f"-I{include_dir()}"] + [f"-I{d}" for d in cuda_include_dirs()]
    return options + ([f"-arch={arch}"] if arch else [])


def compile_with_nvrtc(arch: str = "compute_90", modes=tuple(KERNEL_NAMES)) -> dict:
    """Compiles the kernel's instantiations with NVRTC (no GPU needed); returns {mode: lowered name} and
    raises RuntimeError with NVRTC's log on failure. Needs cuda-bindings (a dependency of torch's CUDA
    builds) and the NVRTC library."""
    from cuda.bindings import nvrtc

    def check(result, what):
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC {what} failed: {error}")
        return values[0] if values else None

    program = check(nvrtc.nvrtcCreateProgram(SOURCE.encode(), b"fused_inception.cu", 0, [], []), "create")
    try:
        for mode in modes:
            check(nvrtc.nvrtcAddNameExpression(program, KERNEL_NAMES[mode].encode()), "name expression")
        options = [option.encode() for option in nvrtc_options(arch)]
        (error,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if error != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = check(nvrtc.nvrtcGetProgramLogSize(program), "log size")
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(program, log)
            raise RuntimeError(f"NVRTC could not compile the fused kernel ({error}):\n{log.decode(errors='replace')}")
        return {mode: check(nvrtc.nvrtcGetLoweredName(program, KERNEL_NAMES[mode].encode()), "lowered name").decode()
                for mode in modes}
    finally:
        nvrtc.nvrtcDestroyProgram(program)
