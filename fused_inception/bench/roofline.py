"""Roofline floors for the benchmarks: FLOPs and minimum bytes per case, the device's measured ceilings.

A case's floor is the larger of two times: its FLOPs at the device's matrix rate and its minimum bytes at
the device's copy bandwidth. No implementation runs much faster than its floor, so every measured time is
also reported as ``floor / measured`` (the fraction of the roofline reached; 1.0 would be perfect).

FLOPs count multiply-adds as two and convolutions/linear layers only (pooling, bias, ReLU, LRN are not
counted): blocks from :meth:`InceptionConfig.flops`, the network's stem and classifier by the conv/linear
counter below. Minimum bytes count each tensor the op must read or write once, at its element size.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..configs import GOOGLENET_BLOCKS, InceptionConfig
from .timing import measure

#: A training step (forward + backward) as a multiple of the forward: FLOPs are forward + gradient w.r.t. the
#: inputs + gradient w.r.t. the weights (the usual 3x count); bytes likewise, because the forward reads x and
#: the weights and writes the output once, and the backward reads grad_out, x, the output (the ReLU masks)
#: and the weights and writes grad_x and the weight gradients: the same tensor sizes twice over.
TRAINING_MULTIPLE = 3

#: Input side of the whole-network cases: the configs' spatial sizes (28, 14, 7) hold at 224x224.
NETWORK_IMAGE_SIZE = 224


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def block_weight_count(config: InceptionConfig, kernel_sizes=(3, 5)) -> int:
    """Weights plus biases of one block (what the kernel reads)."""
    return config.weight_count(kernel_sizes)


def block_min_bytes(config: InceptionConfig, batch: int, dtype: torch.dtype) -> int:
    """Minimum bytes of one block's forward (InceptionConfig.min_bytes) at `dtype`'s element size."""
    return config.min_bytes(batch, element_size(dtype))


def _conv_linear_flops(model: nn.Module, x: torch.Tensor, skip: tuple) -> int:
    """2 * MACs of every Conv2d and Linear in `model` outside modules of the types in `skip`, counted with
    forward hooks on one forward: a Conv2d makes out.numel() * (Cin / groups) * kh * kw MACs, a Linear
    out.numel() * in_features. On the meta device this computes nothing."""
    skipped = {id(m) for block in model.modules() if isinstance(block, skip) for m in block.modules()}
    total = 0

    def count(module, args, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * out.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += 2 * out.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in skipped]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _meta_network(training: bool):
    from ..models import googlenet  # models import configs; keep this module importable on its own

    return googlenet(aux_logits=training, device="meta").train(training)


def network_flops(batch: int, training: bool = False) -> int:
    """FLOPs of one GoogLeNet forward at 224x224: the nine blocks exactly from the configs, plus the stem
    convolutions and the classifier (and, in training mode, the auxiliary classifiers) counted by
    `_conv_linear_flops` on a meta-device forward of the reference network. Times TRAINING_MULTIPLE in
    training mode."""
    from ..models import Inception

    blocks = sum(config.flops(batch) for config in GOOGLENET_BLOCKS)
    x = torch.empty(1, 3, NETWORK_IMAGE_SIZE, NETWORK_IMAGE_SIZE, device="meta")
    rest = batch * _conv_linear_flops(_meta_network(training), x, skip=(Inception,))
    return (blocks + rest) * (TRAINING_MULTIPLE if training else 1)


def network_min_bytes(batch: int, dtype: torch.dtype, num_classes: int = 1000, training: bool = False) -> int:
    """Minimum bytes of one GoogLeNet forward = (images + logits + every parameter once) * element size: the
    floor of a network whose activations all stay on chip. Times TRAINING_MULTIPLE in training mode."""
    params = sum(p.numel() for p in _meta_network(training).parameters())
    elements = batch * 3 * NETWORK_IMAGE_SIZE ** 2 + batch * num_classes + params
    return elements * element_size(dtype) * (TRAINING_MULTIPLE if training else 1)


@dataclass(frozen=True)
class Floor:
    seconds: float  # max(compute, memory)
    compute_seconds: float  # flops / matrix rate
    memory_seconds: float  # bytes / copy bandwidth

    @property
    def bound(self) -> str:
        return "compute" if self.compute_seconds >= self.memory_seconds else "memory"

    def fraction(self, measured_seconds: float) -> float:
        """floor / measured: the fraction of the roofline a measured time reaches."""
        return self.seconds / measured_seconds


def floor(flops: float, min_bytes: float, peak_flops_per_s: float, peak_bytes_per_s: float) -> Floor:
    compute, memory = flops / peak_flops_per_s, min_bytes / peak_bytes_per_s
    return Floor(max(compute, memory), compute, memory)


@dataclass
class Ceilings:
    """The device's two rates, measured in the same run as the benchmarks."""

    device: str
    matmul_flops_per_s: dict  # dtype label ("bf16", ...) -> FLOP/s of a large matmul in that dtype
    copy_bytes_per_s: float  # bytes read + bytes written per second of a large device-to-device copy
    matmul_size: int
    copy_bytes: int
    fp32_matmul_tf32: bool  # whether the fp32 ceiling was taken with TF32 (as cuDNN convolutions run)

    def peak_flops(self, dtype_label: str) -> float:
        if dtype_label not in self.matmul_flops_per_s:
            raise KeyError(f"no matmul ceiling measured for {dtype_label} (measured: "
                           f"{', '.join(self.matmul_flops_per_s)})")
        return self.matmul_flops_per_s[dtype_label]

    def as_dict(self) -> dict:
        return asdict(self)


def _gemm_rate(device, dtype, n, repeats) -> float:
    """FLOP/s of an n x n x n GEMM in `dtype`: the better of torch.mm (cuBLAS, MKL) and the same GEMM as a 1x1
    convolution (cuDNN, oneDNN). On CPUs the convolution library can be the faster one by 2x (fp32) to 50x
    (fp16); a ceiling the benchmarked convolutions beat would make fractions of the floor exceed 100%."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # The same GEMM as a 1x1 convolution: n output channels, n input channels, n pixels (32 x n/32), NHWC.
    x = torch.randn(1, n, 32, n // 32, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = b.view(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
    conv = measure(lambda i: torch.nn.functional.conv2d(x, w), device, warmup=2, repeats=repeats).minimum
    # A first torch.mm call far slower than the convolution cannot win: skip its repeats (CPU fp16 takes
    # seconds per call there).
    first = measure(lambda i: torch.mm(a, b), device, warmup=0, repeats=1).minimum
    mm = first if first > 4 * conv else measure(lambda i: torch.mm(a, b), device, warmup=1, repeats=repeats).minimum
    return 2 * n ** 3 / min(conv, mm)


def measure_ceilings(device, dtypes: dict, *, matmul_size: int | None = None, copy_bytes: int | None = None,
                     repeats: int | None = None) -> Ceilings:
    """Times a square GEMM per dtype (label -> torch dtype) and a large copy on `device`. A ceiling is the
    best the device did, so each rate comes from the fastest repeat (noise only ever slows a run down).

    Sizes default to what fills the device: 8192^3 GEMMs and a 1 GiB copy on CUDA (far past L2), 1024^3 and
    256 MiB on the CPU (past its last-level cache). Operands are random: zeros can run faster than real data.
    The fp32 GEMM uses TF32 exactly when cuDNN convolutions do (torch.backends.cudnn.allow_tf32, on by
    default), so fp32 cases are held to the rate their convolutions can reach.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = matmul_size or (8192 if cuda else 1024)
    nbytes = copy_bytes or ((1 << 30) if cuda else (256 << 20))
    repeats = repeats or 10  # the best of 10: on a shared CPU a few repeats can all meet other jobs
    tf32 = bool(cuda and torch.backends.cudnn.allow_tf32)
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        rates = {label: _gemm_rate(device, dtype, n, repeats) for label, dtype in dtypes.items()}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    src = torch.randn(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    seconds = measure(lambda i: dst.copy_(src), device, warmup=2, repeats=repeats).minimum
    copy_rate = 2 * src.numel() * src.element_size() / seconds  # read + write
    return Ceilings(str(device), rates, copy_rate, n, nbytes, tf32)
