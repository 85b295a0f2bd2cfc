"""The fused Inception kernel for CuPy arrays: the same CUDA source, compiled at run time with NVRTC.

For users who hold activations in CuPy, or cannot build the C++ extension: this module needs CuPy and NumPy,
not torch nor a compiler toolchain (NVRTC comes with CuPy's CUDA runtime). Torch tensors on the GPU are
accepted too and exchanged without copies through DLPack.

    >>> import cupy, fused_inception.cupy as fic
    >>> block = fic.FusedInceptionCuPy(*weights)            # 12 arrays: w1, b1, w3r, b3r, ..., wp, bp
    >>> y = block(x)                                       # x: (N, Cin, H, W), NCHW or NHWC strides

Kernels are compiled on first use per device (CuPy also caches the binaries on disk). The kernel reads the
weights where they are, so a call always computes with their current values; weights in another dtype than
x are cast for that call.
"""

try:
    import cupy
except ImportError as error:  # the rest of fused_inception does not need CuPy
    raise ImportError("fused_inception.cupy needs CuPy: pip install 'fused_inception[cupy]' (cupy-cuda13x)") from error

import numpy as np

from .. import plan
from ..kernel import launch
from ..kernel import source as kernel_source
from ..kernel.launch import BlockShape, UnsupportedCase, block_shape

__all__ = ["BlockShape", "FusedInceptionCuPy", "UnsupportedCase", "compile_kernels", "inception_forward"]

_modules = {}  # device id -> cupy.RawModule with the four instantiations


def compile_kernels(device=None):
    """The compiled kernels of `device` (the current one by default), compiled with NVRTC on first use."""
    device_id = cupy.cuda.Device(device).id
    if device_id not in _modules:
        capability = divmod(int(cupy.cuda.Device(device_id).compute_capability), 10)
        if capability < launch.MIN_COMPUTE_CAPABILITY:
            raise RuntimeError(f"fused_inception.cupy: the fused kernel needs compute capability "
                               f"{'.'.join(map(str, launch.MIN_COMPUTE_CAPABILITY))} or later (bf16 mma, cp.async); "
                               f"device {device_id} is {capability[0]}.{capability[1]}. The torch op runs the "
                               "unfused composition there (fused_inception.backend_info)")
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


def _channels_last(a):
    """A 4-d array with channels_last (NHWC, OHWI) strides: a copy unless it has them."""
    nhwc = a.transpose(0, 2, 3, 1)
    return a if nhwc.flags.c_contiguous else cupy.ascontiguousarray(nhwc).transpose(0, 3, 1, 2)


def _weight_views(weights, dtype, windows_in_place=False):
    """Per convolution, (weight_ptr, bias_ptr, row_stride, taps_outer) for launch.build_params, and the
    arrays they point into: the weights themselves where the kernel can read them in place, else copies
    for this call (cast to `dtype`, rows padded: launch.padded_rows). `windows_in_place`: the k x k weights
    read through channels_last copies where the kernel then reads their windows in place (the op's rule:
    plan.window_weights_copied, plan.reads_windows_in_place)."""
    views, keep = [], []
    for index, (name, _) in enumerate(launch.CONVOLUTIONS):
        w, b = weights[2 * index].astype(dtype, copy=False), weights[2 * index + 1].astype(dtype, copy=False)
        if windows_in_place and name in ("w3", "w5") and plan.reads_windows_in_place(w.shape[1], w.itemsize):
            w = _channels_last(w)
        in_place = launch.in_place_rows(w.shape, [s // w.itemsize for s in w.strides], w.itemsize, w.data.ptr)
        if in_place is None:
            w = launch.padded_rows(cupy, w)
            in_place = (w.shape[1], False)
        if b.shape[0] != 1 and b.strides[0] != b.itemsize:
            b = cupy.ascontiguousarray(b)
        keep += [w, b]
        views.append((w.data.ptr, b.data.ptr, *in_place))
    return views, keep


def inception_forward(x, weights, *, allow_tf32=True, routing=True):
    """One Inception block in one launch. `x` is (N, Cin, H, W), a CuPy array or a CUDA torch tensor, with
    any strides (NCHW or NHWC); `weights` are the block's 12 parameters in schema order (w1, b1, w3r, b3r,
    w3, b3, w5r, b5r, w5, b5, wp, bp), of the same kind as x, read in place (cast to x's dtype for this call
    where they differ). The output has x's layout and type. float32 uses TF32 tensor cores unless
    `allow_tf32` is False (then exact FMA).

    `routing` (the op's routes, `fused_inception.route`): from 1568 pixels (batch x height x width) a dense
    NCHW x runs as a channels_last copy, its output copied back, and the 3x3 and 5x5 weights are read
    through channels_last copies, as the torch op does. The op's one other route, large TF32 inputs to
    cuDNN, has no counterpart here: the kernel runs them. False: the kernel on x and the weights as they
    are."""
    if _is_torch(x):
        import torch

        # torch's stream on x's device: CuPy's work stays ordered with torch's.
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream, x.device.index)
        with cupy.cuda.Device(x.device.index), stream:
            out = inception_forward(cupy.from_dlpack(x.detach()), [cupy.from_dlpack(w.detach()) for w in weights],
                                    allow_tf32=allow_tf32, routing=routing)
        return torch.from_dlpack(out)
    if not isinstance(x, cupy.ndarray):
        raise TypeError(f"x must be a cupy.ndarray or a CUDA torch.Tensor, got {type(x).__name__}")
    if not isinstance(routing, bool):
        raise TypeError(f"routing must be a bool, got {type(routing).__name__}")
    weights = list(weights)
    for name, w in zip(launch.WEIGHT_NAMES, weights):
        if not isinstance(w, cupy.ndarray) or w.device.id != x.device.id:
            raise ValueError(f"{name} must be a cupy.ndarray on x's device ({x.device.id}), got "
                             f"{type(w).__name__} on {getattr(getattr(w, 'device', None), 'id', None)}")
    shape = block_shape(weights)
    if x.ndim != 4 or x.shape[1] != shape.in_channels:
        raise ValueError(f"x must be (N, {shape.in_channels}, H, W), got shape {x.shape}")
    mode = _math_mode(x.dtype, allow_tf32)
    n, _, h, w = x.shape
    item = x.dtype.itemsize
    pixels = n * h * w
    dense_nchw = x.flags.c_contiguous and not x.transpose(0, 2, 3, 1).flags.c_contiguous
    to_channels_last = routing and plan.route(pixels, mode, dense_nchw, shape.in_channels * item,
                                              unfused=False) == "kernel_on_channels_last_copy"
    windows_in_place = routing and plan.window_weights_copied(pixels, mode)
    if to_channels_last:
        with x.device:
            return cupy.ascontiguousarray(_kernel(_channels_last(x), weights, shape, mode, windows_in_place))
    return _kernel(x, weights, shape, mode, windows_in_place)


def _kernel(x, weights, shape, mode, windows_in_place):
    """The kernel's launch on x as it is; the output in x's layout."""
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
        views, _alive = _weight_views(weights, x.dtype, windows_in_place)  # alive until queued (stream order)
        attributes = x.device.attributes
        params, grid, smem = launch.build_params(
            shape, x_ptr=x.data.ptr, out_ptr=out.data.ptr, weights=views, batch=n, height=h, width=w,
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
    """An Inception block for CuPy arrays: holds the 12 parameters (CuPy arrays, read in place), one launch
    per call."""

    def __init__(self, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp):
        self.weights = [cupy.asarray(w) for w in (w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp)]
        self.shape = block_shape(self.weights)

    @classmethod
    def from_torch(cls, module):
        """From fused_inception's Inception or FusedInception, or torchvision's Inception (BatchNorm folded,
        eval mode), through DLPack: no copy of CUDA weights."""
        from ..modules import FusedInception

        fused = module if isinstance(module, FusedInception) else FusedInception.from_module(module)
        return cls(*[cupy.from_dlpack(p.detach()) for p in fused.op_parameters()])

    def __call__(self, x, *, allow_tf32=True, routing=True):
        if _is_torch(x):
            import torch

            stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream, x.device.index)
            with cupy.cuda.Device(x.device.index), stream:
                out = inception_forward(cupy.from_dlpack(x.detach()), self.weights, allow_tf32=allow_tf32,
                                        routing=routing)
            return torch.from_dlpack(out)
        return inception_forward(x, self.weights, allow_tf32=allow_tf32, routing=routing)
