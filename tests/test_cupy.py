"""The CuPy path: the kernel source compiled at run time with NVRTC, launched from Python.

Without a GPU (here, CI): every instantiation compiles with NVRTC from the headers the package ships, and the
Python launch code (parameter bytes, plan) is held against the C++ and run through the emulator.
With a GPU and CuPy: CuPy results equal the extension's bit for bit and pass the numerics rule.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MEMORY_FORMATS, allow_tf32, make_block, make_input, op_params

import fused_inception
from fused_inception.kernel import launch
from fused_inception.kernel import source as kernel_source
from fused_inception.testing import assert_numerics, float64_copy, racecheck, unfused_tf32

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_nvrtc = pytest.mark.skipif(importlib.util.find_spec("cuda") is None or
                                 importlib.util.find_spec("cuda.bindings") is None,
                                 reason="cuda-bindings (NVRTC's Python bindings) is not installed")
needs_cupy_gpu = pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("cupy") is None,
                                    reason="needs a CUDA device and CuPy (the launch code is checked on CPU above, "
                                           "through the emulator)")
MODES = {"f16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32, "f32": torch.float32}


def block_shape(block):
    return launch.BlockShape(*block.block_args, *block.kernel_sizes)


# ---- without a GPU ----------------------------------------------------------------------------------------

@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_every_instantiation_compiles_with_nvrtc(arch):
    lowered = kernel_source.compile_with_nvrtc(arch)
    assert set(lowered) == set(kernel_source.KERNEL_NAMES)
    assert all(name.startswith("_ZN15fused_inception3gpu9inception16inception_kernel") for name in lowered.values())


def test_packaged_headers_are_what_the_kernel_includes(tmp_path):
    # build_py installs the headers the kernel reaches; the CuPy path reads them from there.
    env = dict(os.environ, FUSED_INCEPTION_EXTENSION="0")
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=REPO, env=env,
                   check=True, capture_output=True)
    include = tmp_path / "fused_inception" / "include"
    for header in ("kernels/inception_kernel.h", "kernels/inception_params.h", "inception_shape.h", "simt/simt.h",
                   "simt/integers.h"):
        assert (include / header).read_text() == open(os.path.join(REPO, "csrc", header)).read()


def test_min_compute_capability_matches_cpp():
    # The CuPy path refuses devices below launch.MIN_COMPUTE_CAPABILITY; the extension decides in C++.
    def runs(major, minor):
        return torch.ops.fused_inception._fused_kernel_support(major, minor, "7.0+PTX")[0]

    major, minor = launch.MIN_COMPUTE_CAPABILITY
    assert runs(major, minor) and not runs(*((major, minor - 1) if minor else (major - 1, 9)))


def test_params_layout_matches_cpp():
    size, x, out, weights, view_size, *rest = torch.ops.fused_inception._fused_params_layout()
    view_offsets, offsets = rest[:4], rest[4:]
    dtype, view = launch.PARAMS_DTYPE, launch.WEIGHT_VIEW_DTYPE
    assert dtype.itemsize == size and view.itemsize == view_size
    assert [dtype.fields[name][1] for name in ("x", "out", "weights")] == [x, out, weights]
    assert [view.fields[name][1] for name in view.names[1:]] == view_offsets
    assert [dtype.fields[name][1] for name in dtype.names[3:]] == offsets


def views_of(block, keep):
    """build_params' weight descriptions of a block's parameters, through launch.in_place_rows/padded_rows (the
    CuPy path's rule); copies are appended to `keep`."""
    params, views = op_params(block), []
    for w, b in zip(params[0::2], params[1::2]):
        in_place = launch.in_place_rows(tuple(w.shape), w.stride(), w.element_size(), w.data_ptr())
        if in_place is None:
            keep.append(launch.padded_rows(torch, w))
            w, in_place = keep[-1], (keep[-1].shape[1], False)
        views.append((w.data_ptr(), b.data_ptr(), *in_place))
    return views


@pytest.mark.parametrize("layout", ["oihw", "channels_last", "odd"])
def test_in_place_rows_follows_the_host_rule(layout):
    in_channels = 5 if layout == "odd" else 16
    w = torch.randn(6, in_channels, 3, 3, dtype=torch.float16)
    if layout == "channels_last":
        w = w.contiguous(memory_format=torch.channels_last)
    got = launch.in_place_rows(tuple(w.shape), w.stride(), w.element_size(), 4096)
    assert got == {"oihw": (144, False), "channels_last": (144, True), "odd": None}[layout]
    if layout == "odd":
        rows = launch.padded_rows(torch, w)
        assert rows.shape == (6, 48) and torch.equal(rows[:, :45], w.reshape(6, 45)) and not rows[:, 45:].any()


@pytest.mark.parametrize("element_bytes", [2, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_plan_matches_cpp(element_bytes, channels_last):
    shapes = [c.block_args + (3, 5) for c in fused_inception.GOOGLENET_BLOCKS]
    shapes += [(3, 1, 2, 3, 1, 2, 1, 5, 3), (19, 7, 5, 900, 3, 6, 4, 3, 3), (8, 8, 3000, 8, 8, 8, 8, 3, 5)]
    for shape in shapes:
        s = launch.BlockShape(*shape)
        for batch, side in ((1, 7), (2, 28), (256, 14), (3, 1)):
            expected = torch.ops.fused_inception._fused_plan(list(shape), batch, side, side + 1, element_bytes,
                                                             channels_last, 132, 227 * 1024, 8 * 1024)
            c = s.in_channels
            strides = [c * side * (side + 1), 1, (side + 1) * c, c] if channels_last else \
                [c * side * (side + 1), side * (side + 1), side + 1, 1]
            try:
                params, grid, smem = launch.build_params(
                    s, x_ptr=4096, out_ptr=4096, batch=batch, height=side, width=side + 1,
                    weights=[(4096, 4096, 8 * 1024, False)] * 6,
                    x_strides=strides, out_strides=strides, element_bytes=element_bytes, sm_count=132,
                    shared_memory_limit=227 * 1024)
            except launch.UnsupportedCase:
                assert expected[0] == 0, (shape, batch)
                continue
            got = [1, int(params["channel_chunk"]), int(params["num_tasks"]), int(params["tiles_h"]),
                   int(params["tiles_w"]), int(params["reduced_elements"]), smem, int(params["x_vectorized"]),
                   int(params["band_tiles"]), int(params["cluster_ctas"])]
            assert got == expected, (shape, batch, side)  # CuPy launches no clusters, as on a device without
            assert grid == (batch * got[3] * got[4] * got[2], 1)  # one dimension: (tile, task) in bands
            # On a device with clusters (the op's rule, which fused_inception.plan models): the same plan but
            # for the cluster size.
            with_clusters = torch.ops.fused_inception._fused_plan(
                list(shape), batch, side, side + 1, element_bytes, channels_last, 132, 227 * 1024, 8 * 1024, True)
            assert with_clusters[:9] == expected[:9]
            assert with_clusters[9] == launch.plan_cluster_ctas(s, got[1], True), (shape, batch, side)


def test_block_shape_names_the_bad_weight():
    weights = [w.numpy() for w in op_params(make_block((8, 4, 6, 8, 2, 4, 3)))]
    weights[4] = np.zeros((8, 5, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"w3 must have 6 input channels"):
        launch.block_shape(weights)
    weights = [w.numpy() for w in op_params(make_block((8, 4, 6, 8, 2, 4, 3)))]
    weights[11] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"bp must be 1-D with 3 elements"):
        launch.block_shape(weights)
    weights = [w.numpy() for w in op_params(make_block((8, 4, 6, 8, 2, 4, 3)))]
    weights[6], weights[7], weights[8] = np.zeros((0, 8, 1, 1), np.float32), np.zeros(0, np.float32), \
        np.zeros((4, 0, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"w5r must have at least one input and one output channel"):
        launch.block_shape(weights)


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("mode", MODES)
def test_python_built_launch_runs_under_the_emulator(mode, memory_format):
    """The CuPy path's parameters, built in Python, drive the kernel (emulated here) to a correct output."""
    dtype = MODES[mode]
    block = make_block((24, 7, 5, 9, 3, 6, 4), (3, 5), dtype=dtype)
    x = make_input(2, 24, 9, 11, dtype=dtype, memory_format=memory_format)
    weights, copies = op_params(block), []
    # NaN where the kernel writes nothing
    out = torch.full((2, block.out_channels, 9, 11), float("nan"), dtype=dtype).contiguous(memory_format=memory_format)
    params, _, _ = launch.build_params(
        block_shape(block), x_ptr=x.data_ptr(), out_ptr=out.data_ptr(), weights=views_of(block, copies), batch=2,
        height=9, width=11, x_strides=list(x.stride()), out_strides=list(out.stride()),
        element_bytes=x.element_size(), sm_count=132, shared_memory_limit=227 * 1024)
    assert params["band_tiles"] == 8  # one band of the 2 x 2 x 2 tiles; run bands of 3 (3 + 3 + 2) instead
    params["band_tiles"] = 3
    with racecheck():
        torch.ops.fused_inception._simt_launch_params(torch.from_numpy(params.reshape(1).view(np.uint8)), mode)
    with torch.no_grad():
        unfused = unfused_tf32(block, x) if mode == "tf32" else block(x)
        reference = float64_copy(block)(x.double())
    assert_numerics(out, unfused, reference)


def test_the_cupy_path_needs_no_extension(tmp_path):
    """Installed without the extension, fused_inception.kernel (launch parameters, NVRTC source) imports; torch
    names say why they are missing."""
    package = tmp_path / "fused_inception"
    package.mkdir()
    (package / "kernel").mkdir()
    for name in ("__init__.py", "kernel/__init__.py", "kernel/launch.py", "kernel/source.py"):
        (package / name).write_text(open(os.path.join(REPO, "fused_inception", name)).read())
    # An editable install's finder would resolve the real package (and its _C) past this copy: drop it.
    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
            "import fused_inception, fused_inception.kernel.launch, fused_inception.kernel.source\n"
            "from fused_inception import kernel  # the attribute probe must not stop it\n"
            "from fused_inception.kernel import launch, source\n"
            "print('imported', fused_inception.__file__)\n"
            "try:\n    fused_inception.FusedInception\nexcept ImportError as e:\n    print('ImportError:', e)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert f"imported {package / '__init__.py'}" in result.stdout  # this copy, not an installed package
    assert "needs torch and the compiled extension" in result.stdout
    assert "fused_inception.cupy works without them" in result.stdout


class _NumpyDevice:
    id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _NumpyArray(np.ndarray):
    """What fused_inception.cupy reads of a cupy.ndarray, on NumPy: its device and data pointer."""

    @property
    def device(self):
        return _NumpyDevice()

    @property
    def data(self):
        return type("Memory", (), {"ptr": self.__array_interface__["data"][0]})


@pytest.fixture
def cupy_on_numpy(monkeypatch):
    """fused_inception.cupy imported over a NumPy stand-in for CuPy, its launch replaced by a recorder of what
    the kernel would be given: the path's host logic (routes, weight copies, output layout) without a GPU."""
    import types

    fake = types.ModuleType("cupy")
    fake.ndarray = _NumpyArray
    fake.ascontiguousarray = lambda a: np.ascontiguousarray(a).view(_NumpyArray)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "fused_inception.cupy", raising=False)  # restored (if any) at teardown
    attribute = fused_inception.__dict__.get("cupy")
    import fused_inception.cupy as fic

    launches = []

    def record(x, weights, shape, mode, windows_in_place):
        views, _ = fic._weight_views(weights, x.dtype, windows_in_place)
        launches.append((x, [taps_outer for *_, taps_outer in views]))
        n, _, h, w = x.shape
        out = (np.empty((n, h, w, shape.out_channels), x.dtype).transpose(0, 3, 1, 2) if x.strides[1] == x.itemsize
               else np.empty((n, shape.out_channels, h, w), x.dtype))
        return out.view(_NumpyArray)

    monkeypatch.setattr(fic, "_kernel", record)
    yield fic, launches
    sys.modules.pop("fused_inception.cupy", None)  # the stand-in's module goes; the real one imports afresh
    if attribute is None:
        fused_inception.__dict__.pop("cupy", None)
    else:
        fused_inception.cupy = attribute


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("batch", [7, 8])
def test_the_cupy_path_routes_as_the_op(cupy_on_numpy, batch, memory_format):
    # 4d at 14x14: 7 images are 1372 pixels, 8 are 1568, where the op starts its channels_last copies (the C++
    # rule: _route_case, _window_weights_copied_case, _reads_windows_in_place). The kernel gets what the op
    # would give it; with routing off, x and the weights as they are.
    fic, launches = cupy_on_numpy
    config = fused_inception.BLOCKS_BY_NAME["4d"]
    block = make_block(config.block_args, dtype=torch.float16)  # OIHW weights
    weights = [p.numpy().view(_NumpyArray) for p in op_params(block)]
    x = make_input(batch, config.in_channels, 14, 14, dtype=torch.float16, memory_format=memory_format)
    x_array = x.numpy() if memory_format == torch.contiguous_format else x.permute(0, 2, 3, 1).numpy().transpose(0, 3, 1, 2)
    x_array = x_array.view(_NumpyArray)
    pixels, nchw = batch * 14 * 14, memory_format == torch.contiguous_format
    route = torch.ops.fused_inception._route_case(pixels, "f16", nchw, config.in_channels * 2)
    copies = torch.ops.fused_inception._window_weights_copied_case(pixels, "f16")
    copied = [copies and conv in ("w3", "w5") and torch.ops.fused_inception._reads_windows_in_place(
        p.shape[1], 2) for (conv, _), p in zip(launch.CONVOLUTIONS, op_params(block)[::2])]
    out = fic.inception_forward(x_array, weights)
    (kernel_x, taps_outer), = launches
    assert (route == "kernel_on_channels_last_copy") == (nchw and kernel_x.strides[1] == 2)
    assert (kernel_x.strides[1] == 2) == (route == "kernel_on_channels_last_copy" or not nchw)
    assert np.array_equal(np.asarray(kernel_x), x.numpy())  # the same values, copied or not
    assert taps_outer == copied and any(copied) == (batch == 8)
    assert out.flags.c_contiguous == nchw  # the output in x's layout
    launches.clear()
    fic.inception_forward(x_array, weights, routing=False)
    (kernel_x, taps_outer), = launches
    assert kernel_x is x_array and not any(taps_outer)
    with pytest.raises(TypeError, match="routing must be a bool"):
        fic.inception_forward(x_array, weights, routing="no")


# ---- with a GPU and CuPy ----------------------------------------------------------------------------------

@needs_cupy_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("mode", ["f16", "tf32", "f32"])
def test_cupy_equals_the_extension(mode, memory_format):
    import cupy

    import fused_inception.cupy as fic

    dtype = MODES[mode]
    config = fused_inception.BLOCKS_BY_NAME["4d"]
    block = make_block(config.block_args, device="cuda", dtype=dtype)
    x = make_input(2, config.in_channels, 14, 14, "cuda", dtype, memory_format)
    with allow_tf32(mode == "tf32"):
        expected = fused_inception.inception(x, *op_params(block))
        out = fic.inception_forward(cupy.from_dlpack(x), [cupy.from_dlpack(p) for p in op_params(block)],
                                    allow_tf32=mode == "tf32")
        cupy.cuda.get_current_stream().synchronize()
        result = torch.from_dlpack(out)
        with torch.no_grad():
            # TF32's baseline is unfused PyTorch on TF32 operands (cuDNN may pick an exact algorithm).
            unfused = unfused_tf32(block, x) if mode == "tf32" else block(x)
    assert torch.equal(result, expected)
    assert result.is_contiguous(memory_format=memory_format)
    assert_numerics(result, unfused, float64_copy(block)(x.double()).detach())


@needs_cupy_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_cupy_routes_as_the_op(mode, memory_format):
    # From 1568 pixels the op runs a dense NCHW x as a channels_last copy, and reads a block's OIHW 3x3 and
    # 5x5 weights through channels_last copies in either layout. The CuPy path takes the same routes, so the
    # two equal bit for bit; with routing off both run the kernel on x and the weights as they are.
    import cupy

    import fused_inception.cupy as fic

    dtype = MODES[mode]
    config = fused_inception.BLOCKS_BY_NAME["4d"]
    block = make_block(config.block_args, device="cuda", dtype=dtype)  # OIHW weights: not converted
    x = make_input(8, config.in_channels, 14, 14, "cuda", dtype, memory_format)  # 1568 pixels
    nchw = memory_format == torch.contiguous_format
    params = [cupy.from_dlpack(p) for p in op_params(block)]
    with allow_tf32(mode == "tf32"):
        assert fused_inception.route(x) == ("kernel_on_channels_last_copy" if nchw else "kernel")
        expected = fused_inception.inception(x, *op_params(block))
        with fused_inception.routing(False):
            expected_unrouted = fused_inception.inception(x, *op_params(block))
        routed = fic.inception_forward(cupy.from_dlpack(x), params, allow_tf32=mode == "tf32")
        unrouted = fic.inception_forward(cupy.from_dlpack(x), params, allow_tf32=mode == "tf32", routing=False)
        cupy.cuda.get_current_stream().synchronize()
    result = torch.from_dlpack(routed)
    assert result.is_contiguous(memory_format=memory_format)
    assert torch.equal(result, expected)
    assert torch.equal(torch.from_dlpack(unrouted), expected_unrouted)
    if mode == "tf32":  # the staged windows round their operands elsewhere: the two routes differ, both ran
        assert not torch.equal(expected, expected_unrouted)


@needs_cupy_gpu
@pytest.mark.cuda
def test_cupy_block_with_torch_tensors_and_bfloat16():
    import fused_inception.cupy as fic

    block = make_block((64, 16, 24, 32, 8, 16, 16), (3, 3), device="cuda", dtype=torch.bfloat16)
    cupy_block = fic.FusedInceptionCuPy.from_torch(block)
    x = make_input(3, 64, 15, 9, "cuda", torch.bfloat16, torch.channels_last)
    result = cupy_block(x)  # a torch tensor in, a torch tensor out (DLPack, no copies)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.bfloat16
    with torch.no_grad():
        assert_numerics(result, block(x), float64_copy(block)(x.double()))


@needs_cupy_gpu
@pytest.mark.cuda
def test_cupy_errors_name_the_argument():
    import cupy

    import fused_inception.cupy as fic

    block = make_block((8, 4, 6, 8, 2, 4, 3), device="cuda")
    cupy_block = fic.FusedInceptionCuPy.from_torch(block)
    with pytest.raises(ValueError, match=r"x must be \(N, 8, H, W\)"):
        cupy_block(cupy.zeros((1, 7, 4, 4), cupy.float32))
    with pytest.raises(TypeError, match="x must be float16, bfloat16 or float32"):
        cupy_block(cupy.zeros((1, 8, 4, 4), cupy.float64))


@pytest.mark.parametrize("tiles, tasks, band", [(8, 5, 3), (7, 4, 7), (10, 3, 1), (256, 6, 64), (5, 2, 9)])
def test_grid_bands_cover_every_tile_and_task_once(tiles, tasks, band):
    # launch.cta_of mirrors the kernel's cta_of (inception_params.h), whose every CTA the kernel tests check.
    order = [launch.cta_of(cta, tiles, tasks, band) for cta in range(tiles * tasks)]
    assert sorted(order) == [(tile, task) for tile in range(tiles) for task in range(tasks)]
    # Bands of `band` tiles in order, each task-major: a band's first task (the longest) on all its tiles first.
    for cta, (tile, task) in enumerate(order):
        first_tile = cta // (band * tasks) * band
        assert first_tile <= tile < first_tile + band
    assert [task for _, task in order[:min(band, tiles) * tasks]] == sorted(task for _, task in order[:min(band, tiles) * tasks])


def test_band_size_keeps_a_band_of_x_within_the_budget():
    # 3a at batch 256 in bf16: 4096 tiles of 64 pixels x 192 channels x 2 bytes = 24 KiB: 682 fit 16 MiB, so
    # 7 bands, made equal: 586 tiles.
    assert launch.plan_band_tiles(4096, 192, 2) == 586
    assert launch.plan_band_tiles(16, 192, 2) == 16   # batch 1: one band
    assert launch.plan_band_tiles(3, 10**9, 4) == 1    # a tile over the budget: bands of one tile


@pytest.mark.parametrize("case", ["k_over_int32", "ctas_over_int32"])
def test_the_plan_refuses_what_the_kernel_cannot_index(case):
    # The kernel counts K in int32 and launches a one-dimensional grid: a K over 2^31 - 33 and more than
    # 2^31 - 1 CTAs run unfused, in C++ and in the Python mirror alike.
    shape = [2**31, 1, 1, 1, 1, 1, 1, 3, 5] if case == "k_over_int32" else [8, 1, 1, 1, 1, 1, 1, 3, 5]
    batch = 1 if case == "k_over_int32" else 2**29  # one 1x1 tile per image, four tasks: 2^31 CTAs
    expected = torch.ops.fused_inception._fused_plan(shape, batch, 1, 1, 2, True, 132, 227 * 1024, 0)
    assert expected[0] == 0
    c = shape[0]
    with pytest.raises(launch.UnsupportedCase, match="2\\^31"):
        launch.build_params(launch.BlockShape(*shape), x_ptr=4096, out_ptr=4096, batch=batch, height=1, width=1,
                            weights=[(4096, 4096, 8 * 1024, False)] * 6, x_strides=[c, 1, c, c],
                            out_strides=[4, 1, 4, 4], element_bytes=2, sm_count=132, shared_memory_limit=227 * 1024)
