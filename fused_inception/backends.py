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
