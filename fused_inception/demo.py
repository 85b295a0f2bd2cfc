"""`python -m fused_inception demo`: checks FusedInception against unfused PyTorch and times both."""

import argparse
import sys

import torch

from . import ops
from ._library import build_info
from .configs import GOOGLENET_BLOCKS
from .models import Inception
from .modules import FusedInception
from .testing import check_numerics, float64_copy, max_abs_error
from .timing import measure


def describe_environment(device: torch.device) -> str:
    info = build_info()
    cuda_build = f"yes (arch {info['cuda_arch_list']})" if info["with_cuda"] else "no"
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    elif not torch.cuda.is_available():
        where += " (no CUDA device found)"
    return (f"fused_inception: torch {torch.__version__}, extension built with CUDA: {cuda_build}\n"
            f"device: {where}; backend: {ops.backend_name(device)}")


def block_rows(device, dtype, batch_sizes, repeats):
    """Yields one result row per (block, batch): numerics against float64 and fused/unfused timings."""
    for config in GOOGLENET_BLOCKS:
        torch.manual_seed(0)
        unfused = Inception(*config.block_args).to(device=device, dtype=dtype).eval()
        fused = FusedInception.from_module(unfused)
        for batch in batch_sizes:
            inputs = [torch.randn(batch, config.in_channels, config.spatial, config.spatial, device=device,
                                  dtype=dtype).contiguous(memory_format=torch.channels_last) for _ in range(3)]
            with torch.no_grad():
                result, expected = fused(inputs[0]), unfused(inputs[0])
                check = check_numerics(result, expected, float64_copy(unfused)(inputs[0].double()))
                fused_time = measure(lambda i: fused(inputs[i % 3]), device, repeats=repeats).median
                unfused_time = measure(lambda i: unfused(inputs[i % 3]), device, repeats=repeats).median
            scale = expected.abs().max().item() or 1.0
            yield dict(block=config.name, batch=batch, max_abs=max_abs_error(result, expected),
                       max_rel=max_abs_error(result, expected) / scale, check=check, fused_ms=fused_time * 1e3,
                       unfused_ms=unfused_time * 1e3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_inception demo", description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="batch sizes to time (default: 1 8 on CPU, 1 32 256 on CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (median reported)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    batch_sizes = args.batch_sizes or ([1, 32, 256] if device.type == "cuda" else [1, 8])
    repeats = args.repeats or (50 if device.type == "cuda" else 5)
    print(describe_environment(device), flush=True)
    print("\nGoogLeNet Inception blocks, float32 channels_last, fused vs unfused PyTorch "
          "(error against unfused; numerics rule against float64)", flush=True)
    header = f"{'block':>5} {'batch':>5} {'max abs err':>12} {'max rel err':>12} {'rule':>5} " \
             f"{'fused ms':>9} {'unfused ms':>10} {'speedup':>8}"
    print(header + "\n" + "-" * len(header), flush=True)
    failures = 0
    for row in block_rows(device, torch.float32, batch_sizes, repeats):
        failures += not row["check"].passed
        print(f"{row['block']:>5} {row['batch']:>5} {row['max_abs']:>12.3g} {row['max_rel']:>12.3g} "
              f"{'ok' if row['check'].passed else 'FAIL':>5} {row['fused_ms']:>9.3f} {row['unfused_ms']:>10.3f} "
              f"{row['unfused_ms'] / row['fused_ms']:>7.2f}x", flush=True)
    print(f"\n{'all checks passed' if not failures else f'{failures} check(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
