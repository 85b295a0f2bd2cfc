"""fused_inception: GoogLeNet's Inception block as one fused op, for PyTorch.

    >>> import torch, fused_inception
    >>> block = fused_inception.FusedInception(192, 64, 96, 128, 16, 32, 32)
    >>> block(torch.randn(1, 192, 28, 28)).shape
    torch.Size([1, 256, 28, 28])
"""

from ._library import SUPPORTED_KERNEL_SIZES, build_info
from .backends import cpu_backend, cuda_backend
from .configs import BLOCKS_BY_NAME, GOOGLENET_BLOCKS, InceptionConfig
from .convert import ConversionError
from .fuse import FuseReport, FuseResult, fuse
from .models import GoogLeNet, Inception, googlenet, googlenet_loss
from .modules import FusedInception
from .ops import inception, pack_weights

__version__ = "0.1.0"

__all__ = [
    "BLOCKS_BY_NAME",
    "ConversionError",
    "FuseReport",
    "FuseResult",
    "FusedInception",
    "GOOGLENET_BLOCKS",
    "GoogLeNet",
    "Inception",
    "InceptionConfig",
    "SUPPORTED_KERNEL_SIZES",
    "build_info",
    "cpu_backend",
    "cuda_backend",
    "fuse",
    "googlenet",
    "googlenet_loss",
    "inception",
    "pack_weights",
]
