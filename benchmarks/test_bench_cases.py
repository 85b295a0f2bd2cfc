"""pytest-benchmark: each GoogLeNet block, fused (FusedInception) vs unfused eager PyTorch, same process.

    pytest benchmarks --benchmark-json=results.json

On CUDA the timed function synchronizes, so wall-clock medians include the kernels; bf16 channels_last.
On CPU: float32 channels_last at small batch.
"""

import pytest
import torch
from conftest import DEVICE

import fused_inception
from fused_inception.models import Inception

DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32
BATCH_SIZES = [1, 32, 256] if DEVICE == "cuda" else [1, 8]
ROTATION = 3  # input sets cycled through so the L2 cache does not flatter


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("impl", ["fused", "unfused"])
@pytest.mark.parametrize("config", fused_inception.GOOGLENET_BLOCKS, ids=lambda c: c.name)
def test_block_forward(benchmark, config, impl, batch):
    torch.manual_seed(0)
    unfused = Inception(*config.block_args).to(device=DEVICE, dtype=DTYPE).eval()
    module = fused_inception.FusedInception.from_module(unfused) if impl == "fused" else unfused
    inputs = [torch.randn(batch, config.in_channels, config.spatial, config.spatial, device=DEVICE, dtype=DTYPE)
              .contiguous(memory_format=torch.channels_last) for _ in range(ROTATION)]
    benchmark.group = f"{config.name} batch {batch}"
    benchmark.extra_info.update(block=config.name, impl=impl, batch=batch, dtype=str(DTYPE), device=DEVICE,
                                gflop=config.flops(batch) / 1e9)
    state = {"call": 0}

    def run():
        with torch.no_grad():
            module(inputs[state["call"] % ROTATION])
        state["call"] += 1
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(run, warmup_rounds=3, rounds=30 if DEVICE == "cuda" else 5, iterations=1)
