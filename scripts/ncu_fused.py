"""Runs the fused kernel once per profiled case, for Nsight Compute (scripts/device_check.sh, step ncu).

    ncu --profile-from-start off ... python scripts/ncu_fused.py --labels FILE

Every case is warmed up first (weight packing, first-launch costs) outside the profiled range; then each
case's one timed forward runs between torch.cuda.profiler.start() and stop(), so ncu profiles exactly one
launch of the fused kernel per case, in the order of --labels (one label per line: ncu's CSV rows carry
no case names). On a CPU (--device cpu) it runs the same forwards with no profiler calls: the CI check of
this script's arguments and case order.
"""

import argparse
import sys

import torch

import fused_inception

BLOCKS = ("3a", "4e", "5b")
BATCHES = (1, 256)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="file that receives one case label per profiled launch")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--blocks", default=",".join(BLOCKS), help="comma-separated block names")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cases = [(name, int(batch)) for name in args.blocks.split(",") for batch in args.batches.split(",")]
    runs = []
    for name, batch in cases:
        config = fused_inception.BLOCKS_BY_NAME[name]
        torch.manual_seed(0)
        block = fused_inception.FusedInception(*config.block_args).to(device, torch.bfloat16).eval()
        x = torch.randn(batch, config.in_channels, config.spatial, config.spatial, device=device,
                        dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            block(x)  # warm-up: packing and first-launch work stay out of the profile
        runs.append((f"{name}-b{batch}-bf16-channels_last", block, x))
    profiling = device.type == "cuda"
    if profiling:
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
    with torch.no_grad():
        for _, block, x in runs:
            block(x)
    if profiling:
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    with open(args.labels, "w") as labels:
        labels.writelines(label + "\n" for label, _, _ in runs)
    print(f"profiled {len(runs)} launches: {', '.join(label for label, _, _ in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
