"""Reading torchvision's Inception blocks: structure checks and BatchNorm folding."""

import torch
from torch import nn

from ._library import SUPPORTED_KERNEL_SIZES


class ConversionError(ValueError):
    """A module cannot be expressed as a FusedInception; the message says why."""


def _torchvision_inception_class():
    try:
        from torchvision.models.googlenet import Inception
    except ImportError:
        return None
    return Inception


def is_torchvision_inception(module: nn.Module) -> bool:
    cls = _torchvision_inception_class()
    return cls is not None and isinstance(module, cls)


def _fold(basic_conv, where, expected_kernel=None):
    """Folds torchvision's BasicConv2d (conv without bias -> BatchNorm -> ReLU) into (weight, bias)."""
    conv, bn = getattr(basic_conv, "conv", None), getattr(basic_conv, "bn", None)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
        # A torchvision Inception built with a custom conv_block: not the conv -> BatchNorm -> ReLU we fold.
        raise ConversionError(f"{where}: expected torchvision's BasicConv2d (conv, bn), "
                              f"got {type(basic_conv).__name__}")
    k = conv.kernel_size[0]
    if expected_kernel is not None and k != expected_kernel:
        raise ConversionError(f"{where}: expected a {expected_kernel}x{expected_kernel} conv, got {conv.kernel_size}")
    if (conv.kernel_size != (k, k) or conv.stride != (1, 1) or conv.padding != (k // 2, k // 2)
            or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros"):
        raise ConversionError(f"{where}: only square stride-1 'same'-padded convolutions fuse, got {conv}")
    if bn.running_mean is None or bn.running_var is None:
        raise ConversionError(f"{where}: BatchNorm without running statistics cannot be folded")
    # Fold in float64, then return to the conv's dtype and memory format.
    scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    shift = -bn.running_mean.detach().double() * scale
    if bn.affine:
        scale = scale * bn.weight.detach().double()
        shift = shift * bn.weight.detach().double() + bn.bias.detach().double()
    if conv.bias is not None:
        shift = shift + conv.bias.detach().double() * scale
    weight = conv.weight.detach()
    folded = (weight.double() * scale.view(-1, 1, 1, 1)).to(weight.dtype)
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        folded = folded.contiguous(memory_format=torch.channels_last)
    # A frozen conv stays frozen: each folded tensor requires grad where one of its sources does.
    bias_sources = [p for p in (conv.bias, bn.weight, bn.bias) if p is not None]
    return folded, shift.to(weight.dtype), conv.weight.requires_grad, any(p.requires_grad for p in bias_sources)


def torchvision_block_parameters(module: nn.Module):
    """Returns (block_args, kernel_sizes, [w1, b1, ..., wp, bp], [requires_grad of each]) of a torchvision
    Inception whose BatchNorms are all in eval mode."""
    if not is_torchvision_inception(module):
        raise TypeError("FusedInception.from_module expects fused_inception.models.Inception or "
                        f"torchvision.models.googlenet.Inception, got {type(module).__module__}."
                        f"{type(module).__qualname__}")
    training = training_batchnorms(module)
    if training:
        raise ConversionError(f"torchvision Inception blocks must be in eval mode to convert: their BatchNorm is "
                              f"folded into the convolutions using its running statistics, and "
                              f"{', '.join(training)} in this block is in training mode (call model.eval())")
    pool = module.branch4[0]
    if not (isinstance(pool, nn.MaxPool2d) and _pair(pool.kernel_size) == (3, 3) and _pair(pool.stride) == (1, 1)
            and _pair(pool.padding) == (1, 1) and _pair(pool.dilation) == (1, 1)):
        raise ConversionError(f"branch4: expected a 3x3 stride-1 max-pool with padding 1, got {pool}")
    # ceil_mode does not matter at stride 1: the output size is H x W either way.
    folds = [_fold(module.branch1, "branch1", 1), _fold(module.branch2[0], "branch2.0", 1),
             _fold(module.branch2[1], "branch2.1"), _fold(module.branch3[0], "branch3.0", 1),
             _fold(module.branch3[1], "branch3.1"), _fold(module.branch4[1], "branch4.1", 1)]
    (w1, b1), (w3r, b3r), (w3, b3), (w5r, b5r), (w5, b5), (wp, bp) = [fold[:2] for fold in folds]
    requires_grad = [flag for fold in folds for flag in fold[2:]]
    kernel_sizes = (w3.shape[-1], w5.shape[-1])
    if not all(k in SUPPORTED_KERNEL_SIZES for k in kernel_sizes):
        raise ConversionError(f"spatial kernels must be among {SUPPORTED_KERNEL_SIZES}, got {kernel_sizes}")
    block_args = (w1.shape[1], w1.shape[0], w3r.shape[0], w3.shape[0], w5r.shape[0], w5.shape[0], wp.shape[0])
    return block_args, kernel_sizes, [w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp], requires_grad


def training_batchnorms(module: nn.Module) -> list:
    """Qualified names of the BatchNorms in training mode inside ``module`` (whatever its own flag says)."""
    return [name or "(the module itself)" for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
