"""`python -m fused_inception bench`: times the fused Inception op against eager PyTorch, eager under a
CUDA graph and torch.compile, per GoogLeNet block and for the whole network, and writes bench.json
(pytest-benchmark's layout), bench.md (the table) and two plots (speedup.png, roofline.png).

    python -m fused_inception bench --quick                 # CI: a small CPU-sized set, well under a minute
    python -m fused_inception bench --targets 3a,4e --batch 1,32 --impl fused,eager --out results/
    python -m fused_inception bench --budget 200            # what the device check runs on a GPU

Cases come from fused_inception.bench.benchcases (the same table the pytest-benchmark suite in benchmarks/
uses), in priority order; filters narrow a profile. Cases that cannot run here are recorded as skipped with
the reason. Exit status: 0, or 1 when a case failed or an implementation broke the numerics rule.
"""

import argparse
import json
import os
import sys
import time

import torch

from . import benchrun, report
from .benchcases import DTYPES, IMPLS, MEMORY_FORMATS, MODES, PROFILES, TARGETS, grid, select

#: Guessed seconds for a case before one of its kind (implementation family, block or heavy) has run: the
#: budget check needs a number. A torch.compile case includes Inductor's start-up and codegen, the whole
#: network has ~80 convolutions to compile, and max-autotune benchmarks many kernels per convolution.
FIRST_GUESS_S = {("compile", False): 60.0, ("compile", True): 180.0,
                 ("compile-max-autotune", False): 300.0, ("compile-max-autotune", True): 900.0,
                 ("run", False): 2.0, ("run", True): 5.0}
JSON_EVERY_S = 5.0


def _list_of(allowed, convert=str, name="value"):
    """argparse type for a comma-separated list of values from `allowed`, with a clear error."""
    def parse(text):
        items = []
        for part in (p.strip() for p in text.split(",")):
            try:
                value = convert(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not a {name}") from None
            if allowed is not None and value not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown {name} {part!r} (choose from {', '.join(map(str, allowed))})")
            if allowed is None and value < 1:
                raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {part!r}")
            items.append(value)
        return tuple(dict.fromkeys(items))

    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fused_inception bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick profile (CI; same as --profile quick)")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="case set: quick, default (sized for the device), full (every combination)")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when present, else cpu)")
    selection = parser.add_argument_group("selection (comma-separated lists narrow the profile's cases)")
    selection.add_argument("--targets", type=_list_of(TARGETS, name="target"), help="blocks 3a..5b, network")
    selection.add_argument("--mode", type=_list_of(MODES, name="mode"), help="inference, training")
    selection.add_argument("--impl", type=_list_of(IMPLS, name="implementation"), help=", ".join(IMPLS))
    selection.add_argument("--batch", type=_list_of(None, int, "batch size"), help="e.g. 1,32,256")
    selection.add_argument("--dtype", type=_list_of(tuple(DTYPES), name="dtype"), help="fp32, fp16, bf16")
    selection.add_argument("--memory-format", type=_list_of(tuple(MEMORY_FORMATS), name="memory format"),
                           help="nhwc (channels_last), nchw")
    selection.add_argument("-k", dest="contains", metavar="TEXT", help="only cases whose id contains TEXT")
    selection.add_argument("--max-autotune", action="store_true",
                           help="run the torch.compile max-autotune cases (minutes per shape; skipped otherwise)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per case")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed calls per case, the median is reported (network and training cases use at "
                             "most their own default)")
    parser.add_argument("--budget", type=_positive_float, default=None, metavar="SECONDS",
                        help="start no case that would end past this many seconds after the start; those are "
                             "recorded as skipped")
    parser.add_argument("--no-check", action="store_true", help="skip the float64 numerics check per case")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="leave cuDNN's autotuner off (by default eager gets it, as a tuned deployment would)")
    parser.add_argument("--out", default="bench-results", help="output folder (default: bench-results)")
    parser.add_argument("--formats", type=report.parse_formats, default=report.FORMATS,
                        help="what to write: json, md, png, comma-separated (default: all)")
    parser.add_argument("--list", action="store_true", help="print the selected cases and exit")
    return parser


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per case in a log file."""

    WIDTH = 24

    def __init__(self, total, stream=None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def update(self, outcome, elapsed):
        self.done += 1
        filled = self.WIDTH * self.done // self.total
        if outcome.status == "ok":
            status = report.format_seconds(outcome.median)
        elif outcome.status == "skipped":
            status = "skipped"
        else:
            status = f"FAILED: {outcome.error}"
        text = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total} {elapsed:4.0f}s "
                f"{outcome.case.id}: {status}")
        if self.tty:
            final = self.done == self.total or outcome.status == "failed"
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class Budget:
    """Decides whether a case may start: elapsed time plus a guess of its duration (the mean of the cases
    of its kind so far) must stay within the budget."""

    def __init__(self, seconds, started):
        self.seconds, self.started = seconds, started
        self.durations = {}

    @staticmethod
    def kind(case):
        heavy = case.mode == "training" or case.target == "network"
        return (case.impl if case.impl.startswith("compile") else "run", heavy)

    def guess(self, case):
        past = self.durations.get(self.kind(case))
        return sum(past) / len(past) if past else FIRST_GUESS_S[self.kind(case)]

    def allows(self, case, now):
        return self.seconds is None or now - self.started + self.guess(case) <= self.seconds

    def record(self, case, seconds):
        self.durations.setdefault(self.kind(case), []).append(seconds)


def _write_json(document, path):
    tmp = path + ".tmp"  # then renamed: a reader never sees half a file
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and args.profile not in (None, "quick"):
        parser.error(f"--quick is the quick profile; it cannot be combined with --profile {args.profile}")
    profile = "quick" if args.quick else args.profile or "default"
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        parser.error(f"--device {args.device}: not a device (cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: only cpu and cuda are benchmarked")
    cases = select(grid(profile, device.type), targets=args.targets, modes=args.mode, impls=args.impl,
                   batches=args.batch, dtypes=args.dtype, memory_formats=args.memory_format,
                   contains=args.contains)
    if not cases:
        parser.error(f"no case of the {profile} profile matches the selection (--list shows the profile's cases)")
    if args.list:
        print("\n".join(case.id for case in cases))
        return 0
    try:
        settings = benchrun.Settings.for_run(device.type, profile, warmup=args.warmup, rounds=args.rounds,
                                             check_numerics=not args.no_check, max_autotune=args.max_autotune)
    except ValueError as error:
        parser.error(str(error))
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    try:
        return _run(cases, device, profile, settings, args, started)
    finally:
        torch.backends.cudnn.benchmark = previous


def _run(cases, device, profile, settings, args, started) -> int:
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "bench.json")
    env = benchrun.environment(device)
    print(f"bench: {len(cases)} {profile} case(s) on {device} ({env['device_name']}); torch {env['torch']}; "
          f"op: {env['fused_inception_backend']}", flush=True)
    ceilings = benchrun.ceilings_for(cases, device)
    print("ceilings: matmul " + ", ".join(f"{label} {report.format_rate(rate, 'FLOP/s')}"
                                          for label, rate in ceilings.matmul_flops_per_s.items())
          + f"; copy {report.format_rate(ceilings.copy_bytes_per_s, 'B/s')}", flush=True)

    def document():
        return benchrun.document(outcomes, env, ceilings, settings, profile,
                                 elapsed_s=round(time.monotonic() - started, 1), budget_s=args.budget)

    workbench = benchrun.Workbench(device, ceilings, settings)
    budget = Budget(args.budget, started)
    progress = Progress(len(cases))
    outcomes = []
    last_write = time.monotonic()
    for case in cases:
        # A case that skips anyway (CUDA graphs on a CPU, max-autotune not asked for) keeps its own reason.
        if budget.allows(case, time.monotonic()) or benchrun.skip_reason(case, device, settings):
            begin = time.monotonic()
            outcome = workbench.run(case)
            if outcome.status == "ok":
                budget.record(case, time.monotonic() - begin)
        else:
            outcome = benchrun.Outcome(case, skip_reason=f"not started: it would end past the {args.budget:g} s "
                                                         "time budget")
        outcomes.append(outcome)
        progress.update(outcome, time.monotonic() - started)
        # Saved every few seconds too: a run killed by an outer time limit keeps what it measured.
        if "json" in args.formats and time.monotonic() - last_write > JSON_EVERY_S:
            _write_json(document(), json_path)
            last_write = time.monotonic()

    final = document()
    if "json" in args.formats:
        _write_json(final, json_path)
    results = report.from_document(final, json_path)
    written, problems = report.write(results, args.out, args.formats)
    written = ([json_path] if "json" in args.formats else []) + written
    print("\n" + report.markdown(results), flush=True)
    for problem in problems:
        print(f"bench: {problem}", flush=True)
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "skipped", "failed")}
    broken = [r.case for r in results.records if r.info.get("numerics_passed") is False]
    print(f"bench: {counts['ok']} measured, {counts['skipped']} skipped, {counts['failed']} failed, "
          f"{len(broken)} numerics failure(s) in {time.monotonic() - started:.0f} s; wrote {', '.join(written)}",
          flush=True)
    return 1 if counts["failed"] or broken or problems else 0
