"""pytest-benchmark options and fixtures for the case table in fused_inception.bench.benchcases.

    python -m pytest benchmarks --benchmark-json=out.json                  # the default profile for the device
    python -m pytest benchmarks --bench-profile quick -k "3a and fused"     # a subset (pytest's -k on case ids)
    python -m pytest benchmarks --benchmark-disable                         # run each case, keep no numbers
    python -m fused_inception report out.json --out folder/               # the table and plots from it
"""

import pytest
import torch

from fused_inception.bench import benchcases, benchrun

_STATE = pytest.StashKey()  # {"device", "profile", "workbench", "not_run"} of this session


def pytest_addoption(parser):
    group = parser.getgroup("fused_inception", "fused_inception benchmark cases")
    group.addoption("--bench-device", choices=("cpu", "cuda"), default=None,
                    help="device to benchmark (default: cuda when present, else cpu)")
    group.addoption("--bench-profile", choices=benchcases.PROFILES, default=None,
                    help="case set (default: 'default' on CUDA, 'quick' on CPU)")
    group.addoption("--bench-max-autotune", action="store_true",
                    help="run the torch.compile max-autotune cases (minutes per shape)")


def pytest_configure(config):
    device = config.getoption("--bench-device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda: no CUDA device is available here")
    profile = config.getoption("--bench-profile") or ("default" if device == "cuda" else "quick")
    config.stash[_STATE] = {"device": device, "profile": profile, "workbench": None, "not_run": []}


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        state = metafunc.config.stash[_STATE]
        cases = benchcases.grid(state["profile"], state["device"])
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def workbench(request):
    """One Workbench per session; the ceilings are measured once, for the dtypes of the selected cases."""
    state = request.config.stash[_STATE]
    if state["workbench"] is None:
        cases = [item.callspec.params["case"] for item in request.session.items if hasattr(item, "callspec")]
        device = state["device"]
        settings = benchrun.Settings.for_run(device, state["profile"],
                                             max_autotune=request.config.getoption("--bench-max-autotune"))
        torch.backends.cudnn.benchmark = True  # as the bench command: eager gets cuDNN's autotuner
        state["workbench"] = benchrun.Workbench(device, benchrun.ceilings_for(cases, device), settings)
    return state["workbench"]


@pytest.fixture
def not_run(request):
    """Cases that skip or fail are listed in the JSON's fused_inception.not_run, as the bench command does."""
    return request.config.stash[_STATE]["not_run"]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    state = config.stash[_STATE]
    if state["workbench"] is not None:
        bench = state["workbench"]
        output_json["fused_inception"] = benchrun.section(
            benchrun.environment(bench.device), bench.ceilings, bench.settings, state["profile"], state["not_run"])
