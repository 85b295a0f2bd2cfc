"""The benchmark machinery on the CPU: the case table, the Workbench, the JSON document, the report and the
`bench` / `report` commands. No test asserts a time: CPU timings here are noise."""

import json
import os
import statistics
import struct
import subprocess
import sys

import pytest
import torch

import fused_inception
import fused_inception.__main__ as cli
from fused_inception import BLOCKS_BY_NAME, FusedInception
from fused_inception.bench import benchcases, benchrun, report, roofline
from fused_inception.bench.cli import Budget
from fused_inception.bench.benchcases import BLOCKS, TARGETS, Case, grid, select

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = torch.device("cpu")


def ceilings():
    """Made-up ceilings: 100 GFLOP/s and 10 GB/s make hand arithmetic easy."""
    return roofline.Ceilings("cpu", {"fp32": 1e11, "bf16": 2e11, "fp16": 2e11}, 1e10, 1024, 1 << 28, False)


def quick_settings(**overrides):
    return benchrun.Settings.for_run("cpu", "quick", warmup=1, rounds=2, **overrides)


# ---------------------------------------------------------------------------------------------- case table


@pytest.mark.parametrize("profile", benchcases.PROFILES)
@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_profiles_are_unique_and_every_peer_has_its_baseline(profile, device_type):
    cases = grid(profile, device_type)
    assert len(cases) == len(set(cases)) == len({c.id for c in cases})
    assert all(c.impl in benchcases.TRAINING_IMPLS for c in cases if c.mode == "training")
    baselines = {c.workload for c in cases if c.impl == "eager"}
    assert [c.id for c in cases if c.workload not in baselines] == []


def test_quick_profile_covers_every_target_mode_dtype_and_layout():
    cases = grid("quick", "cpu")
    assert {c.target for c in cases} == set(TARGETS)
    assert {c.mode for c in cases} == set(benchcases.MODES)
    assert {c.dtype for c in cases} == set(benchcases.DTYPES)
    assert {c.memory_format for c in cases} == set(benchcases.MEMORY_FORMATS)
    assert {"fused", "eager", "eager-cudagraph"} <= {c.impl for c in cases}


def test_gpu_default_runs_the_headline_first():
    cases = grid("default", "cuda")
    peers = ("fused", "fused-cudagraph", "eager", "eager-cudagraph")
    headline = cases[:9 * 3 * len(peers)]
    assert {(c.target, c.batch, c.impl) for c in headline} == {
        (b, n, i) for b in BLOCKS for n in (1, 32, 256) for i in peers}
    assert {(c.mode, c.dtype, c.memory_format) for c in headline} == {("inference", "bf16", "nhwc")}
    # Then the network, and then the cases the op routes (change 21), before the long tail.
    after = [c for c in cases[len(headline):] if c.target != "network"][:9 * 3 * 2 + 9 * 2 * 2]
    assert {(c.dtype, c.memory_format) for c in after} == {("bf16", "nchw"), ("fp32", "nhwc")}
    assert {c.batch for c in cases} == {1, 8, 32, 128, 256}
    assert {c.impl for c in cases} == set(benchcases.IMPLS)
    assert sum(c.impl == "compile-max-autotune" for c in cases) <= 2


def test_case_rejects_bad_fields():
    with pytest.raises(ValueError, match="target must be one of"):
        Case("3x", "inference", "fused", 1, "fp32", "nhwc")
    with pytest.raises(ValueError, match="training cases compare fused and eager"):
        Case("3a", "training", "compile", 1, "fp32", "nhwc")
    with pytest.raises(ValueError, match="batch must be a positive int"):
        Case("3a", "inference", "fused", 0, "fp32", "nhwc")
    assert Case("3a", "inference", "fused", 32, "bf16", "nhwc").id == "3a-inference-bf16-nhwc-b32-fused"


def test_select_filters_and_keeps_order():
    cases = grid("quick", "cpu")
    chosen = select(cases, targets=("3a", "network"), impls=("fused",), batches=(1,))
    assert [c.id for c in chosen] == [c.id for c in cases if c.target in ("3a", "network") and c.impl == "fused"
                                      and c.batch == 1]
    assert select(cases, contains="fp16") == [c for c in cases if c.dtype == "fp16"]
    assert select(cases, dtypes=("fp64",)) == []


# ----------------------------------------------------------------------------------------------- workbench


def test_workbench_measures_a_case_with_its_floor_and_numerics():
    bench = benchrun.Workbench(CPU, ceilings(), quick_settings())
    outcome = bench.run(Case("5a", "inference", "fused", 2, "fp32", "nhwc"))
    assert outcome.status == "ok" and len(outcome.samples) == 2 and all(s > 0 for s in outcome.samples)
    info = outcome.extra_info
    assert info["case"] == "5a-inference-fp32-nhwc-b2-fused" and info["rotation"] == benchrun.ROTATION >= 3
    assert info["flops"] == BLOCKS_BY_NAME["5a"].flops(2)
    assert info["min_bytes"] == roofline.block_min_bytes(BLOCKS_BY_NAME["5a"], 2, torch.float32)
    floor = max(info["flops"] / 1e11, info["min_bytes"] / 1e10)
    assert info["floor_s"] == pytest.approx(floor)
    assert info["roofline_fraction"] == pytest.approx(floor / statistics.median(outcome.samples))
    assert info["numerics_passed"] is True and info["numerics_error"] <= info["numerics_bound"]
    assert info["first_call_s"] > 0


def test_workbench_training_step():
    bench = benchrun.Workbench(CPU, ceilings(), quick_settings())
    outcome = bench.run(Case("5b", "training", "fused", 1, "fp32", "nhwc"))
    assert outcome.status == "ok"
    assert outcome.extra_info["flops"] == 3 * BLOCKS_BY_NAME["5b"].flops(1)
    assert outcome.extra_info["peak_memory_bytes"] is None  # CUDA only
    assert "numerics_passed" not in outcome.extra_info


def test_workbench_skips_with_reasons():
    bench = benchrun.Workbench(CPU, ceilings(), quick_settings())
    for impl in benchcases.CUDA_GRAPH_IMPLS:
        graph = bench.run(Case("3a", "inference", impl, 1, "fp32", "nhwc"))
        assert graph.status == "skipped" and graph.skip_reason == "CUDA graphs need a CUDA device", impl
    tuned = bench.run(Case("3a", "inference", "compile-max-autotune", 1, "fp32", "nhwc"))
    assert tuned.status == "skipped" and "--max-autotune" in tuned.skip_reason


def test_workbench_records_a_broken_case_and_goes_on(monkeypatch):
    def broken(self, x):
        raise RuntimeError("kernel exploded")

    bench = benchrun.Workbench(CPU, ceilings(), quick_settings())
    monkeypatch.setattr(FusedInception, "forward", broken)
    failed = bench.run(Case("5a", "inference", "fused", 1, "fp32", "nhwc"))
    assert failed.status == "failed" and failed.error == "RuntimeError: kernel exploded"
    assert bench.run(Case("5a", "inference", "eager", 1, "fp32", "nhwc")).status == "ok"


def test_workbench_flags_a_fast_wrong_result(monkeypatch):
    real = FusedInception.forward
    monkeypatch.setattr(FusedInception, "forward", lambda self, x: real(self, x) * 1.001)
    outcome = benchrun.Workbench(CPU, ceilings(), quick_settings()).run(
        Case("5a", "inference", "fused", 1, "fp32", "nhwc"))
    assert outcome.status == "ok" and outcome.extra_info["numerics_passed"] is False


@pytest.mark.slow
def test_workbench_compile_case_compiles():
    torch._dynamo.utils.counters.clear()
    outcome = benchrun.Workbench(CPU, ceilings(), quick_settings()).run(
        Case("5a", "inference", "compile", 1, "fp32", "nhwc"))
    assert outcome.status == "ok", outcome.error
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert outcome.extra_info["numerics_passed"] is True


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_workbench_on_cuda_graphs_events_and_peak_memory():
    device = torch.device("cuda")
    ceilings_cuda = roofline.measure_ceilings(device, {"bf16": torch.bfloat16}, matmul_size=2048,
                                              copy_bytes=64 << 20, repeats=3)
    bench = benchrun.Workbench(device, ceilings_cuda, benchrun.Settings.for_run("cuda", "default", rounds=5))
    for impl in ("fused", "fused-cudagraph", "eager", "eager-cudagraph"):
        result = bench.run(Case("3a", "inference", impl, 2, "bf16", "nhwc"))
        assert result.status == "ok", result.error
        assert len(result.samples) == 5 and result.extra_info["numerics_passed"] is True, impl
    training = bench.run(Case("3a", "training", "fused", 2, "bf16", "nhwc"))
    assert training.status == "ok", training.error
    assert training.extra_info["peak_memory_bytes"] > 0


def test_settings_validate_overrides():
    assert quick_settings().heavy_rounds <= 2
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        benchrun.Settings.for_run("cpu", "quick", rounds=0)


# --------------------------------------------------------------------------------------- document / report


def outcome(target, impl, batch, samples, mode="inference", dtype="fp32", **extra):
    """A hand-made Outcome whose extra_info is computed like the Workbench's, from `ceilings()`."""
    case = Case(target, mode, impl, batch, dtype, "nhwc")
    flops, min_bytes = 1e9 * batch, 1e7 * batch  # compute-bound: 10 ms * batch at 100 GFLOP/s
    c = ceilings()
    floor = roofline.floor(flops, min_bytes, c.peak_flops(dtype), c.copy_bytes_per_s)
    info = {**case.as_dict(), "case": case.id, "device": "cpu", "rotation": 3, "flops": flops,
            "min_bytes": min_bytes, "peak_flops_per_s": c.peak_flops(dtype), "peak_bytes_per_s": c.copy_bytes_per_s,
            "floor_s": floor.seconds, "bound": floor.bound,
            "roofline_fraction": floor.fraction(statistics.median(samples)), **extra}
    return benchrun.Outcome(case, list(samples), info)


def hand_document():
    outcomes = [
        outcome("3a", "eager", 1, [0.040, 0.041, 0.039], numerics_passed=True),
        outcome("3a", "fused", 1, [0.020, 0.021, 0.019], numerics_passed=True),   # 2x, floor 10 ms: 50%
        outcome("3a", "eager", 4, [0.080, 0.080, 0.080], numerics_passed=True),
        outcome("3a", "fused", 4, [0.100, 0.100, 0.100], numerics_passed=False, numerics_error=1.0,
                numerics_bound=0.1),
        outcome("network", "eager", 1, [0.5, 0.5]),
        outcome("network", "fused", 1, [0.25, 0.25]),
        outcome("3a", "eager", 2, [0.05, 0.05], mode="training", peak_memory_bytes=64 << 20),
        outcome("3a", "fused", 2, [0.04, 0.04], mode="training", peak_memory_bytes=32 << 20),
        benchrun.Outcome(Case("3a", "inference", "eager-cudagraph", 1, "fp32", "nhwc"),
                         skip_reason="CUDA graphs need a CUDA device"),
        benchrun.Outcome(Case("3a", "inference", "compile", 1, "fp32", "nhwc"), error="RuntimeError: boom"),
    ]
    env = benchrun.environment(CPU)
    return benchrun.document(outcomes, env, ceilings(), quick_settings(), "quick", elapsed_s=1.0)


def test_document_has_pytest_benchmarks_layout():
    doc = hand_document()
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version", "fused_inception"}
    assert len(doc["benchmarks"]) == 8
    entry = doc["benchmarks"][1]
    assert entry["name"] == "3a-inference-fp32-nhwc-b1-fused" and entry["group"] == "3a inference fp32 nhwc batch 1"
    assert entry["stats"]["median"] == pytest.approx(0.020) and entry["stats"]["rounds"] == 3
    assert entry["stats"]["data"] == [0.020, 0.021, 0.019] and entry["stats"]["iterations"] == 1
    assert {"min", "max", "mean", "stddev", "iqr", "ops"} <= set(entry["stats"])
    section = doc["fused_inception"]
    assert section["schema"] == benchrun.SCHEMA_VERSION and section["profile"] == "quick"
    assert [(n["case"], n["status"]) for n in section["not_run"]] == [
        ("3a-inference-fp32-nhwc-b1-eager-cudagraph", "skipped"), ("3a-inference-fp32-nhwc-b1-compile", "failed")]
    env = section["environment"]
    assert {"device_name", "torch", "cuda", "commit", "date", "fused_inception_backend"} <= set(env)
    json.dumps(doc)  # serialisable as it is


def test_markdown_table_from_a_hand_made_document():
    text = report.markdown(report.from_document(hand_document()))
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("| 3a |") or line.startswith("| network |")]
    # Inference rows: floor, then fused, eager, eager + CUDA graph, torch.compile cells.
    assert rows[0] == "| 3a | 1 | 10 ms (c) | 20 ms · 2.00x · 50% | 40 ms · 1.00x · 25% | — | — |"
    assert rows[1] == ("| 3a | 4 | 40 ms (c) | 100 ms · 0.80x · 40% · **numerics FAIL** | 80 ms · 1.00x · 50% "
                       "| — | — |")
    assert rows[2] == "| network | 1 | 10 ms (c) | 250 ms · 2.00x · 4% | 500 ms · 1.00x · 2% | — | — |"
    # Training: peak memory columns.
    assert rows[3] == "| 3a | 2 | 20 ms (c) | 40 ms · 1.25x · 50% | 50 ms · 1.00x · 40% | 32 MiB | 64 MiB |"
    assert "| block | batch | floor | fused | eager | fused peak memory | eager peak memory |" in lines
    assert "## Inference (forward), fp32, channels_last" in lines
    assert "- FAIL 3a-inference-fp32-nhwc-b4-fused: error 1 > bound 0.1" in lines
    assert "- 1 eager + CUDA graph case(s) skipped: CUDA graphs need a CUDA device" in lines
    assert "- 1 torch.compile case(s) failed: RuntimeError: boom" in lines
    assert "Numerics: 3 of 4 inference results" in text


def png_size(path):
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_report_command_reproduces_the_table_and_draws_the_plots(tmp_path, capsys):
    doc = hand_document()
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "rendered"
    assert cli.main(["report", str(path), "--out", str(out)]) == 0
    expected = report.markdown(report.from_document(doc))
    assert (out / "bench.md").read_text() == expected
    assert expected in capsys.readouterr().out
    for name in ("speedup.png", "roofline.png"):
        width, height = png_size(out / name)
        assert width > 600 and height > 300 and (out / name).stat().st_size > 10_000


def test_report_says_which_plot_failed_and_keeps_the_rest(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(hand_document()))

    def broken(results, path):
        raise ValueError("no axes today")

    monkeypatch.setattr(report, "plot_roofline", broken)
    assert report.main([str(path)]) == 1
    assert "report: roofline.png not drawn: ValueError: no axes today" in capsys.readouterr().err
    assert (tmp_path / "bench.md").exists() and png_size(tmp_path / "speedup.png")[0] > 600
    assert not (tmp_path / "roofline.png").exists()


def test_report_rejects_what_is_not_a_result(tmp_path, capsys):
    cases = {"missing.json": None, "broken.json": "{", "list.json": "[]",
             "foreign.json": json.dumps({"benchmarks": [{"name": "x", "extra_info": {}, "stats": {"median": 1}}]}),
             "partial.json": json.dumps({"benchmarks": [{"name": "x", "extra_info": {"case": "x"},
                                                         "stats": {"median": 1}}]})}
    messages = {"missing.json": "no such file", "broken.json": "not valid JSON", "list.json": "no 'benchmarks' list",
                "foreign.json": "no fused_inception benchmark", "partial.json": "lacks target, mode"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        assert report.main([str(tmp_path / name)]) == 2
        assert messages[name] in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "broken.json"), "--formats", "pdf"])
    assert "choose from json, md, png" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- bench CLI


def run_bench(*args):
    return cli.main(["bench", "--device", "cpu", *args])


def test_bench_writes_json_table_and_plots(tmp_path, capsys):
    out = tmp_path / "results"
    cudnn_benchmark = torch.backends.cudnn.benchmark
    code = run_bench("--quick", "--targets", "5a,5b", "--batch", "1", "--impl", "fused,eager,eager-cudagraph",
                     "--out", str(out))
    assert code == 0
    assert torch.backends.cudnn.benchmark == cudnn_benchmark  # turned on for the run only
    doc = json.loads((out / "bench.json").read_text())
    assert [b["name"] for b in doc["benchmarks"]] == [
        f"{t}-inference-fp32-nhwc-b1-{i}" for t in ("5a", "5b") for i in ("fused", "eager")]
    assert {n["reason"] for n in doc["fused_inception"]["not_run"]} == {"CUDA graphs need a CUDA device"}
    assert set(doc["fused_inception"]["ceilings"]["matmul_flops_per_s"]) == {"fp32", "bf16"}
    # The bench command's table is exactly what the report command renders from its JSON.
    assert (out / "bench.md").read_text() == report.markdown(report.load(str(out / "bench.json")))
    for name in ("speedup.png", "roofline.png"):
        assert png_size(out / name)[0] > 600
    captured = capsys.readouterr()
    assert "| 5b | 1 |" in captured.out and "4 measured, 2 skipped, 0 failed" in captured.out
    assert "6/6" in captured.err  # the progress bar reached the end


def test_bench_formats_and_budget(tmp_path):
    out = tmp_path / "budget"
    assert run_bench("--quick", "--targets", "3a", "--budget", "0.001", "--formats", "json", "--out", str(out)) == 0
    assert sorted(os.listdir(out)) == ["bench.json"]
    doc = json.loads((out / "bench.json").read_text())
    assert doc["benchmarks"] == [] and doc["fused_inception"]["budget_s"] == 0.001
    reasons = {n["case"]: n["reason"] for n in doc["fused_inception"]["not_run"]}
    assert len(reasons) == len(select(grid("quick", "cpu"), targets=("3a",)))
    for case, reason in reasons.items():  # a case that cannot run here keeps that reason
        assert reason == ("CUDA graphs need a CUDA device" if case.endswith("eager-cudagraph") else
                          "not started: it would end past the 0.001 s time budget"), case


def test_budget_guesses_from_past_cases_of_the_same_kind():
    budget = Budget(10.0, started=0.0)
    block = Case("3a", "inference", "fused", 1, "fp32", "nhwc")
    compiled = Case("3a", "inference", "compile", 1, "fp32", "nhwc")
    network = Case("network", "inference", "compile", 1, "fp32", "nhwc")
    assert budget.allows(block, now=7.0) and not budget.allows(compiled, now=0.0)  # compile's first guess: 60 s
    budget.record(compiled, 5.0)
    assert budget.allows(compiled, now=0.0) and not budget.allows(network, now=0.0)  # the network's is its own
    budget.record(block, 4.0)
    budget.record(block, 2.0)
    assert budget.guess(block) == 3.0 and budget.allows(block, now=7.0) and not budget.allows(block, now=7.5)
    assert Budget(None, 0.0).allows(compiled, now=1e9)


def test_bench_lists_the_selection(capsys):
    assert run_bench("--quick", "--targets", "network", "--mode", "training", "--list") == 0
    assert capsys.readouterr().out.split() == ["network-training-fp32-nhwc-b1-fused",
                                               "network-training-fp32-nhwc-b1-eager"]


@pytest.mark.parametrize("args, message", [
    (["--targets", "3a,3x"], "unknown target '3x' (choose from 3a, 3b"),
    (["--batch", "0"], "batch size must be a positive integer"),
    (["--batch", "two"], "'two' is not a batch size"),
    (["--impl", "tensorrt"], "unknown implementation 'tensorrt'"),
    (["--formats", "json,xml"], "choose from json, md, png"),
    (["--budget", "-5"], "must be positive"),
    (["--profile", "full"], "--quick is the quick profile; it cannot be combined with --profile full"),
    (["--targets", "3a", "--dtype", "bf16", "--memory-format", "nchw"], "no case of the quick profile matches"),
    (["--rounds", "0"], "rounds must be >= 1"),
])
def test_bench_rejects_bad_input(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_bench("--quick", *args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_rejects_an_unknown_device(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--quick", "--device", "mps"])
    assert exit_info.value.code == 2
    assert "only cpu and cuda are benchmarked" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--quick", "--device", "gpu0"])
    assert "--device gpu0: not a device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_bench_refuses_cuda_without_a_device(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--device", "cuda"])
    assert "no CUDA device is available here" in capsys.readouterr().err


def test_cli_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("demo", "bench", "report"))
    assert cli.main(["benchmark"]) == 2
    assert "unknown command 'benchmark'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the pytest-benchmark suite


def test_pytest_benchmark_suite_writes_json_the_report_reads(tmp_path):
    path = tmp_path / "suite.json"
    # Run outside the checkout, importing the fused_inception this process imports (installed or in place).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fused_inception.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    # Under pytest-xdist this process is a worker: a child that inherits PYTEST_XDIST_WORKER is taken for one,
    # and pytest-benchmark then disables itself (no JSON written).
    env = {key: value for key, value in env.items()
           if not key.startswith("PYTEST_XDIST_") and key != "PYTEST_CURRENT_TEST"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", os.path.join(REPO, "benchmarks"), "-q", "-p", "no:cacheprovider",
         "--bench-device", "cpu", "--bench-profile", "quick", "-k", "5a-inference-fp32-nhwc-b1",
         f"--benchmark-json={path}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 1 skipped" in result.stdout
    results = report.load(str(path))
    assert sorted(r.impl for r in results.records) == ["eager", "fused"]
    assert [n["reason"] for n in results.not_run] == ["CUDA graphs need a CUDA device"]
    assert results.environment["commit"] and results.meta["ceilings"]["copy_bytes_per_s"] > 0
    fused = next(r for r in results.records if r.impl == "fused")
    assert fused.rounds == benchrun.Settings.for_run("cpu", "quick").rounds
    assert "| 5a | 1 |" in report.markdown(results)
