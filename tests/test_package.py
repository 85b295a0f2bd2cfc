"""The package itself: build configuration, the GoogLeNet table, the numerics helpers."""

import ast
import importlib
import os
import shutil
import subprocess
import sys

import pytest
import torch

import fused_inception
from fused_inception.testing import assert_network_gradient_numerics, check_numerics, max_abs_error

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


def setup_py_function(name):
    """One function of setup.py, without running setup.py (which builds)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
    tree = ast.parse(open(path).read())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in (name, "log")]
    namespace = {"os": os, "sys": sys}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    return namespace[name]


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("g++") is None or shutil.which("nm") is None,
                    reason="needs Linux, g++ and nm")
def test_link_args_take_the_shared_libstdcxx_where_a_folder_holds_only_the_archive(tmp_path):
    # The H200 image's compiler folder holds libstdc++.a alone: -Wl,-Bdynamic -lstdc++ linked that archive
    # (the linker takes the first folder holding either file). setup.py's arguments must not.
    archive = subprocess.run(["g++", "-print-file-name=libstdc++.a"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(archive):
        pytest.skip("this g++ has no libstdc++.a to stand in for the image's folder")
    archive_only = tmp_path / "archive-only"
    archive_only.mkdir()
    shutil.copy(archive, archive_only / "libstdc++.a")
    source = tmp_path / "streams.cpp"
    source.write_text("#include <sstream>\nint parse(const char* s) { std::istringstream in(s); int v = 0; "
                      "in >> v; std::ostringstream out; out << v; return (int)out.str().size(); }\n")
    subprocess.run(["g++", "-fPIC", "-O2", "-c", str(source), "-o", str(tmp_path / "streams.o")], check=True)

    def static_stream_symbols(link_args):
        library = tmp_path / "streams.so"
        subprocess.run(["g++", "-shared", str(tmp_path / "streams.o"), f"-L{archive_only}", "-o", str(library),
                        *link_args], check=True)
        symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                                 check=True).stdout
        return [line for line in symbols.splitlines() if line.split()[-1].startswith(("_ZNSi", "_ZNSo"))]

    assert static_stream_symbols(["-Wl,-Bdynamic", "-lstdc++"]), "the old arguments should reproduce the image"
    assert not static_stream_symbols(setup_py_function("shared_libstdcxx_link_args")())


def test_network_gradient_rule_catches_a_wrong_tensor_and_a_wrong_whole():
    generator = torch.Generator().manual_seed(0)
    reference = {"big": torch.randn(1000, generator=generator, dtype=torch.float64),
                 "small": 1e-7 * torch.randn(10, generator=generator, dtype=torch.float64)}

    def rounded(noise):  # float32 copies of the reference with relative noise of this size
        return {n: (r * (1 + noise * torch.randn(r.shape, generator=generator, dtype=torch.float64))).float()
                for n, r in reference.items()}

    unfused = [rounded(1e-6), rounded(1e-6)]
    assert_network_gradient_numerics(rounded(1e-6), unfused, reference)
    missing_small = dict(rounded(1e-6), small=torch.zeros(10))  # the whole barely moves; the tensor is wrong
    with pytest.raises(AssertionError, match="grad small"):
        assert_network_gradient_numerics(missing_small, unfused, reference)
    with pytest.raises(AssertionError, match="whole gradient"):
        assert_network_gradient_numerics(rounded(1e-4), unfused, reference)
    with pytest.raises(AssertionError, match="names differ"):
        assert_network_gradient_numerics({"big": reference["big"].float()}, unfused, reference)


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
