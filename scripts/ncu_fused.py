"""Runs the fused kernel once per profiled case, for Nsight Compute (scripts/device_check.sh, step ncu).

    ncu --profile-from-start off ... python scripts/ncu_fused.py --labels FILE

Every case is warmed up first (weight packing, first-launch costs) outside the profiled range; then each
case's one timed forward runs between torch.cuda.profiler.start() and stop(), so ncu profiles exactly one
launch of the fused kernel per case, in the order of --labels (one label per line: ncu's CSV rows carry
no case names). On a CPU (--device cpu) it runs the same forwards with no profiler calls: the CI check of
this script's arguments and case order.

A case's layout is the input's and the block's: a channels_last case converts the block too (its k x k
weights OHWI, read in place), as the benchmarks do and as users are told to. Before 2026-12-07 the block
stayed as built, its k x k weights OIHW, so the kernel staged their windows: the first two GPU runs'
profiles are of that kernel (`scripts/calibrate_plan.py --unconverted`).
"""

import argparse
import sys

import torch

import fused_inception

BLOCKS = tuple(config.name for config in fused_inception.GOOGLENET_BLOCKS)  # all nine: about 9 s under ncu
BATCHES = (1, 256)
# Math mode -> (tensor dtype, cuDNN's TF32 flag, which the op reads for float32 tensors).
DTYPES = {"bf16": (torch.bfloat16, False), "f16": (torch.float16, False), "tf32": (torch.float32, True),
          "f32": (torch.float32, False)}
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="file that receives one case label per profiled launch")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--blocks", default=",".join(BLOCKS), help="comma-separated block names")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    parser.add_argument("--dtypes", default="bf16", help=f"comma-separated math modes: {', '.join(DTYPES)}")
    parser.add_argument("--layouts", default="channels_last", help=f"comma-separated: {', '.join(LAYOUTS)}")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    for option, values, known in (("--dtypes", args.dtypes, DTYPES), ("--layouts", args.layouts, LAYOUTS)):
        unknown = [v for v in values.split(",") if v not in known]
        if unknown:
            parser.error(f"{option}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    cases = [(name, int(batch), dtype, layout) for dtype in args.dtypes.split(",")
             for layout in args.layouts.split(",") for name in args.blocks.split(",")
             for batch in args.batches.split(",")]
    runs = []
    for name, batch, dtype, layout in cases:
        config = fused_inception.BLOCKS_BY_NAME[name]
        tensor_dtype, allow_tf32 = DTYPES[dtype]
        torch.manual_seed(0)
        block = fused_inception.FusedInception(*config.block_args).to(
            device, tensor_dtype, memory_format=LAYOUTS[layout]).eval()
        x = torch.randn(batch, config.in_channels, config.spatial, config.spatial, device=device,
                        dtype=tensor_dtype).contiguous(memory_format=LAYOUTS[layout])
        torch.backends.cudnn.allow_tf32 = allow_tf32
        with torch.no_grad(), fused_inception.routing(False):
            block(x)  # warm-up: first-launch work stays out of the profile
        runs.append((f"{name}-b{batch}-{dtype}-{layout}", block, x, allow_tf32))
    profiling = device.type == "cuda"
    if profiling:
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
    # Routing off: every case launches the kernel itself (routed, an NCHW case would profile the kernel on a
    # copy, and a large TF32 case no kernel at all: the labels would not match the launches).
    with torch.no_grad(), fused_inception.routing(False):
        for _, block, x, allow_tf32 in runs:
            torch.backends.cudnn.allow_tf32 = allow_tf32
            block(x)
    if profiling:
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    with open(args.labels, "w") as labels:
        labels.writelines(label + "\n" for label, _, _, _ in runs)
    print(f"profiled {len(runs)} launches: {', '.join(label for label, _, _, _ in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
