"""pytest-benchmark options and fixtures for the case table in fused_inception.benchcases.

    python -m pytest benchmarks --benchmark-json=out.json                  # the default profile for the device
    python -m pytest benchmarks --bench-profile quick -k "3a and fused"     # a subset (pytest's -k on case ids)
    python -m fused_inception report out.json --out folder/               # the table and plots from it
"""

import pytest
import torch

from fused_inception import benchcases, benchrun

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_STATE = pytest.StashKey()  # {"profile", "workbench", "not_run"} of this session


def pytest_addoption(parser):
    group = parser.getgroup("fused_inception", "fused_inception benchmark cases")
    group.addoption("--bench-profile", choices=benchcases.PROFILES, default=None,
                    help="case set (default: 'default' on CUDA, 'quick' on CPU)")
    group.addoption("--bench-max-autotune", action="store_true",
                    help="run the torch.compile max-autotune cases (minutes per shape)")


def _profile(config):
    return config.getoption("--bench-profile") or ("default" if DEVICE == "cuda" else "quick")


def pytest_configure(config):
    config.stash[_STATE] = {"profile": _profile(config), "workbench": None, "not_run": []}


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = benchcases.grid(_profile(metafunc.config), DEVICE)
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def workbench(request):
    """One Workbench per session; the ceilings are measured once, for the dtypes of the selected cases."""
    state = request.config.stash[_STATE]
    if state["workbench"] is None:
        cases = [item.callspec.params["case"] for item in request.session.items if hasattr(item, "callspec")]
        profile = state["profile"]
        settings = benchrun.Settings.for_run(DEVICE, profile,
                                             max_autotune=request.config.getoption("--bench-max-autotune"))
        torch.backends.cudnn.benchmark = True  # as the bench command: eager gets cuDNN's autotuner
        state["workbench"] = benchrun.Workbench(DEVICE, benchrun.ceilings_for(cases, DEVICE), settings)
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
