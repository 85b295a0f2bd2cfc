"""Re-fits the cost model's instructions outside the loops (plan.Device.pass_overhead_instructions and
cta_overhead_instructions) to a device check's Nsight Compute times, and prints measured / modeled per case.

The device check writes results.json with one labelled launch per profiled case ("3a-b256-bf16-channels_last")
and its gpu__time_duration. The loops' cost comes from the build that ran: plan.MEASURED_SASS (this checkout)
unless --build names a JSON file holding one MEASURED_SASS entry (registers, loop_instructions and, for
older builds, skips_idle_warps: false, skips_edge_tiles: false, interleaves_m_tiles: false, max_channel_chunk:
256, k_chunk: 32, clips_halo: false; for builds since change 35, shares_reduction_in_clusters: true, without
which a build is modeled recomputing the 3x3 reduction in every task; plan.MEASURED_SASS says which;
pass_instructions and peels_last_k_step, where given, are charged against plan.CALIBRATION_PASS_INSTRUCTIONS). The fit minimises the squared log error, over a
coarse grid and then a finer one around its best point (seconds on a CPU).

Usage: python scripts/calibrate_plan.py --results benchmarks/results/<run>/results.json [--build build.json]
       python scripts/calibrate_plan.py --ncu <run>/ncu-all-bf16.csv --labels <run>/labels-all-bf16.txt
"""

import argparse
import json
import math
import os
import sys
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fused_inception import plan  # noqa: E402
from fused_inception.configs import BLOCKS_BY_NAME  # noqa: E402

DTYPE_LABELS = {"bf16": "bf16", "f16": "f16", "fp16": "f16", "tf32": "tf32", "fp32": "f32", "f32": "f32"}


LAYOUT_LABELS = {"channels_last": "nhwc", "contiguous": "nchw"}


def measured_cases(ncu: dict) -> list:
    """(block, batch, dtype, layout, microseconds) per labelled Nsight Compute launch ("3a-b256-bf16" or
    "3a-b256-bf16-contiguous"; no layout: channels_last) of a results.json's "ncu" section."""
    cases = []
    for launch in (ncu or {}).get("launches", []):
        parts = launch["label"].split("-")
        duration_ns = launch["metrics"].get("gpu__time_duration.sum")
        if len(parts) < 3 or parts[0] not in BLOCKS_BY_NAME or not parts[1].startswith("b") or duration_ns is None:
            continue
        layout = LAYOUT_LABELS.get(parts[3], parts[3]) if len(parts) > 3 else "nhwc"
        cases.append((parts[0], int(parts[1][1:]), DTYPE_LABELS.get(parts[2], parts[2]), layout, duration_ns / 1e3))
    if not cases:
        raise ValueError("no labelled Nsight Compute launches (results.json's ncu.launches, or --ncu with --labels)")
    return cases


def log_errors(cases, build_dtype, build, pass_overhead, cta_overhead):
    device = replace(plan.Device(), pass_overhead_instructions=pass_overhead, cta_overhead_instructions=cta_overhead)
    sass = dict(plan.MEASURED_SASS, **{build_dtype: build})
    # Nsight Compute timed the kernel itself (routing off), in the layout given.
    return [math.log(measured / plan.plan_case(BLOCKS_BY_NAME[block], batch, dtype, device, sass,
                                               layout=layout, routing=False).model_us)
            for block, batch, dtype, layout, measured in cases]


def fit(cases, build):
    """(pass overhead, CTA overhead, log errors) minimising the sum of squared log errors."""
    dtypes = {dtype for _, _, dtype, _, _ in cases}
    if len(dtypes) != 1:
        raise ValueError(f"one dtype per fit, got {sorted(dtypes)}")
    dtype = dtypes.pop()

    def cost(point):
        return sum(e * e for e in log_errors(cases, dtype, build, *point))

    best = min(((p, c) for p in range(0, 5001, 500) for c in range(0, 6001, 1000)), key=cost)
    for step_p, step_c in ((125, 250), (25, 50), (5, 10)):
        around = [(best[0] + i * step_p, best[1] + j * step_c) for i in range(-3, 4) for j in range(-3, 4)]
        best = min((point for point in around if point[0] >= 0 and point[1] >= 0), key=cost)
    return best[0], best[1], log_errors(cases, dtype, build, *best)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="a device check's results.json")
    parser.add_argument("--build", help="JSON file: the MEASURED_SASS entry of the build that ran (default: "
                                        "this checkout's, for the profiled dtype)")
    parser.add_argument("--ncu", help="an Nsight Compute CSV of scripts/ncu_fused.py's launches (device_check.sh "
                                      "--run-ncu), instead of results.json's; needs --labels")
    parser.add_argument("--labels", help="the labels file of --ncu, one case per launch")
    parser.add_argument("--dtype", help="fit only this dtype's cases (bf16, tf32, ...)")
    parser.add_argument("--layout", choices=sorted(set(LAYOUT_LABELS.values())),
                        help="fit only this layout's cases")
    parser.add_argument("--unconverted", action="store_true",
                        help="the profiled blocks were not converted to channels_last: their k x k weights OIHW, "
                             "whose windows the kernel staged (scripts/ncu_fused.py before 2026-12-07: the first "
                             "two GPU runs); modeled as plan's nhwc_oihw layout")
    args = parser.parse_args(argv)
    if bool(args.results) == bool(args.ncu) or bool(args.ncu) != bool(args.labels):
        parser.error("give --results, or --ncu with --labels")
    if args.ncu:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from device_report import read_ncu_csv
        ncu = read_ncu_csv(args.ncu, args.labels)
        if not ncu["labels_match"]:
            parser.error(f"{args.labels} does not name every launch of {args.ncu}")
    else:
        with open(args.results) as f:
            ncu = json.load(f).get("ncu")
    cases = [case for case in measured_cases(ncu) if (args.dtype is None or case[2] == args.dtype)
             and (args.layout is None or case[3] == args.layout)]
    if not cases:
        parser.error("no case left after --dtype and --layout")
    if args.unconverted:
        cases = [(block, batch, dtype, "nhwc_oihw" if layout == "nhwc" else layout, us)
                 for block, batch, dtype, layout, us in cases]
    dtype = cases[0][2]
    build = plan.MEASURED_SASS[dtype]
    if args.build:
        with open(args.build) as f:
            build = json.load(f)
    pass_overhead, cta_overhead, errors = fit(cases, build)
    print(f"pass_overhead_instructions = {pass_overhead}, cta_overhead_instructions = {cta_overhead} "
          f"(now {plan.Device.pass_overhead_instructions:g}, {plan.Device.cta_overhead_instructions:g})")
    for (block, batch, case_dtype, layout, measured), error in zip(cases, errors):
        print(f"  {block} b{batch} {case_dtype} {layout}: measured {measured:.1f} us, "
              f"measured / model {math.exp(error):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
