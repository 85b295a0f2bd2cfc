"""The package itself: build configuration, the GoogLeNet table, the numerics helpers."""

import importlib
import os
import shutil
import subprocess
import sys

import pytest
import torch

import fused_inception
from fused_inception.testing import check_numerics, max_abs_error

# MFLOP per image (2 * MAC) of each block, from the paper's Table 1 as given in the project brief.
PAPER_MFLOP = {"3a": 256, "3b": 609, "4a": 147, "4b": 176, "4c": 200, "4d": 237, "4e": 340, "5a": 102, "5b": 141}


def test_googlenet_table_matches_paper_flops():
    assert [c.name for c in fused_inception.GOOGLENET_BLOCKS] == list(PAPER_MFLOP)
    for config in fused_inception.GOOGLENET_BLOCKS:
        assert round(config.flops() / 1e6) == pytest.approx(PAPER_MFLOP[config.name], abs=1), config.name


def test_googlenet_table_chains():
    blocks = fused_inception.GOOGLENET_BLOCKS
    for previous, block in zip(blocks, blocks[1:]):
        assert block.in_channels == previous.out_channels, block.name
    assert blocks[-1].out_channels == 1024


def test_build_info_reports_configuration():
    info = fused_inception.build_info()
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["supported_kernel_sizes"] == (3, 5)
    has_cuda_kernel = torch._C._dispatch_has_kernel_for_dispatch_key(
        "fused_inception::inception_forward", "CUDA")
    assert has_cuda_kernel == info["with_cuda"]
    if info["with_cuda"]:
        assert info["cuda_arch_list"]


@pytest.mark.build
@pytest.mark.skipif(os.environ.get("FUSED_INCEPTION_EXPECT_CUDA_BUILD") != "1",
                    reason="set FUSED_INCEPTION_EXPECT_CUDA_BUILD=1 where the build must include CUDA (CI does)")
def test_cuda_sources_were_built():
    assert fused_inception.build_info()["with_cuda"], "nvcc and a CUDA torch are present, yet CUDA was not built"


def test_import_without_cuda_device_works():
    # The CI machine has no GPU: importing and running on CPU must not touch CUDA.
    code = "import fused_inception, torch; b = fused_inception.FusedInception(4, 1, 1, 1, 1, 1, 1); " \
           "print(b(torch.randn(1, 4, 3, 3)).shape)"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "torch.Size([1, 4, 3, 3])" in out.stdout


@pytest.mark.build
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils) to list the extension's symbols")
def test_extension_uses_the_shared_libstdcxx():
    # A static copy of libstdc++ inside _C (a compiler that links it statically by default) broke iostreams
    # in the process torch shares with it: import segfaulted on the H200 image (setup.py's -lstdc++).
    library = importlib.import_module("fused_inception._C").__file__
    symbols = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True,
                             check=True).stdout
    core = [line.split()[-1] for line in symbols.splitlines()
            if line.split()[-1].startswith(("_ZNSt6locale", "_ZNSt8ios_base", "_ZNSi", "_ZNSo"))]
    assert not core, f"{library} defines libstdc++'s own symbols (a static copy): {core[:5]}"


def test_max_abs_error_flags_nan_mismatch():
    reference = torch.tensor([1.0, 2.0, float("nan")], dtype=torch.float64)
    assert max_abs_error(torch.tensor([1.0, 2.5, float("nan")]), reference) == 0.5
    assert max_abs_error(torch.tensor([1.0, float("nan"), float("nan")]), reference) == float("inf")
    assert max_abs_error(torch.tensor([1.0, 2.0, 3.0]), reference) == float("inf")


def test_numerics_rule_bound():
    reference = torch.linspace(-2, 2, 101, dtype=torch.float64)
    unfused = (reference + 1e-3).float()
    assert check_numerics((reference + 1.9e-3).float(), unfused, reference).passed
    assert not check_numerics((reference + 2.1e-3).float(), unfused, reference).passed
    exact = reference.float()  # unfused exact: the floor (half an epsilon of the magnitude) applies
    assert not check_numerics((reference + 1e-6).float(), exact, reference).passed
