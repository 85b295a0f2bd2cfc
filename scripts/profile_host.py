"""Where the fused op's time per call goes at small batch: host (Python wrapper, dispatcher, C++ checks and
plan) against the kernel.

The H200 run (benchmarks/results/2026-11-28-h200) timed the op at batch 1 at about twice its kernel: 3a took
121 us a call and 56 us in the kernel. This prints, for one block and batch, the median wall time per call of
each layer a call passes through, each measured alone with the GPU synchronised after it, and then
torch.profiler's table of the op's host-side functions (self CPU time). A GPU session with spare minutes runs:

    python scripts/profile_host.py                      # 3a, batch 1, bf16 channels_last, CUDA
    python scripts/profile_host.py --device cpu         # the same layers on a CPU (the CI check of the script)
"""

import argparse
import statistics
import sys
import time

import torch

import fused_inception
from fused_inception import ops


def median_us(call, device, repeats):
    """Median wall time of `call` in microseconds, the device synchronised around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(10):
        call()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--block", default="3a")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("profile_host: no CUDA device here (use --device cpu)", file=sys.stderr)
        return 2
    if args.block not in fused_inception.BLOCKS_BY_NAME:
        print(f"profile_host: --block must be one of {', '.join(fused_inception.BLOCKS_BY_NAME)}", file=sys.stderr)
        return 2
    config = fused_inception.BLOCKS_BY_NAME[args.block]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    block = fused_inception.FusedInception(*config.block_args).to(device, dtype).eval()
    x = torch.randn(args.batch, config.in_channels, config.spatial, config.spatial, device=device,
                    dtype=dtype).contiguous(memory_format=torch.channels_last)
    weights = [p.detach() for p in block.op_parameters()]
    layers = [
        ("FusedInception(x)", lambda: block(x)),
        ("fused_inception.inception (Python wrapper)", lambda: ops.inception(x, *weights)),
        ("torch.ops...inception_forward (dispatcher on)", lambda: ops._forward_op(x, *weights)),
    ]
    print(f"{args.block}, batch {args.batch}, {dtype}, channels_last, {device} "
          f"({ops.backend_name(device)}); median of {args.repeats} calls, synchronised")
    for mode_name, mode in (("no_grad", torch.no_grad), ("inference_mode", torch.inference_mode)):
        with mode():
            for name, call in layers:
                print(f"  {mode_name:15s} {name:48s} {median_us(call, device, args.repeats):9.1f} us")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.no_grad(), torch.profiler.profile(activities=activities) as profile:
        for _ in range(50):
            block(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
