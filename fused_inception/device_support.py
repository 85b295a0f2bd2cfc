"""What runs the op on a device, and why: the fused kernel where it has an image and its instructions exist
(CUDA compute capability 8.0 or later), the unfused composition elsewhere.

The decision itself is made in C++ (csrc/device_support.cpp), where the op's CUDA forward makes it before
any launch; this module asks the same function, so what it reports is what the op does.
"""

from dataclasses import dataclass

import torch

from ._library import build_info

__all__ = ["BackendInfo", "backend_info", "fused_kernel_decision"]

BACKENDS = ("fused", "unfused")


@dataclass(frozen=True)
class BackendInfo:
    device: str
    backend: str  # "fused", "unfused", or "none" (no implementation for the device type)
    reason: str

    def __str__(self):
        return f"{self.device}: {self.backend} ({self.reason})"


def fused_kernel_decision(capability, arch_list: str, setting: str = "fused"):
    """("fused" or "unfused", why) for a CUDA device of compute ``capability`` (major, minor), an extension
    compiled for ``arch_list`` (TORCH_CUDA_ARCH_LIST syntax, as ``build_info()["cuda_arch_list"]``) and the
    :func:`fused_inception.cuda_backend` ``setting``. A pure function of its arguments: the op's CUDA forward
    decides the same way, once per device."""
    if setting not in BACKENDS:
        raise ValueError(f"fused_kernel_decision: setting must be one of {BACKENDS}, got {setting!r}")
    major, minor = (int(v) for v in capability)
    if setting == "unfused":
        return "unfused", "chosen with fused_inception.cuda_backend('unfused')"
    runs, why = torch.ops.fused_inception._fused_kernel_support(major, minor, arch_list)
    return ("fused" if runs else "unfused"), why


def backend_info(device=None) -> BackendInfo:
    """What runs ``fused_inception.inception`` (and FusedInception) on ``device``, and why. ``device``
    defaults to the current CUDA device when there is one, else the CPU.

    On CUDA the fused kernel runs where it has an image (SASS for the device's architecture family or PTX
    the driver compiles) and compute capability is 8.0 or later; elsewhere the op runs the unfused composition
    (cuDNN) and warns once. Even where the kernel runs, float64 inputs and blocks too large for the
    device's shared memory take the composition.
    """
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"backend_info: device must name a torch device, got {device!r}") from error
    name = str(device)
    if device.type == "cpu":
        if torch.ops.fused_inception._get_backend("cpu") == "fused":
            return BackendInfo(name, "fused", "the fused kernel's source under the SIMT emulator, chosen with "
                               "fused_inception.cpu_backend('fused') (a test backend: slow)")
        return BackendInfo(name, "unfused", "the ATen composition, the CPU default "
                           "(fused_inception.cpu_backend('fused') runs the kernel emulated)")
    if device.type != "cuda":
        return BackendInfo(name, "none", f"the op has no implementation for {device.type} tensors")
    info = build_info()
    if not info["with_cuda"]:
        return BackendInfo(name, "none", "the extension was built without CUDA: the op has no CUDA implementation")
    if not torch.cuda.is_available():
        raise ValueError(f"backend_info: device {name}: no CUDA device is available here")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    capability = torch.cuda.get_device_capability(device)
    backend, why = fused_kernel_decision(capability, info["cuda_arch_list"],
                                         torch.ops.fused_inception._get_backend("cuda"))
    return BackendInfo(f"{device} ({torch.cuda.get_device_name(device)})", backend, why)
