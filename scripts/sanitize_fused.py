"""Runs the fused kernel (and the emulator's test GEMM) once per math mode and layout on the GPU, with no
other library kernels than tensor creation: the program scripts/device_check.sh runs under compute-sanitizer
(memcheck, racecheck), where cuDNN's kernels would only cost time. Exits non-zero if an output is wrong."""

import argparse
import sys

import torch

import fused_inception
from fused_inception.testing import poison_outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="images per launch (racecheck: 1, it took 137 of "
                                                             "its 150 s at 2 on the H200)")
    batch = parser.parse_args(argv).batch
    failures = 0
    for name in ("3a", "5b"):  # the smallest and the largest reduction in shared memory
        config = fused_inception.BLOCKS_BY_NAME[name]
        torch.manual_seed(0)
        block = fused_inception.FusedInception(*config.block_args).cuda().eval()
        for dtype, tf32 in ((torch.float16, False), (torch.bfloat16, False), (torch.float32, True),
                            (torch.float32, False)):
            torch.backends.cudnn.allow_tf32 = tf32
            for memory_format in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(batch, config.in_channels, config.spatial, config.spatial, device="cuda", dtype=dtype)
                # Routing off: the kernel itself in every mode and layout (no copies, no cuDNN).
                with torch.no_grad(), poison_outputs(), fused_inception.routing(False):  # unwritten outputs: NaN
                    out = block.to(dtype)(x.contiguous(memory_format=memory_format))
                ok = bool(torch.isfinite(out).all())
                failures += not ok
                print(f"{name} {dtype} tf32={tf32} {memory_format}: {'ok' if ok else 'NOT FINITE'}", flush=True)
    a, b = torch.randn(130, 96, device="cuda").half(), torch.randn(96, 136, device="cuda").half()
    gemm = torch.ops.fused_inception._simt_test("gemm", [a, b])
    ok = torch.allclose(gemm, a.float() @ b.float(), rtol=1e-3, atol=1e-3)
    failures += not ok
    print(f"test GEMM: {'ok' if ok else 'WRONG'}")
    torch.cuda.synchronize()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
