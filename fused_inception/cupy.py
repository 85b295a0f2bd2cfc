"""The fused Inception kernel for CuPy arrays: the same CUDA source, compiled at run time with NVRTC.

For users who hold activations in CuPy, or cannot build the C++ extension: this module needs CuPy and NumPy,
not torch nor a compiler toolchain (NVRTC comes with CuPy's CUDA runtime). Torch tensors on the GPU are
accepted too and exchanged without copies through DLPack.

    >>> import cupy, fused_inception.cupy as fic
    >>> block = fic.FusedInceptionCuPy(*weights)            # 12 arrays: w1, b1, w3r, b3r, ..., wp, bp
    >>> y = block(x)                                       # x: (N, Cin, H, W), NCHW or NHWC strides

Kernels are compiled on first use per device (CuPy also caches the binaries on disk) and weights are packed
once per dtype.
"""

try:
    import cupy
except ImportError as error:  # the rest of fused_inception does not need CuPy
    raise ImportError("fused_inception.cupy needs CuPy: pip install 'fused_inception[cupy]' (cupy-cuda13x)") from error

import numpy as np

from . import kernel_source
from . import launch
from .launch import BlockShape, UnsupportedCase, block_shape
from .launch import pack_weights as _pack_weights

__all__ = ["BlockShape", "FusedInceptionCuPy", "UnsupportedCase", "compile_kernels", "inception_forward",
           "pack_weights"]

_modules = {}  # device id -> cupy.RawModule with the four instantiations


def compile_kernels(device=None):
    """The compiled kernels of `device` (the current one by default), compiled with NVRTC on first use."""
    device_id = cupy.cuda.Device(device).id
    if device_id not in _modules:
        with cupy.cuda.Device(device_id):
            module = cupy.RawModule(code=kernel_source.SOURCE, options=tuple(kernel_source.nvrtc_options(arch=None)),
                                    name_expressions=list(kernel_source.KERNEL_NAMES.values()), backend="nvrtc")
            module.compile()
        _modules[device_id] = module
    return _modules[device_id]


def _math_mode(dtype, allow_tf32):
    if dtype == np.float16:
        return "f16"
    if dtype.name == "bfloat16":  # ml_dtypes.bfloat16, which CuPy understands
        return "bf16"
    if dtype == np.float32:
        return "tf32" if allow_tf32 else "f32"
    raise TypeError(f"x must be float16, bfloat16 or float32, got {dtype}")


def _is_torch(t):
    return type(t).__module__.split(".")[0] == "torch"


def pack_weights(w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp):
    """Packs a block's 12 weights (CuPy arrays, schema order) for the kernel; returns (packed, BlockShape)."""
    weights = [cupy.asarray(w) for w in (w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)]
    return _pack_weights(cupy, weights)


def inception_forward(x, packed, shape: BlockShape, *, allow_tf32=True):
    """One Inception block in one launch. `x` is (N, Cin, H, W), a CuPy array or a CUDA torch tensor, with
    any strides (NCHW or NHWC); `packed` comes from :func:`pack_weights` in x's dtype. The output has x's
    layout and type. float32 uses TF32 tensor cores unless `allow_tf32` is False (then exact FMA)."""
    if _is_torch(x):
        import torch

        # torch's stream on x's device: CuPy's work stays ordered with torch's.
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream, x.device.index)
        with cupy.cuda.Device(x.device.index), stream:
            out = inception_forward(cupy.from_dlpack(x.detach()), cupy.from_dlpack(packed), shape,
                                    allow_tf32=allow_tf32)
        return torch.from_dlpack(out)
    if not isinstance(x, cupy.ndarray):
        raise TypeError(f"x must be a cupy.ndarray or a CUDA torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != shape.in_channels:
        raise ValueError(f"x must be (N, {shape.in_channels}, H, W), got shape {x.shape}")
    mode = _math_mode(x.dtype, allow_tf32)
    layout = launch.packed_layout(shape)
    if not isinstance(packed, cupy.ndarray) or packed.dtype != x.dtype or packed.shape != (layout["total"],):
        raise ValueError(f"packed must be a 1-D cupy array of {layout['total']} {x.dtype} elements from "
                         f"pack_weights, got {type(packed).__name__} {getattr(packed, 'dtype', None)} "
                         f"{getattr(packed, 'shape', None)}")
    if packed.device.id != x.device.id or not packed.flags.c_contiguous:
        raise ValueError("packed must be contiguous and on x's device")
    n, _, h, w = x.shape
    item = x.dtype.itemsize
    channels_last = x.strides[1] == item and not x.flags.c_contiguous
    with x.device:
        if channels_last:
            out = cupy.empty((n, h, w, shape.out_channels), dtype=x.dtype).transpose(0, 3, 1, 2)
        else:
            out = cupy.empty((n, shape.out_channels, h, w), dtype=x.dtype)
        if out.size == 0:
            return out
        attributes = x.device.attributes
        params, grid, smem = launch.build_params(
            shape, x_ptr=x.data.ptr, out_ptr=out.data.ptr, packed_ptr=packed.data.ptr, batch=n, height=h, width=w,
            x_strides=[s // item for s in x.strides], out_strides=[s // item for s in out.strides],
            element_bytes=item, sm_count=attributes["MultiProcessorCount"],
            shared_memory_limit=attributes["MaxSharedMemoryPerBlockOptin"])
        kernel = compile_kernels().get_function(kernel_source.KERNEL_NAMES[mode])
        _allow_shared_memory(kernel, mode, x.device.id, smem)
        # A size-1 array goes by value, byte for byte (a numpy.void scalar is not a kernel argument).
        kernel(grid, (launch.THREADS,), (params.reshape(1),), shared_mem=smem)
    return out


_shared_allowed = {}  # (mode, device id) -> dynamic shared memory allowed


def _allow_shared_memory(kernel, mode, device_id, smem):
    """Raises the kernel's dynamic shared-memory limit past 48 KB as needed; never lowers it."""
    key = (mode, device_id)
    if smem > 48 * 1024 and smem > _shared_allowed.get(key, 0):
        kernel.max_dynamic_shared_size_bytes = smem
        _shared_allowed[key] = smem


class FusedInceptionCuPy:
    """An Inception block for CuPy arrays: weights packed once per dtype, one launch per call."""

    def __init__(self, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp):
        self._weights = [cupy.asarray(w) for w in (w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)]
        self.shape = block_shape(self._weights)
        self._packed = {}  # dtype -> packed weights

    @classmethod
    def from_torch(cls, module):
        """From fused_inception's Inception or FusedInception, or torchvision's Inception (BatchNorm folded,
        eval mode), through DLPack: no copy of CUDA weights."""
        from .modules import FusedInception

        fused = module if isinstance(module, FusedInception) else FusedInception.from_module(module)
        return cls(*[cupy.from_dlpack(p.detach()) for p in fused.op_parameters()])

    def packed(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._packed:
            self._packed[dtype], _ = _pack_weights(cupy, [w.astype(dtype) for w in self._weights])
        return self._packed[dtype]

    def __call__(self, x, *, allow_tf32=True):
        if _is_torch(x):
            import torch

            dtype = np.dtype(str(x.dtype).replace("torch.", "")) if x.dtype != torch.bfloat16 else _bfloat16()
            return inception_forward(x, torch.from_dlpack(self.packed(dtype)), self.shape, allow_tf32=allow_tf32)
        return inception_forward(x, self.packed(x.dtype), self.shape, allow_tf32=allow_tf32)


def _bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)

