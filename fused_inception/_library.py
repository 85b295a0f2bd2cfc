"""Loads the compiled extension, which registers the torch.ops.fused_inception operators."""

import torch  # noqa: F401  (libtorch must be loaded before the extension that links it)

try:
    from . import _C
except ImportError as error:  # pragma: no cover - only reached on a broken install
    raise ImportError(
        "fused_inception._C, the compiled extension, could not be loaded. Build it with "
        "`pip install --no-build-isolation .` against the torch you run with "
        f"(torch {torch.__version__} is installed). Cause: {error}"
    ) from error

_BUILD_INFO = dict(_C.build_info())
# The images the CUDA build holds: "sm_80" (SASS), "compute_90" (PTX), parsed as the run-time check parses them.
_BUILD_INFO["cuda_archs"] = tuple(torch.ops.fused_inception._cuda_images(_BUILD_INFO["cuda_arch_list"]))

#: Spatial kernel sizes the branches 2 and 3 may use, as compiled into the extension.
SUPPORTED_KERNEL_SIZES: tuple = tuple(_BUILD_INFO["supported_kernel_sizes"])


def build_info() -> dict:
    """How the extension was built: with_cuda, cuda_arch_list (TORCH_CUDA_ARCH_LIST as built), cuda_archs (the
    images it holds: "sm_80" machine code, "compute_90" PTX), torch_version, supported_kernel_sizes."""
    return dict(_BUILD_INFO)
