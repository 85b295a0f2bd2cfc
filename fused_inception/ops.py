"""The Inception operators as Python functions, with their fake (meta) and autograd registrations.

The schemas and the CPU/CUDA/autocast kernels live in C++ (csrc/); this module adds what torch.compile and
autograd need: a fake implementation per op and the backward formula, itself the registered op
``fused_inception::inception_backward``.
"""

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from . import _library  # noqa: F401  (registers the operators)
from .launch import WEIGHT_NAMES

__all__ = ["backend", "backend_name", "inception", "pack_weights", "reads_packed_weights", "WEIGHT_NAMES"]


_forward_op = torch.ops.fused_inception.inception_forward.default
_backward_op = torch.ops.fused_inception.inception_backward.default
_pack_op = torch.ops.fused_inception.pack_weights.default


def inception(x: Tensor, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp, packed: Tensor | None = None) -> Tensor:
    """One Inception block: concat(relu(1x1), relu(kxk(relu(1x1))), relu(kxk(relu(1x1))), relu(1x1(maxpool3x3))).

    ``x`` is (N, Cin, H, W), NCHW or channels_last; the output (N, c1 + c3 + c5 + cp, H, W) has the input's
    memory format. Weights are convolution weights (out, in, k, k) with k = 1 for the 1x1s and 3 or 5 for
    ``w3`` / ``w5``; biases are 1-D. ``packed``, from :func:`pack_weights` on the same weights, saves the
    per-call packing; it is derived data and receives no gradient.
    """
    tensors = (x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)
    # The dispatcher routes a sparse or non-tensor argument before any kernel can name it; name it here.
    for name, t in zip(("x",) + WEIGHT_NAMES, tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"fused_inception.inception: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:
            raise ValueError(f"fused_inception.inception: {name} must be a dense (strided) tensor, got {t.layout}")
    return _forward_op(*tensors, packed)


def pack_weights(w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp) -> Tensor:
    """Packs a block's weights into the flat layout the kernels read (csrc/inception_shape.h)."""
    return _pack_op(w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)


def backend(device_type: str) -> str:
    """What runs the forward for inputs on ``device_type`` ("cpu" or "cuda"): "fused" or "unfused"."""
    return torch.ops.fused_inception._get_backend(device_type)


def reads_packed_weights(device) -> bool:
    """Whether the forward on ``device`` reads ``packed`` (FusedInception then keeps a pack per weight version)."""
    device_type = torch.device(device).type
    return device_type in ("cpu", "cuda") and backend(device_type) == "fused"


def backend_name(device) -> str:
    """Which implementation of the op runs for inputs on ``device``, in words (for the demo and reports)."""
    device_type = torch.device(device).type
    if device_type not in ("cpu", "cuda"):
        return f"{device_type}: no implementation registered"
    if backend(device_type) == "unfused":
        return f"{device_type.upper()}: unfused ATen composition" + (" (cuDNN)" if device_type == "cuda" else "")
    if device_type == "cuda":
        return "CUDA: fused one-launch kernel (float16, bfloat16, float32; unfused composition otherwise)"
    return "CPU: the fused CUDA kernel's source under the SIMT emulator (a test backend: slow)"


def _output_channels(w1, w3, w5, wp):
    return w1.shape[0] + w3.shape[0] + w5.shape[0] + wp.shape[0]


def _check_fake_args(x, weights):
    # The C++ kernels check everything with full messages; these are the checks that decide the output's
    # shape under torch.compile, and that catch a meta tensor mixed with real ones (which dispatches here).
    torch._check(x.dim() == 4, lambda: f"fused_inception: x must be a 4-D (N, C, H, W) tensor, got {x.dim()}-D")
    for name, t in zip(WEIGHT_NAMES, weights):
        torch._check(t.device == x.device,
                     lambda: f"fused_inception: {name} is on {t.device} but x is on {x.device}; "
                     "all tensors must be on one device")
        torch._check(t.dtype == x.dtype,
                     lambda: f"fused_inception: {name} has dtype {t.dtype} but x has dtype {x.dtype}")
    w1, _, w3r, _, w3, _, w5r, _, w5, _, wp, _ = weights
    for name, w, in_channels in (("w1", w1, x.shape[1]), ("w3r", w3r, x.shape[1]), ("w5r", w5r, x.shape[1]),
                                 ("wp", wp, x.shape[1]), ("w3", w3, w3r.shape[0]), ("w5", w5, w5r.shape[0])):
        torch._check(w.dim() == 4, lambda: f"fused_inception: {name} must be a 4-D convolution weight")
        torch._check(w.shape[1] == in_channels,
                     lambda: f"fused_inception: {name} must have {in_channels} input channels, got {w.shape[1]}")


@torch.library.register_fake("fused_inception::inception_forward")
def _inception_forward_fake(x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp, packed=None):
    _check_fake_args(x, (w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp))
    n, _, h, w = x.shape
    return torch.empty((n, _output_channels(w1, w3, w5, wp), h, w), dtype=x.dtype, device=x.device,
                       memory_format=suggest_memory_format(x))


@torch.library.register_fake("fused_inception::inception_backward")
def _inception_backward_fake(grad_out, x, out, *weights):
    _check_fake_args(x, weights)
    # Same strides as the kernels: grad_x in x's memory format, parameter gradients contiguous.
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=suggest_memory_format(x))
    return [grad_x] + [torch.empty(p.shape, dtype=p.dtype, device=p.device) for p in weights]


def _setup_context(ctx, inputs, output):
    x, *weights, _packed = inputs
    ctx.save_for_backward(x, output, *weights)


def _backward(ctx, grad_out):
    x, out, *weights = ctx.saved_tensors
    grads = _backward_op(grad_out, x, out, *weights)
    return (*grads, None)


torch.library.register_autograd("fused_inception::inception_forward", _backward, setup_context=_setup_context)
