"""Choosing what runs the op: the fused kernel or the unfused composition, per device type."""

import contextlib

import torch

from . import _library  # noqa: F401

BACKENDS = ("fused", "unfused")


@contextlib.contextmanager
def _backend(device_type: str, name: str):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    previous = torch.ops.fused_inception._set_backend(device_type, name)
    try:
        yield
    finally:
        torch.ops.fused_inception._set_backend(device_type, previous)


def cpu_backend(name: str):
    """``with fused_inception.cpu_backend("fused"):`` runs the op's CPU forward as the fused CUDA kernel's own
    source under the SIMT emulator (slow: for tests); "unfused" (the default) is the ATen composition.
    ``"simt"`` is accepted as another name for "fused" here."""
    return _backend("cpu", "fused" if name == "simt" else name)


def cuda_backend(name: str):
    """``with fused_inception.cuda_backend("unfused"):`` runs the op's CUDA forward as the unfused ATen
    composition (cuDNN) instead of the fused kernel (the default), e.g. to compare the two."""
    return _backend("cuda", name)


@contextlib.contextmanager
def routing(enabled: bool):
    """Where the fused backend sends each call. On (the default), it follows the GPU's measurements: a dense
    NCHW input (16-bit or TF32, from batch 32 on 7x7 images up) runs the kernel on a channels_last copy and
    the output is copied back to NCHW; TF32 from batch 256 on 7x7 images up runs the unfused composition
    (cuDNN), which measured faster there. From batch 32 on 7x7 images up, the kernel also reads OIHW k x k
    weights through channels_last copies made for the call (it reads those windows in place).
    ``with fused_inception.routing(False):`` runs the fused kernel on
    every input it covers as the input is (for tests and for timing the kernel itself). Per thread.
    ``fused_inception.route(x)`` says where a call on ``x`` goes."""
    if not isinstance(enabled, bool):
        raise TypeError(f"routing: enabled must be a bool, got {type(enabled).__name__}")
    previous = torch.ops.fused_inception._set_routing(enabled)
    try:
        yield
    finally:
        torch.ops.fused_inception._set_routing(previous)


def route(x: torch.Tensor) -> str:
    """Where the op's forward sends a call on ``x`` now (backend, dtype, layout, size and routing): "kernel",
    "kernel_on_channels_last_copy" or "unfused". The kernel's own plan can still refuse a "kernel" case
    (shared memory) and run the unfused composition."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"route: x must be a tensor, got {type(x).__name__}")
    return torch.ops.fused_inception._route(x)
