"""The benchmark cases (fused_inception.bench.benchcases) as pytest-benchmark tests.

Each test runs its case through the same Workbench as `python -m fused_inception bench` (warm-up, rotated
inputs, CUDA events on a GPU, the float64 numerics check) and hands the timed samples to pytest-benchmark, so
its tables, --benchmark-json and `pytest-benchmark compare` show the same numbers the bench command writes.
Cases that cannot run here skip with the reason. Nothing here asserts a time.
"""

import pytest

from fused_inception.bench import benchrun


def _record_samples(benchmark, samples):
    # pytest-benchmark times with a host clock around each call; on a GPU that would add a synchronisation to
    # every sample. The Workbench times with CUDA events instead, and its samples go into the fixture's stats:
    # the Metadata object benchmark.pedantic fills, through the two private members pedantic itself uses
    # (pytest-benchmark 3.x to 5.x).
    try:
        benchmark._mode = "fused_inception.bench.benchrun.Workbench"
        stats = benchmark._make_stats(1)
    except AttributeError as error:
        pytest.fail(f"this pytest-benchmark version lacks the fixture internals the suite uses ({error}); "
                    "run `python -m fused_inception bench` instead, which writes the same JSON")
    for sample in samples:
        stats.update(sample)


def test_case(benchmark, workbench, not_run, case):
    outcome = workbench.run(case)
    if outcome.status != "ok":
        not_run.append(outcome)
    if outcome.status == "skipped":
        pytest.skip(outcome.skip_reason)
    if outcome.status == "failed":
        pytest.fail(f"{case.id}: {outcome.error}")
    benchmark.group = benchrun.group_name(case)
    benchmark.extra_info.update(outcome.extra_info)
    if benchmark.enabled:
        _record_samples(benchmark, outcome.samples)
    # Numerics are part of a benchmark result, not a timing: an implementation that is fast and wrong fails.
    if outcome.extra_info.get("numerics_passed") is False:
        pytest.fail(f"{case.id}: error {outcome.extra_info['numerics_error']:.3g} against float64 exceeds the "
                    f"bound {outcome.extra_info['numerics_bound']:.3g}")
