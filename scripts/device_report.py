"""Turns a device-check output folder into results.json and summary.md, and prints the short table.

    python scripts/device_report.py OUT_DIR
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
    path = os.path.join(out, "tests.xml")
    if not os.path.exists(path):
        return None
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["failed_cases"] = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    return counts


def read_benchmarks(out):
    path = os.path.join(out, "bench.json")
    if not os.path.exists(path):
        return []
    rows = []
    for bench in json.load(open(path))["benchmarks"]:
        info = bench.get("extra_info", {})
        rows.append({"name": bench["name"], **info, "median_s": bench["stats"]["median"],
                     "min_s": bench["stats"]["min"], "rounds": bench["stats"]["rounds"]})
    return rows


def speedup_table(rows):
    by_case = {}
    for row in rows:
        if "block" in row:
            by_case.setdefault((row["block"], row["batch"]), {})[row["impl"]] = row["median_s"]
    lines = ["| block | batch | fused ms | unfused ms | speedup |", "|---|---|---|---|---|"]
    for (block, batch), times in sorted(by_case.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if "fused" in times and "unfused" in times:
            lines.append(f"| {block} | {batch} | {times['fused'] * 1e3:.3f} | {times['unfused'] * 1e3:.3f} | "
                         f"{times['unfused'] / times['fused']:.2f}x |")
    return lines


def main(out):
    results = {"environment": environment(), "steps": read_steps(), "tests": read_tests(out),
               "benchmarks": read_benchmarks(out)}
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
    lines += ["", "Forward, median of the benchmark rounds:", ""] + speedup_table(results["benchmarks"])
    summary = "\n".join(lines) + "\n"
    open(os.path.join(out, "summary.md"), "w").write(summary)
    print(summary)
    return 0 if results["steps"] and all(s["exit_code"] == 0 for s in results["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "device-out"))
