"""The unfused reference Inception block: plain PyTorch modules, the ground truth FusedInception matches."""

import torch
import torch.nn.functional as F
from torch import nn

from .._library import SUPPORTED_KERNEL_SIZES


def check_block_args(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, kernel_sizes):
    """Validates an Inception block's constructor arguments; returns kernel_sizes as a tuple."""
    channels = dict(in_channels=in_channels, ch1x1=ch1x1, ch3x3red=ch3x3red, ch3x3=ch3x3, ch5x5red=ch5x5red,
                    ch5x5=ch5x5, pool_proj=pool_proj)
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    try:
        kernel_sizes = tuple(kernel_sizes)
    except TypeError:
        raise TypeError(f"kernel_sizes must be a pair of ints, got {kernel_sizes!r}") from None
    if len(kernel_sizes) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) for k in kernel_sizes):
        raise TypeError(f"kernel_sizes must be a pair of ints, got {kernel_sizes!r}")
    if not all(k in SUPPORTED_KERNEL_SIZES for k in kernel_sizes):
        raise ValueError(f"kernel_sizes entries must be among {SUPPORTED_KERNEL_SIZES}, got {kernel_sizes}")
    return kernel_sizes


class ConvReLU(nn.Module):
    """Conv2d with "same" padding and stride 1, then ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, *, device=None, dtype=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, device=device,
                              dtype=dtype)

    def forward(self, x):
        return F.relu(self.conv(x))


class Inception(nn.Module):
    """GoogLeNet's Inception block, unfused: four branches on the same input, concatenated on channels.

    Branch 2 and 3 use ``kernel_sizes`` = (3, 5) as in the paper; (3, 3) matches torchvision's GoogLeNet.
    Parameter names (``branch1.conv.weight``, ``branch2.0.conv.weight``, ...) follow torchvision's layout,
    and :class:`fused_inception.FusedInception` has exactly the same ones.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, *, kernel_sizes=(3, 5),
                 device=None, dtype=None):
        super().__init__()
        k3, k5 = check_block_args(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, kernel_sizes)
        factory = dict(device=device, dtype=dtype)
        self.branch1 = ConvReLU(in_channels, ch1x1, 1, **factory)
        self.branch2 = nn.Sequential(ConvReLU(in_channels, ch3x3red, 1, **factory),
                                     ConvReLU(ch3x3red, ch3x3, k3, **factory))
        self.branch3 = nn.Sequential(ConvReLU(in_channels, ch5x5red, 1, **factory),
                                     ConvReLU(ch5x5red, ch5x5, k5, **factory))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     ConvReLU(in_channels, pool_proj, 1, **factory))

    @property
    def kernel_sizes(self) -> tuple:
        return (self.branch2[1].conv.kernel_size[0], self.branch3[1].conv.kernel_size[0])

    @property
    def block_args(self) -> tuple:
        """The positional constructor arguments (in_channels, ch1x1, ..., pool_proj)."""
        return (self.branch1.conv.in_channels, self.branch1.conv.out_channels, self.branch2[0].conv.out_channels,
                self.branch2[1].conv.out_channels, self.branch3[0].conv.out_channels,
                self.branch3[1].conv.out_channels, self.branch4[1].conv.out_channels)

    @property
    def out_channels(self) -> int:
        args = self.block_args
        return args[1] + args[3] + args[5] + args[6]

    def op_parameters(self) -> tuple:
        """Weights and biases in the order of the fused op's schema (w1, b1, w3r, b3r, ..., wp, bp)."""
        # Runs on every forward: the submodules through their _modules dicts (what Sequential indexing reads,
        # at a fraction of its cost), looked up anew each call; weight and bias through getattr, so that a
        # parametrization's computed weight is what the op gets.
        modules = self._modules
        branch2, branch3 = modules["branch2"]._modules, modules["branch3"]._modules
        convs = (modules["branch1"]._modules["conv"], branch2["0"]._modules["conv"], branch2["1"]._modules["conv"],
                 branch3["0"]._modules["conv"], branch3["1"]._modules["conv"],
                 modules["branch4"]._modules["1"]._modules["conv"])
        return (convs[0].weight, convs[0].bias, convs[1].weight, convs[1].bias, convs[2].weight, convs[2].bias,
                convs[3].weight, convs[3].bias, convs[4].weight, convs[4].bias, convs[5].weight, convs[5].bias)

    def extra_repr(self) -> str:
        return f"block_args={self.block_args}, kernel_sizes={self.kernel_sizes}"

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
