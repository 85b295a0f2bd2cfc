"""fused_inception: GoogLeNet's Inception block as one fused op, for PyTorch.

    >>> import torch, fused_inception
    >>> block = fused_inception.FusedInception(192, 64, 96, 128, 16, 32, 32)
    >>> block(torch.randn(1, 192, 28, 28)).shape
    torch.Size([1, 256, 28, 28])
"""

import importlib.util as _importlib_util

if _importlib_util.find_spec("torch") is not None and _importlib_util.find_spec("fused_inception._C") is not None:
    from ._library import SUPPORTED_KERNEL_SIZES, build_info
    from .backends import cpu_backend, cuda_backend, route, routing
    from .configs import BLOCKS_BY_NAME, GOOGLENET_BLOCKS, InceptionConfig
    from .convert import ConversionError
    from .device_support import BackendInfo, backend_info
    from . import export as _export  # noqa: F401  (the op's decomposition: fused models export to ONNX)
    from .fuse import FuseReport, FuseResult, fuse
    from .models import GoogLeNet, Inception, googlenet, googlenet_loss
    from .modules import FusedInception
    from .ops import inception
else:
    # Installed without torch or without the compiled extension (FUSED_INCEPTION_EXTENSION=0): only the CuPy
    # path, fused_inception.cupy, works. Say so when anything else is asked for.
    def __getattr__(name):
        # `from fused_inception import kernel` probes the attribute before importing the subpackage: the
        # torch-free subpackages (kernel, cupy) must still import.
        if _importlib_util.find_spec(f"{__name__}.{name}") is not None:
            import importlib

            return importlib.import_module(f"{__name__}.{name}")
        raise ImportError(f"fused_inception.{name} needs torch and the compiled extension fused_inception._C, "
                          "which this installation lacks (build it with pip install --no-build-isolation .); "
                          "fused_inception.cupy works without them")

__version__ = "0.1.0"

__all__ = [
    "BLOCKS_BY_NAME",
    "BackendInfo",
    "ConversionError",
    "FuseReport",
    "FuseResult",
    "FusedInception",
    "GOOGLENET_BLOCKS",
    "GoogLeNet",
    "Inception",
    "InceptionConfig",
    "SUPPORTED_KERNEL_SIZES",
    "backend_info",
    "build_info",
    "cpu_backend",
    "route",
    "routing",
    "cuda_backend",
    "fuse",
    "googlenet",
    "googlenet_loss",
    "inception",
]
