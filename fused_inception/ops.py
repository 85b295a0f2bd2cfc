"""The Inception operators as Python functions, with their fake (meta) and autograd registrations.

The schemas and the CPU/CUDA/autocast kernels live in C++ (csrc/); this module adds what torch.compile and
autograd need: a fake implementation per op and the backward formula, itself the registered op
``fused_inception::inception_backward`` (a differentiable composition of PyTorch operators when the backward
itself is differentiated).
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._prims_common import suggest_memory_format
from torch.autograd import forward_ad

from . import _library  # noqa: F401  (registers the operators)
from .kernel.launch import WEIGHT_NAMES

__all__ = ["backend", "backend_name", "inception", "WEIGHT_NAMES"]


_forward_op = torch.ops.fused_inception.inception_forward.default
_backward_op = torch.ops.fused_inception.inception_backward.default


def inception(x: Tensor, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp) -> Tensor:
    """One Inception block: concat(relu(1x1), relu(kxk(relu(1x1))), relu(kxk(relu(1x1))), relu(1x1(maxpool3x3))).

    ``x`` is (N, Cin, H, W), NCHW or channels_last; the output (N, c1 + c3 + c5 + cp, H, W) has the input's
    memory format. Weights are convolution weights (out, in, k, k) with k = 1 for the 1x1s and 3 or 5 for
    ``w3`` / ``w5``; biases are 1-D. The kernels read the weights where they are, so every call computes with
    their current values.

    Differentiable in every argument: backward (and double backward), forward-mode AD (``torch.func.jvp``,
    ``torch.autograd.forward_ad``) and the ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``,
    ``jacfwd``). Inside a ``torch.func`` transform or a forward-AD level with dual inputs the block runs as
    the composition of PyTorch's own operators (which every transform supports), not as the fused op.
    """
    tensors = (x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)
    # The dispatcher routes a sparse or non-tensor argument before any kernel can name it; name it here.
    for name, t in zip(("x",) + WEIGHT_NAMES, tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"fused_inception.inception: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:
            raise ValueError(f"fused_inception.inception: {name} must be a dense (strided) tensor, got {t.layout}")
    if not torch.compiler.is_compiling():
        if _needs_composite(tensors):
            return composite_inception(*tensors)
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
            # No gradient can be asked of this call: the op's forward below the autograd keys, as torch.library's
            # autograd wrapper would run it, without that wrapper's Python (11 of the 37 us a call's host path
            # took on the CI CPU; at batch 1 the op is host-bound). Autocast, above autograd, still applies.
            with torch._C._AutoDispatchBelowAutograd():
                return _forward_op(*tensors)
    return _forward_op(*tensors)


def _needs_composite(tensors) -> bool:
    """Whether a torch.func transform or forward-mode AD is active for these inputs: the registered op's
    autograd formula covers reverse mode only (its tangents would silently be zero)."""
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    if forward_ad._current_level >= 0:  # inside forward_ad.dual_level()
        return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)
    return False


def composite_inception(x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp) -> Tensor:
    """The block as PyTorch operators (conv2d, relu, max_pool2d, cat): the same function as the op, for
    autograd modes the op does not implement itself (forward-mode AD, torch.func transforms, double
    backward). Arguments are checked as the op checks them."""
    weights = (w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)
    _check_fake_args(x, weights)

    def conv_relu(t, weight, bias):
        return F.relu(F.conv2d(t, weight, bias, padding=weight.shape[-1] // 2))

    out = torch.cat([conv_relu(x, w1, b1), conv_relu(conv_relu(x, w3r, b3r), w3, b3),
                     conv_relu(conv_relu(x, w5r, b5r), w5, b5),
                     conv_relu(F.max_pool2d(x, 3, stride=1, padding=1), wp, bp)], dim=1)
    return out.contiguous(memory_format=suggest_memory_format(x))


def backend(device_type: str) -> str:
    """What runs the forward for inputs on ``device_type`` ("cpu" or "cuda"): "fused" or "unfused"."""
    return torch.ops.fused_inception._get_backend(device_type)


def backend_name(device) -> str:
    """Which implementation of the op runs for inputs on ``device``, in words (for the demo and reports)."""
    device_type = torch.device(device).type
    if device_type not in ("cpu", "cuda"):
        return f"{device_type}: no implementation registered"
    if backend(device_type) == "unfused":
        return f"{device_type.upper()}: unfused ATen composition" + (" (cuDNN)" if device_type == "cuda" else "")
    if device_type == "cuda":
        return ("CUDA: fused one-launch kernel (float16, bfloat16, float32; unfused composition otherwise; "
                "routed per input size and layout, see fused_inception.route)")
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
def _inception_forward_fake(x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp):
    from .export import keep_fused_op_under_inductor

    keep_fused_op_under_inductor()
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
    ctx.save_for_backward(*inputs, output)


def _backward(ctx, grad_out):
    *inputs, out = ctx.saved_tensors
    if torch.is_grad_enabled():
        # A differentiable backward (create_graph=True: double backward, Hessians): the gradients as a graph
        # of PyTorch operators, through the composition's own autograd formulas.
        wanted = [t for t, needed in zip(inputs, ctx.needs_input_grad) if needed]
        grads = iter(torch.autograd.grad(composite_inception(*inputs), wanted, grad_out, create_graph=True,
                                         allow_unused=True))
        return tuple(next(grads) if needed else None for needed in ctx.needs_input_grad)
    return tuple(_backward_op(grad_out, inputs[0], out, *inputs[1:]))


torch.library.register_autograd("fused_inception::inception_forward", _backward, setup_context=_setup_context)
