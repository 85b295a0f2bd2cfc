"""A/B of kernel build variants on a GPU: each variant's fused kernel timed on the same cases, in one call.

scripts/device_ab.sh builds the variants (a copy of this checkout each, built in place with its own nvcc
flags) and runs this driver, which starts one process per variant with that copy first on PYTHONPATH:

    python scripts/device_ab.py --variant base=/tmp/ab/base --variant ahead2=/tmp/ab/ahead2 --out ab.json

Per variant and case: the op's GPU time per call, routing off (the kernel itself), from replays of a CUDA
graph of --calls calls (no host time in it), the median of --repeats replays. The first variant is the
baseline of the ratios. Also, in the first variant only, the NCHW routing threshold (docs/performance.md,
change 21): bf16 NCHW at small batches, the NCHW kernel against a channels_last copy of x and the k x k
weights, the kernel and the copy back (what the op routes to from 1568 pixels). Each case's block is converted
to its input's memory format (before 2026-12-07 the channels_last cases timed OIHW k x k weights: staged
windows). Prints a table last; --out gets every number (JSON).
On a CPU (--device cpu, the CI check of this script) the same calls are timed on the host, without graphs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BLOCKS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def time_call(call, device, calls, repeats):
    """Median seconds per call of `call` over `repeats` timings of `calls` calls (a CUDA graph on a GPU)."""
    import torch

    if device.type != "cuda":
        call()
        samples = []
        for _ in range(repeats):
            begin = time.perf_counter()
            for _ in range(calls):
                call()
            samples.append((time.perf_counter() - begin) / calls)
        return statistics.median(samples)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            call()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(repeats):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(samples)


def child(args) -> int:
    """One variant: one JSON line per case on stdout."""
    import torch

    import fused_inception
    from fused_inception import plan
    from fused_inception.testing import check_numerics, float64_copy

    device = torch.device(args.device)
    backend = fused_inception.cuda_backend if device.type == "cuda" else fused_inception.cpu_backend
    info = {"variant": args.child, "package": os.path.dirname(fused_inception.__file__),
            "build": fused_inception.build_info() if hasattr(fused_inception, "build_info") else None}
    print(json.dumps({"info": info}), flush=True)

    def block_and_input(name, batch, memory_format):
        """The block converted to x's memory format, as users are told to (a channels_last block's k x k
        weights OHWI, read in place), and x."""
        config = fused_inception.BLOCKS_BY_NAME[name]
        torch.manual_seed(0)
        block = fused_inception.FusedInception(*config.block_args).to(
            device, torch.bfloat16, memory_format=memory_format).eval()
        x = torch.randn(batch, config.in_channels, config.spatial, config.spatial, device=device,
                        dtype=torch.bfloat16).contiguous(memory_format=memory_format)
        return block, x

    with torch.no_grad(), backend("fused" if device.type == "cuda" else "unfused"), fused_inception.routing(False):
        for name in args.blocks.split(","):
            for batch in (int(b) for b in args.batches.split(",") if b):
                block, x = block_and_input(name, batch, torch.channels_last)
                seconds = time_call(lambda: block(x), device, args.calls, args.repeats)
                # A variant must compute the same function: the numerics rule against float64 and unfused bf16.
                with backend("unfused"):
                    unfused = block(x)
                check = check_numerics(block(x), unfused, float64_copy(block)(x.double()))
                print(json.dumps({"case": f"{name}-b{batch}-bf16-channels_last", "us": seconds * 1e6,
                                  "numerics": str(check), "numerics_ok": check.passed}), flush=True)
        if args.threshold_batches:
            for name in args.threshold_blocks.split(","):
                for batch in (int(b) for b in args.threshold_batches.split(",") if b):
                    block, x = block_and_input(name, batch, torch.contiguous_format)
                    kernel = time_call(lambda: block(x), device, args.calls, args.repeats)
                    params = [p.detach() for p in block.op_parameters()]

                    def routed(x=x, params=params):  # the route's calls: x and the k x k weights in, the output back
                        channels_last = [p.contiguous(memory_format=torch.channels_last) if p.dim() == 4 and
                                         p.shape[-1] > 1 and plan.reads_windows_in_place(p.shape[1], p.element_size())
                                         else p for p in params]
                        return fused_inception.inception(x.contiguous(memory_format=torch.channels_last),
                                                         *channels_last).contiguous()

                    copies = time_call(routed, device, args.calls, args.repeats)
                    print(json.dumps({"threshold": f"{name}-b{batch}-bf16-nchw", "pixels": batch * x.shape[2] ** 2,
                                      "nchw_kernel_us": kernel * 1e6, "channels_last_copy_us": copies * 1e6}),
                          flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                        help="a built checkout to time (repeat; the first is the baseline)")
    parser.add_argument("--env-variant", action="append", default=[], metavar="NAME=VARIANT:VAR=VALUE",
                        help="a variant's checkout timed again with one environment variable set (repeat), e.g. "
                             "noclusters=base:FUSED_INCEPTION_TEST_CLUSTERS=0 (launches without clusters)")
    parser.add_argument("--out", help="JSON file for every number")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--blocks", default=",".join(BLOCKS))
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--threshold-blocks", default="3a,4d,5b")
    parser.add_argument("--threshold-batches", default="1,4,16",
                        help="NCHW batches for the routing threshold (empty: none)")
    parser.add_argument("--calls", type=int, default=20, help="calls per timing (one CUDA graph on a GPU)")
    parser.add_argument("--repeats", type=int, default=15, help="timings per case (the median is kept)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if not args.variant:
        parser.error("give at least one --variant NAME=PATH")
    variants, variant_env = [], {}
    for spec in args.variant:
        name, sep, path = spec.partition("=")
        if not sep or not name or not os.path.isdir(path):
            parser.error(f"--variant must be NAME=PATH of a folder, got {spec!r}")
        variants.append((name, os.path.abspath(path)))
    for spec in args.env_variant:
        name, _, rest = spec.partition("=")
        base, _, setting = rest.partition(":")
        var, sep, value = setting.partition("=")
        paths = dict(variants)
        if not name or base not in paths or not var or not sep:
            parser.error(f"--env-variant must be NAME=VARIANT:VAR=VALUE of a --variant, got {spec!r}")
        variants.append((name, paths[base]))
        variant_env[name] = {var: value}
    results, failed = {}, []
    for index, (name, path) in enumerate(variants):
        command = [sys.executable, os.path.abspath(__file__), "--child", name, "--device", args.device,
                   "--blocks", args.blocks, "--batches", args.batches, "--calls", str(args.calls),
                   "--repeats", str(args.repeats), "--threshold-blocks", args.threshold_blocks,
                   "--threshold-batches", args.threshold_batches if index == 0 else ""]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")])),
                   **variant_env.get(name, {}))
        # From outside every checkout, so that PYTHONPATH alone decides which fused_inception is imported.
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=os.path.dirname(path))
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        results[name] = lines
        if done.returncode != 0:
            failed.append(name)
            print(f"variant {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"variants": dict(variants), "environment": variant_env, "results": results}, f, indent=1)
    base_name = variants[0][0]
    times = {name: {row["case"]: row["us"] for row in rows if "case" in row} for name, rows in results.items()}
    names = [name for name, _ in variants]
    print("case".ljust(28) + "".join(f"{name:>14}" for name in names) + "".join(
        f"{name + '/' + base_name:>16}" for name in names[1:]))
    for case in times.get(base_name, {}):
        row = case.ljust(28) + "".join(f"{times[n].get(case, float('nan')):13.1f}u" for n in names)
        row += "".join(f"{times[n].get(case, float('nan')) / times[base_name][case]:16.3f}" for n in names[1:])
        print(row)
    wrong = [f"{name} {row['case']}: {row['numerics']}" for name, rows in results.items() for row in rows
             if "case" in row and not row["numerics_ok"]]
    for line in wrong:
        print(f"NUMERICS FAIL {line}")
    for row in results.get(base_name, []):
        if "threshold" in row:
            print(f"{row['threshold']:28s} {row['pixels']:6d} px: NCHW kernel {row['nchw_kernel_us']:.1f} us, "
                  f"channels_last copy + kernel + copy {row['channels_last_copy_us']:.1f} us")
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
