"""Turns a device-check output folder into results.json and summary.md, and prints the summary.

    python scripts/device_report.py OUT_DIR --steps STEPS.tsv [--junit JUNIT.xml] [--ncu-labels FILE] [--dry-run]

scripts/device_check.sh runs it last, every time, also after a failed build or a step killed at its limit: so
no input may be assumed present or whole (an empty JUnit file, a bench.json without plots, no ncu.csv). Each
part that cannot be read is reported as such, and results.json and summary.md are always written. Exit code:
0 when every step passed or was skipped by design, 1 otherwise.

Benchmarks: bench.json (written by `python -m fused_inception bench`) is rendered into summary.md by
fused_inception.bench.report, the same code as `python -m fused_inception report`; the plots are drawn here too
when the bench step was cut short before drawing them.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ElementTree

# Step statuses that do not fail the check (device_check.sh's fallback verdict mirrors this).
PASSING = ("passed", "skipped")
NCU_CSV = "ncu.csv"
STALL_PREFIX, STALL_SUFFIX = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"
NCU_COLUMNS = (  # (heading, metric, scale to the unit in the heading)
    ("duration (us)", "gpu__time_duration.sum", 1e-3),
    ("tensor pipe %", "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active", 1),
    ("issue slots %", "sm__inst_issued.avg.pct_of_peak_sustained_active", 1),
    ("occupancy %", "sm__warps_active.avg.pct_of_peak_sustained_active", 1),
    ("DRAM read MB", "dram__bytes_read.sum", 1e-6),
    ("DRAM write MB", "dram__bytes_write.sum", 1e-6),
)


def environment(dry_run):
    env = {"commit": os.environ.get("COMMIT", "unknown"), "date": datetime.date.today().isoformat(),
           "python": platform.python_version(), "dry_run": dry_run}
    try:
        import torch

        env.update(torch=torch.__version__, cuda=torch.version.cuda,
                   gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as error:  # the report must still be written when torch is broken
        env["torch_error"] = f"{type(error).__name__}: {error}"
    return env


def _int_or_none(text):
    try:
        return int(text)
    except ValueError:
        return None


def read_steps(path):
    """The step table device_check.sh writes: NAME STATUS EXIT_CODE SECONDS LIMIT NOTE, tab-separated."""
    steps = []
    if not path or not os.path.exists(path):
        return steps
    with open(path, errors="replace") as table:
        for line in table:
            fields = line.rstrip("\n").split("\t")
            if not fields[0]:
                continue
            fields += [""] * (6 - len(fields))
            steps.append({"step": fields[0], "status": fields[1] or "unknown", "exit_code": _int_or_none(fields[2]),
                          "seconds": _int_or_none(fields[3]), "limit": _int_or_none(fields[4]),
                          "note": "\t".join(fields[5:]).strip()})
    return steps


def read_tests(path):
    """Test counts and failed cases from the JUnit file, or {"error": why} when it is missing or unreadable
    (an empty file: pytest was killed, or never ran)."""
    if not path or not os.path.exists(path):
        return {"error": "no JUnit file: the tests step did not run"}
    if os.path.getsize(path) == 0:
        return {"error": "empty JUnit file: the tests step did not finish (killed, or failed to start)"}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        return {"error": f"unreadable JUnit file: {error}"}
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites)
              for key in ("tests", "failures", "errors", "skipped")}
    counts["failed_cases"] = [f"{case.get('classname')}::{case.get('name')}"
                              for suite in suites for case in suite.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    return counts


def _number(text):
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None


def read_ncu(out, labels_path):
    """One dict per profiled launch from ncu.csv (ncu --csv --page raw: a header row, a units row, one row
    per launch), labelled in launch order from the labels file; None when there is no ncu.csv."""
    path = os.path.join(out, NCU_CSV)
    if not os.path.exists(path):
        return None
    return read_ncu_csv(path, labels_path)


def read_ncu_csv(path, labels_path):
    """read_ncu for a CSV at any path (scripts/calibrate_plan.py reads extra profiles with it)."""
    labels = []
    if labels_path and os.path.exists(labels_path):
        labels = [line.strip() for line in open(labels_path) if line.strip()]
    with open(path, newline="", errors="replace") as table:
        rows = list(csv.DictReader(table))
    launches = [row for row in rows if (row.get("ID") or "").strip().isdigit()]  # drops the units row
    result = {"launches": [], "labels_match": len(labels) == len(launches)}
    for index, row in enumerate(launches):
        stalls = {key[len(STALL_PREFIX):-len(STALL_SUFFIX)]: _number(value) for key, value in row.items()
                  if key and key.startswith(STALL_PREFIX) and key.endswith(STALL_SUFFIX)}
        stalls = {reason: value for reason, value in stalls.items() if value is not None and reason != "selected"}
        launch = {"label": labels[index] if result["labels_match"] else f"launch {index}",
                  "kernel": row.get("Kernel Name"), "grid": row.get("Grid Size"), "block": row.get("Block Size"),
                  "metrics": {metric: _number(row.get(metric)) for _, metric, _ in NCU_COLUMNS},
                  "top_stalls": sorted(stalls.items(), key=lambda item: -item[1])[:3]}
        result["launches"].append(launch)
    return result


def ncu_lines(ncu):
    if ncu is None:
        return []
    lines = ["## Nsight Compute: the fused kernel, bf16 channels_last (--clock-control none)", "",
             "| case | " + " | ".join(heading for heading, _, _ in NCU_COLUMNS) + " | top stalls (cycles per issue) |",
             "|---|" + "---:|" * len(NCU_COLUMNS) + "---|"]
    for launch in ncu["launches"]:
        cells = [("" if launch["metrics"][metric] is None else f"{launch['metrics'][metric] * scale:.4g}")
                 for _, metric, scale in NCU_COLUMNS]
        stalls = ", ".join(f"{reason} {value:.3g}" for reason, value in launch["top_stalls"])
        lines.append(f"| {launch['label']} | " + " | ".join(cells) + f" | {stalls} |")
    if not ncu["labels_match"]:
        lines.append("\nThe number of profiled launches differs from the number of cases: rows are unlabelled.")
    return lines + [""]


def benchmark_summary(out):
    """({measured, not_run} or None, markdown lines) for bench.json in `out`."""
    path = os.path.join(out, "bench.json")
    if not os.path.exists(path):
        return None, ["No benchmark results: bench.json is missing (see the benchmarks section of check.log)."]
    try:
        from fused_inception.bench import report

        results = report.load(path)
        missing = [name for name in (report.SPEEDUP_PNG, report.ROOFLINE_PNG)
                   if not os.path.exists(os.path.join(out, name))]
        problems = []
        if missing:  # the bench step was killed after its last save of bench.json
            problems = report.write(results, out, formats=("png",))[1]
        counts = {"measured": len(results.records), "not_run": len(results.not_run)}
        markdown = report.markdown(results)
    except Exception as error:  # the summary must still be written
        return None, [f"bench.json could not be rendered: {type(error).__name__}: {error}"]
    # One heading level down: the benchmark report is a section of the device-check summary.
    lines = ["#" + line if line.startswith("#") else line for line in markdown.splitlines()]
    return counts, lines + [f"- {problem}" for problem in problems]


def _guarded(what, function, *args):
    """function(*args), or {"error": ...} when it raises: one unreadable input must not lose the report."""
    try:
        return function(*args)
    except Exception as error:
        return {"error": f"{what}: {type(error).__name__}: {error}"}


def summary_markdown(results, bench_lines):
    env, tests, ncu = results["environment"], results["tests"], results["ncu"]
    where = "dry run on the CPU" if env.get("dry_run") else env.get("gpu")
    lines = [f"# Device check {env.get('date')}: {where} (torch {env.get('torch')}, CUDA {env.get('cuda')}, "
             f"commit {str(env.get('commit'))[:12]})", "",
             f"Verdict: **{'pass' if results['passed'] else 'FAIL'}**", "",
             "| step | status | exit | seconds | limit | note |", "|---|---|---|---|---|---|"]
    for s in results["steps"]:
        note = str(s.get("note", "")).replace("|", "\\|")
        lines.append(f"| {s['step']} | {s['status']} | {'' if s['exit_code'] is None else s['exit_code']} | "
                     f"{s['seconds']} | {'' if s['limit'] is None else s['limit']} | {note} |")
    if not results["steps"]:
        lines.append("| (no step recorded) | | | | | |")
    lines.append("")
    if "error" in tests:
        lines += [f"tests: {tests['error']}", ""]
    else:
        lines += [f"tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
                  f"{tests['skipped']} skipped"]
        lines += [f"- FAILED {name}" for name in tests["failed_cases"][:20]]
        if len(tests["failed_cases"]) > 20:
            lines.append(f"- ... and {len(tests['failed_cases']) - 20} more (results.json)")
        lines.append("")
    if isinstance(ncu, dict) and "error" in ncu:
        lines += [f"Nsight Compute: {ncu['error']}", ""]
    elif ncu is not None:
        lines += ncu_lines(ncu)
    return "\n".join(lines + bench_lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="device-out")
    parser.add_argument("--steps", help="the step table device_check.sh writes")
    parser.add_argument("--junit", help="pytest's JUnit XML file")
    parser.add_argument("--ncu-labels", help="one case label per profiled launch (scripts/ncu_fused.py)")
    parser.add_argument("--dry-run", action="store_true", help="the check ran with --dry-run (no GPU)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    steps = _guarded("step table", read_steps, args.steps)
    if isinstance(steps, dict):
        steps = [{"step": "report", "status": "failed", "exit_code": None, "seconds": None, "limit": None,
                  "note": steps["error"]}]
    bench = _guarded("benchmarks", benchmark_summary, args.out)
    bench_counts, bench_lines = bench if isinstance(bench, tuple) else (None, [bench["error"]])
    results = {"environment": _guarded("environment", environment, args.dry_run), "steps": steps,
               "passed": bool(steps) and all(s["status"] in PASSING for s in steps),
               "tests": _guarded("tests", read_tests, args.junit),
               "ncu": _guarded("Nsight Compute", read_ncu, args.out, args.ncu_labels),
               "benchmarks": bench_counts}
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump(results, file, indent=1, default=str)
    try:
        summary = summary_markdown(results, bench_lines)
    except Exception as error:
        summary = (f"# Device check: the summary could not be rendered ({type(error).__name__}: {error})\n\n"
                   "See results.json.\n")
    with open(os.path.join(args.out, "summary.md"), "w") as file:
        file.write(summary)
    print(summary)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
