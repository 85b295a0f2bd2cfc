"""Turns a device-check output folder into results.json and summary.md, and prints the short summary.

    python scripts/device_report.py OUT_DIR

Benchmarks: bench.json (written by `python -m fused_inception bench`) is rendered into summary.md by
fused_inception.bench.report, the same code as `python -m fused_inception report`; the plots are drawn here too
when the bench step was cut short before drawing them.
"""

import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ElementTree


def environment():
    env = {"commit": os.environ.get("COMMIT", "unknown"), "date": datetime.date.today().isoformat(),
           "python": platform.python_version()}
    try:
        import torch

        env.update(torch=torch.__version__, cuda=torch.version.cuda,
                   gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as error:  # the report must still be written when torch is broken
        env["torch_error"] = repr(error)
    return env


def read_steps():
    steps = []
    path = os.environ.get("STEPS_FILE", "")
    if os.path.exists(path):
        for line in open(path):
            name, rc, seconds = line.rstrip("\n").split("\t")
            steps.append({"step": name, "exit_code": int(rc), "seconds": int(seconds)})
    return steps


def read_tests(out):
    path = os.environ.get("JUNIT_XML") or os.path.join(out, "tests.xml")
    if not os.path.exists(path):
        return None
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["failed_cases"] = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    return counts


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
    except Exception as error:  # the summary must still be written
        return None, [f"bench.json could not be rendered: {type(error).__name__}: {error}"]
    counts = {"measured": len(results.records), "not_run": len(results.not_run)}
    # One heading level down: the benchmark report is a section of the device-check summary.
    lines = ["#" + line if line.startswith("#") else line for line in report.markdown(results).splitlines()]
    return counts, lines + [f"- {problem}" for problem in problems]


def main(out):
    bench_counts, bench_lines = benchmark_summary(out)
    results = {"environment": environment(), "steps": read_steps(), "tests": read_tests(out),
               "benchmarks": bench_counts}
    json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=1)
    env, tests = results["environment"], results["tests"]
    lines = [f"# Device check {env['date']}: {env.get('gpu')} (torch {env.get('torch')}, CUDA {env.get('cuda')}, "
             f"commit {env['commit'][:12]})", "",
             "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['exit_code']} | {s['seconds']} |" for s in results["steps"]]
    if tests:
        lines += ["", f"tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
                      f"{tests['skipped']} skipped"]
        lines += [f"- FAILED {name}" for name in tests["failed_cases"][:20]]
    lines += [""] + bench_lines
    summary = "\n".join(lines) + "\n"
    open(os.path.join(out, "summary.md"), "w").write(summary)
    print(summary)
    return 0 if results["steps"] and all(s["exit_code"] == 0 for s in results["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "device-out"))
