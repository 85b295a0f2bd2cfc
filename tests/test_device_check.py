"""scripts/device_check.sh and scripts/device_report.py without a GPU: a GPU session gets one try, so the check
must end by its deadline and always leave results.json and summary.md, whatever its steps do. The steps'
commands are replaced (DEVICE_CHECK_CMD_<step>) by commands that sleep, fail or ignore SIGTERM; CI also runs
the real dry run (.ci/run)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = os.path.join(REPO, "scripts", "device_check.sh")
REPORT = os.path.join(REPO, "scripts", "device_report.py")
sys.path.insert(0, os.path.join(REPO, "scripts"))
import device_report  # noqa: E402  (a script, not a package module)

STEPS = ("gpu", "build", "tests", "memcheck", "racecheck", "ncu", "benchmarks")


def run_check(out, timeout=60, **env):
    """The dry run with every real step replaced by a quick `true`, unless `env` says otherwise."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("DEVICE_CHECK_")}
    full_env.update(OUT=str(out), PYTHON=sys.executable, COMMIT="0123456789abcdef",
                    DEVICE_CHECK_CMD_build="true", DEVICE_CHECK_CMD_tests="true", DEVICE_CHECK_CMD_benchmarks="true")
    full_env.update(env)
    begin = time.monotonic()
    result = subprocess.run(["bash", CHECK, "--dry-run"], env=full_env, capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - begin


def read_report(out):
    results = json.load(open(out / "results.json"))
    return results, {s["step"]: s for s in results["steps"]}, (out / "summary.md").read_text()


def test_fake_steps_pass_and_gpu_steps_are_skipped_with_a_reason(tmp_path):
    result, _ = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    results, steps, summary = read_report(tmp_path)
    assert list(steps) == list(STEPS)
    assert {name for name, s in steps.items() if s["status"] == "skipped"} == {"gpu", "memcheck", "racecheck", "ncu"}
    assert all("needs a GPU" in steps[name]["note"] for name in ("gpu", "memcheck", "racecheck", "ncu"))
    assert {steps[name]["status"] for name in ("build", "tests", "benchmarks")} == {"passed"}
    assert results["passed"] is True and results["environment"]["dry_run"] is True
    assert results["environment"]["commit"] == "0123456789abcdef"
    assert "Verdict: **pass**" in summary and "| memcheck | skipped |" in summary


def test_a_step_killed_at_its_limit_leaves_the_report(tmp_path):
    # The tests step ignores SIGTERM, as a hung pytest might: it is killed (SIGKILL) 5 s after its limit.
    result, seconds = run_check(tmp_path, DEVICE_CHECK_CMD_tests='trap "" TERM; sleep 60', DEVICE_CHECK_LIMIT_tests="2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert seconds < 30
    results, steps, summary = read_report(tmp_path)
    assert steps["tests"]["status"] == "timeout" and steps["tests"]["exit_code"] == 137
    assert steps["tests"]["limit"] == 2 and steps["tests"]["seconds"] <= 2 + 5 + 1
    assert "killed at its limit of 2s" in steps["tests"]["note"]
    assert steps["benchmarks"]["status"] == "passed"  # the steps after it still ran
    assert results["passed"] is False and "Verdict: **FAIL**" in summary
    assert "| tests | timeout | 137 | " in summary
    assert "tests: no JUnit file" in summary


def test_a_failed_build_leaves_the_report_and_runs_nothing_that_needs_it(tmp_path):
    result, _ = run_check(tmp_path, DEVICE_CHECK_CMD_build="echo 'fatal error: compiler exploded'; exit 1")
    assert result.returncode == 1, result.stdout + result.stderr
    results, steps, summary = read_report(tmp_path)
    assert steps["build"]["status"] == "failed" and steps["build"]["exit_code"] == 1
    assert {steps[name]["status"] for name in ("tests", "benchmarks")} == {"not_run"}
    assert "the build step did not pass" in steps["tests"]["note"]
    assert "compiler exploded" in (tmp_path / "build.log").read_text()
    assert steps["build"]["note"] == "fatal error: compiler exploded"  # its last line explains the failure
    assert "| build | failed | 1 |" in summary and results["benchmarks"] is None


def test_the_deadline_bounds_the_whole_check(tmp_path):
    # The build would run for a minute: the deadline (22 s, less 3 kept for the report, 5 for the kill grace and
    # 1 + 1 for the caps of the steps after it) cuts it at 12 s, and the check ends, report written, in time.
    result, seconds = run_check(tmp_path, DEADLINE_S="22", REPORT_RESERVE_S="3", DEVICE_CHECK_CMD_build="sleep 60",
                                DEVICE_CHECK_LIMIT_build="100", DEVICE_CHECK_LIMIT_tests="1",
                                DEVICE_CHECK_LIMIT_benchmarks="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert seconds < 22 + 2
    _, steps, _ = read_report(tmp_path)
    assert steps["build"]["status"] == "timeout" and 10 <= steps["build"]["limit"] <= 12


def test_a_terminated_check_still_writes_its_report(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEVICE_CHECK_")}
    env.update(OUT=str(tmp_path), PYTHON=sys.executable, DEVICE_CHECK_CMD_build="true",
               DEVICE_CHECK_CMD_tests="sleep 60")
    check = subprocess.Popen(["bash", CHECK, "--dry-run"], env=env, stdout=subprocess.PIPE, text=True)
    log = tmp_path / "check.log"
    # Until the tests step has started: the steps before it take seconds, more on a loaded machine (a 20 s
    # cap once sent the signal early under a parallel test run).
    deadline = time.monotonic() + 120
    while not (log.exists() and "===== tests" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "===== tests" in log.read_text(), "the tests step never started"
    check.send_signal(signal.SIGTERM)
    output = check.communicate(timeout=60)[0]
    assert check.returncode == 143, output
    _, steps, summary = read_report(tmp_path)
    assert steps["tests"]["status"] == "interrupted" and steps["benchmarks"]["status"] == "not_run"
    assert "| tests | interrupted |" in summary


def test_no_time_left_is_recorded_as_not_run(tmp_path):
    result, seconds = run_check(tmp_path, DEADLINE_S="5", REPORT_RESERVE_S="1")
    assert result.returncode == 1 and seconds < 15
    results, steps, _ = read_report(tmp_path)
    assert {steps[name]["status"] for name in ("build", "tests", "benchmarks")} == {"not_run"}
    assert "no time left before the 5s deadline" in steps["build"]["note"]
    assert results["passed"] is False


def test_a_broken_report_falls_back_to_plain_files(tmp_path):
    # PYTHON=false: device_report.py cannot run at all; the shell still writes both files from the step table.
    note = r"""echo 'a "quoted\ note"' > $STEP_NOTE; exit 3"""
    result, _ = run_check(tmp_path, PYTHON="false", DEVICE_CHECK_CMD_tests=note)
    assert result.returncode == 1, result.stdout + result.stderr
    results = json.load(open(tmp_path / "results.json"))  # valid JSON, quotes and backslashes escaped
    assert results["report_error"] == "device_report.py exited 1"
    steps = {s["step"]: s for s in results["steps"]}
    assert steps["tests"]["status"] == "failed" and steps["tests"]["exit_code"] == 3
    assert steps["tests"]["note"] == r'a "quoted\ note"'
    assert "fallback summary" in (tmp_path / "summary.md").read_text()


# ------------------------------------------------------------------------------------ sanitizer verdicts

FAKE_SANITIZER = """#!/usr/bin/env bash
# Prints its options and PYTORCH_NO_CUDA_MEMORY_CACHING, runs the program (the arguments after the options)
# unless $FAKE_NO_PROGRAM is set, then prints $FAKE_SUMMARY as compute-sanitizer prints its summary.
echo "options: $* caching=${PYTORCH_NO_CUDA_MEMORY_CACHING:-on}"
while [ "${1#-}" != "$1" ]; do shift 2; done
if [ -n "$FAKE_NO_PROGRAM" ]; then rc=0; else "$@"; rc=$?; fi
[ -n "$FAKE_SUMMARY" ] && echo "========= $FAKE_SUMMARY"
exit $rc
"""


@pytest.fixture
def fake_sanitizer(tmp_path):
    path = tmp_path / "compute-sanitizer"
    path.write_text(FAKE_SANITIZER)
    path.chmod(0o755)
    return path


def run_sanitizer(tool, summary, program, sanitizer, tmp_path):
    note = tmp_path / "note"
    note.write_text("")
    env = dict(os.environ, COMPUTE_SANITIZER=str(sanitizer), FAKE_SUMMARY=summary, STEP_NOTE=str(note))
    result = subprocess.run(["bash", CHECK, "--run-sanitizer", tool, *program], env=env, capture_output=True,
                            text=True, timeout=30)
    return result, note.read_text()


@pytest.mark.parametrize("tool, summary, program, expected_rc", [
    ("memcheck", "ERROR SUMMARY: 0 errors", ["true"], 0),
    ("memcheck", "ERROR SUMMARY: 3 errors", ["true"], 1),
    ("memcheck", "ERROR SUMMARY: 0 errors", ["bash", "-c", "exit 2"], 2),  # the program's own failure
    ("memcheck", "", ["true"], 3),  # no summary: the sanitizer did not finish
    ("racecheck", "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 1 warning)", ["true"], 0),
    ("racecheck", "RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)", ["true"], 1),
])
def test_sanitizer_verdict_comes_from_its_summary_and_the_program(tool, summary, program, expected_rc,
                                                                  fake_sanitizer, tmp_path):
    result, note = run_sanitizer(tool, summary, program, fake_sanitizer, tmp_path)
    assert result.returncode == expected_rc, result.stdout + result.stderr
    assert "--report-api-errors no" in result.stdout and "--error-exitcode" not in result.stdout
    assert ("--kernel-name kns=fused_inception" in result.stdout) == (tool == "racecheck")
    assert ("caching=1" in result.stdout) == (tool == "memcheck")
    assert (summary or "no sanitizer summary") in note


FAKE_NCU = """#!/usr/bin/env bash
# Writes the labels file the profiled program would write, and prints what ncu --csv --page raw prints.
while [ $# -gt 0 ]; do [ "$1" = --labels ] && printf '3a-b1\\n3a-b256\\n' > "$2"; shift; done
echo '==PROF== Connected to process 4242'
echo '"ID","Kernel Name","gpu__time_duration.sum"'
echo '"","","ns"'
echo '"0","inception_kernel","1000"'
echo '"1","inception_kernel","250000"'
"""


def test_gpu_run_flow_with_every_gpu_tool_faked(fake_sanitizer, tmp_path):
    # Without --dry-run: the sanitizer and ncu steps run their real wrappers around fake tools, so the GPU
    # run's own control flow (the ncu CSV and labels, the sanitizer notes) is exercised here too.
    ncu = tmp_path / "ncu"
    ncu.write_text(FAKE_NCU)
    ncu.chmod(0o755)
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEVICE_CHECK_")}
    env.update(OUT=str(out), PYTHON=sys.executable, COMPUTE_SANITIZER=str(fake_sanitizer), NCU=str(ncu),
               FAKE_SUMMARY="ERROR SUMMARY: 0 errors", FAKE_NO_PROGRAM="1",  # sanitize_fused.py needs a GPU
               **{f"DEVICE_CHECK_CMD_{name}": "true" for name in ("gpu", "build", "tests", "benchmarks")})
    result = subprocess.run(["bash", CHECK], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    results, steps, summary = read_report(out)
    assert [steps[name]["status"] for name in STEPS] == ["passed"] * len(STEPS)
    assert steps["memcheck"]["note"] == "ERROR SUMMARY: 0 errors (program exit 0)"
    assert steps["ncu"]["note"] == "2 profiled launches (ncu exit 0)"
    assert (out / "ncu.csv").read_text().splitlines()[3] == '"1","inception_kernel","250000"'
    assert "==PROF==" in (out / "check.log").read_text() and results["environment"]["dry_run"] is False
    assert [launch["label"] for launch in results["ncu"]["launches"]] == ["3a-b1", "3a-b256"]
    assert "| 3a-b256 | 250 |" in summary


def test_a_missing_sanitizer_is_named(tmp_path):
    env = dict(os.environ, COMPUTE_SANITIZER=str(tmp_path / "absent"))
    result = subprocess.run(["bash", CHECK, "--run-sanitizer", "memcheck", "true"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 127 and "COMPUTE_SANITIZER" in result.stderr


# -------------------------------------------------------------------------------------------- the report


def test_report_survives_an_empty_junit_file_and_missing_inputs(tmp_path):
    (tmp_path / "junit.xml").write_text("")  # what a killed pytest leaves when the file was created first
    (tmp_path / "steps.tsv").write_text("build\tpassed\t0\t70\t240\t\ntests\ttimeout\t124\t240\t240\tkilled\n")
    rc = device_report.main([str(tmp_path), "--steps", str(tmp_path / "steps.tsv"), "--junit",
                             str(tmp_path / "junit.xml"), "--ncu-labels", str(tmp_path / "absent")])
    assert rc == 1
    results = json.load(open(tmp_path / "results.json"))
    assert results["tests"] == {"error": "empty JUnit file: the tests step did not finish (killed, or failed to start)"}
    assert results["ncu"] is None and results["benchmarks"] is None
    summary = (tmp_path / "summary.md").read_text()
    assert "tests: empty JUnit file" in summary and "| tests | timeout | 124 | 240 | 240 | killed |" in summary
    assert "bench.json is missing" in summary


def test_report_reads_junit_counts_and_failed_cases(tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="no"/></testcase>'
        '<testcase classname="tests.test_a" name="test_gpu"><skipped/></testcase></testsuite></testsuites>')
    (tmp_path / "steps.tsv").write_text("tests\tfailed\t1\t3\t90\t\n")
    device_report.main([str(tmp_path), "--steps", str(tmp_path / "steps.tsv"), "--junit", str(tmp_path / "junit.xml")])
    tests = json.load(open(tmp_path / "results.json"))["tests"]
    assert tests == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1, "failed_cases": ["tests.test_a::test_bad"]}
    assert "- FAILED tests.test_a::test_bad" in (tmp_path / "summary.md").read_text()


def test_report_survives_a_corrupt_bench_json(tmp_path):
    (tmp_path / "bench.json").write_text('{"benchmarks": [')  # cut off mid-write
    assert device_report.main([str(tmp_path), "--dry-run"]) == 1  # no steps recorded: not a pass
    summary = (tmp_path / "summary.md").read_text()
    assert "bench.json could not be rendered" in summary and "(no step recorded)" in summary


def test_report_tabulates_nsight_compute_rows_with_their_labels(tmp_path):
    stall = "smsp__average_warps_issue_stalled_{}_per_issue_active.ratio"
    header = ["ID", "Kernel Name", "Grid Size", "Block Size", "gpu__time_duration.sum",
              "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
              stall.format("barrier"), stall.format("long_scoreboard"), stall.format("selected"), stall.format("wait")]
    units = ["", "", "", "", "ns", "%", "ratio", "ratio", "ratio", "ratio"]
    rows = [["0", "inception_kernel", "(28, 1, 1)", "(256, 1, 1)", "12,345", "41.5", "0.5", "2.25", "9", "1"],
            ["1", "inception_kernel", "(980, 1, 1)", "(256, 1, 1)", "400000", "77", "3", "0.1", "9", "0.2"]]
    (tmp_path / "ncu.csv").write_text("\n".join(",".join(f'"{cell}"' for cell in row)
                                                for row in [header, units, *rows]) + "\n")
    (tmp_path / "labels.txt").write_text("3a-b1-bf16-channels_last\n3a-b256-bf16-channels_last\n")
    device_report.main([str(tmp_path), "--ncu-labels", str(tmp_path / "labels.txt")])
    ncu = json.load(open(tmp_path / "results.json"))["ncu"]
    first, second = ncu["launches"]
    assert first["label"] == "3a-b1-bf16-channels_last" and second["label"] == "3a-b256-bf16-channels_last"
    assert first["metrics"]["gpu__time_duration.sum"] == 12345.0
    assert first["top_stalls"] == [["long_scoreboard", 2.25], ["wait", 1.0], ["barrier", 0.5]]  # not "selected"
    summary = (tmp_path / "summary.md").read_text()
    assert "| 3a-b1-bf16-channels_last | 12.35 | 41.5 |" in summary
    assert "long_scoreboard 2.25, wait 1, barrier 0.5" in summary


def test_ncu_driver_runs_its_cases_in_label_order_on_the_cpu(tmp_path):
    labels = tmp_path / "labels.txt"
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "ncu_fused.py"), "--device", "cpu",
                             "--labels", str(labels), "--blocks", "3a,5b", "--batches", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert labels.read_text().split() == ["3a-b1-bf16-channels_last", "5b-b1-bf16-channels_last"]


def test_profile_host_script_runs_on_cpu():
    # scripts/profile_host.py: what a GPU session with spare minutes runs to split the op's time per call
    # into host layers and the kernel (the H200 run timed 3a at batch 1 at twice its kernel time).
    script = os.path.join(REPO, "scripts", "profile_host.py")
    done = subprocess.run([sys.executable, script, "--device", "cpu", "--block", "5b", "--repeats", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip().endswith(" us")]
    assert len(lines) == 6 and all(float(line.split()[-2]) > 0 for line in lines)
    assert "fused_inception::inception_forward" in done.stdout  # the profiler's table names the op
    bad = subprocess.run([sys.executable, script, "--device", "cpu", "--block", "9z"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--block must be one of" in bad.stderr


def test_ab_driver_times_each_variant_and_checks_its_numerics_on_the_cpu(tmp_path):
    # scripts/device_ab.py, what a GPU session runs after the device check (scripts/device_ab.sh builds the
    # variants): here one "variant", this checkout, on the CPU's unfused path, one block, one batch.
    out = tmp_path / "ab.json"
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "device_ab.py"), "--device", "cpu",
                             "--variant", f"here={REPO}", "--variant", f"again={REPO}",
                             "--env-variant", "noclusters=here:FUSED_INCEPTION_TEST_CLUSTERS=0", "--blocks", "5b",
                             "--batches", "1", "--threshold-blocks", "5b", "--threshold-batches", "1",
                             "--calls", "1", "--repeats", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["environment"] == {"noclusters": {"FUSED_INCEPTION_TEST_CLUSTERS": "0"}}
    for name in ("here", "again", "noclusters"):
        cases = [row for row in data["results"][name] if "case" in row]
        assert [row["case"] for row in cases] == ["5b-b1-bf16-channels_last"]
        assert cases[0]["us"] > 0 and cases[0]["numerics_ok"]
        assert data["results"][name][0]["info"]["package"] == os.path.join(REPO, "fused_inception")
    assert [row["pixels"] for row in data["results"]["here"] if "threshold" in row] == [49]  # baseline only
    assert not any("threshold" in row for row in data["results"]["again"])
    assert "again/here" in result.stdout and "NCHW kernel" in result.stdout
    bad = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "device_ab.py"), "--variant", "nopath"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NAME=PATH" in bad.stderr
    bad = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "device_ab.py"), "--variant", f"here={REPO}",
                          "--env-variant", "x=missing:A=1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "NAME=VARIANT:VAR=VALUE" in bad.stderr
