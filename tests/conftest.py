import contextlib
import os

import pytest
import torch
from hypothesis import settings

import fused_inception
from fused_inception.models import Inception
from fused_inception.testing import poison_outputs, racecheck, simt_launch_count

# Hypothesis: reproducible in CI (the same examples every run: a failure there is one anyone can rerun),
# random locally (new examples every run find what the fixed ones miss).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("local", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")

CUDA_SKIP_REASON = "no CUDA device on this machine (the same cases run on CPU)"
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason=CUDA_SKIP_REASON)]),
]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
KERNEL_SIZE_PAIRS = [(3, 5), (3, 3)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=["aten", "kernel"])
def backend(request, device):
    """What the op runs, in the test id: "aten" (the unfused composition of ATen ops) or "kernel" (the fused
    kernel: real on CUDA; on CPU its source under the SIMT emulator, every launch under the racecheck).
    float32 runs in exact FP32 on both (_exact_float32; test_fused_kernel.py covers TF32)."""
    if request.param == "aten":
        switch = fused_inception.cpu_backend if device == "cpu" else fused_inception.cuda_backend
        with switch("unfused"):
            yield request.param
    elif device == "cpu":
        with fused_inception.cpu_backend("fused"), racecheck():
            yield request.param
    else:
        with fused_inception.cuda_backend("fused"):
            yield request.param


def kernel_launches(backend, device):
    """A context whose value, on exit, says how many emulated launches ran inside it (CPU kernel backend)."""
    return LaunchCounter(backend == "kernel" and device == "cpu")


class LaunchCounter:
    def __init__(self, counting):
        self.counting, self.count = counting, 0

    def __enter__(self):
        self.before = simt_launch_count()
        return self

    def __exit__(self, *exc):
        self.count = simt_launch_count() - self.before


@pytest.fixture(autouse=True)
def _poison_op_outputs():
    """Every op output starts as NaN, so an element the op forgets to write fails the comparison."""
    with poison_outputs():
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@contextlib.contextmanager
def allow_tf32(enabled):
    """Whether float32 convolutions (cuDNN's and the fused kernel's) may use TF32, inside the block."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous


@pytest.fixture(autouse=True)
def _exact_float32():
    """float32 convolutions in exact FP32 unless a test asks for TF32 (test_fused_kernel's tf32 mode, with the
    unfused TF32 baseline): with TF32 allowed the fused kernel always uses it while cuDNN picks TF32 or not
    per shape, and the rule would compare a TF32 result against an exact baseline (the first GPU run)."""
    with allow_tf32(False):
        yield


def make_block(block_args, kernel_sizes=(3, 5), device="cpu", dtype=torch.float32, seed=0):
    """A reference Inception block with fresh random weights and biases (conv-style init)."""
    torch.manual_seed(seed)
    return Inception(*block_args, kernel_sizes=kernel_sizes).to(device=device, dtype=dtype)


def make_input(batch, channels, height, width, device="cpu", dtype=torch.float32, memory_format=None, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64)
    x = x.to(device=device, dtype=dtype)
    return x.contiguous(memory_format=memory_format) if memory_format is not None else x


def randomize_batchnorm(module, seed=0):
    """Random BatchNorm statistics and affine parameters, so folding them into the convolutions shows."""
    generator = torch.Generator().manual_seed(seed)
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)


def op_params(block):
    return [p.detach() for p in block.op_parameters()]


assert fused_inception.GOOGLENET_BLOCKS  # the suite parametrizes over them


def pytest_collection_modifyitems(config, items):
    """Every test that skips for want of a CUDA device carries the `cuda` mark: the device check runs
    `-m cuda` on the GPU (the CPU cases already ran in CI), so an unmarked GPU test would never run anywhere."""
    unmarked = [item.nodeid for item in items
                if item.get_closest_marker("cuda") is None
                and any(str(mark.kwargs.get("reason", "")).startswith(("no CUDA device", "needs a CUDA device"))
                        for mark in item.iter_markers("skipif"))]
    if unmarked:
        raise pytest.UsageError("tests that need a CUDA device but lack @pytest.mark.cuda: " + ", ".join(unmarked))
