"""The fused one-launch kernel: the same cases on CPU (the kernel's source under the SIMT emulator, every launch
run in the racecheck's schedules, which must agree bit for bit) and on CUDA (the real kernel), against unfused
PyTorch."""

import contextlib
import copy
import os

import pytest
import torch
from conftest import MEMORY_FORMATS, allow_tf32, make_block, make_input, op_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch._prims_common import suggest_memory_format

import fused_inception
from fused_inception import ops
from fused_inception.testing import (assert_numerics, float64_copy, racecheck, racecheck_schedules, simt_launch_count,
                                     simt_orders, unfused_tf32)

# Math modes of the kernel: (input dtype, whether float32 convolutions may use TF32).
MODES = {"fp16": (torch.float16, False), "bf16": (torch.bfloat16, False), "tf32": (torch.float32, True),
         "fp32": (torch.float32, False)}


#: Tests only: output channels per task, instead of the planner's choice (at least 64, which never splits the
#: small test blocks' branches into several tasks).
CHANNEL_CHUNK_ENV = "FUSED_INCEPTION_TEST_CHANNEL_CHUNK"


@contextlib.contextmanager
def channel_chunk(chunk):
    """Plans every fused launch with `chunk` output channels per task (None: the planner's choice)."""
    previous = os.environ.get(CHANNEL_CHUNK_ENV)
    if chunk is None:
        os.environ.pop(CHANNEL_CHUNK_ENV, None)
    else:
        os.environ[CHANNEL_CHUNK_ENV] = str(chunk)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CHANNEL_CHUNK_ENV, None)
        else:
            os.environ[CHANNEL_CHUNK_ENV] = previous


def planned_chunk(block, x):
    """The channel chunk a fused launch of `block` on `x` gets (as the op plans it now)."""
    shape = [*block.block_args, *block.kernel_sizes]
    plan = torch.ops.fused_inception._fused_plan(shape, x.shape[0], x.shape[2], x.shape[3], x.element_size(),
                                                 False, 132, 227 * 1024)
    return plan[1]


@pytest.fixture
def fused(device):
    """The fused kernel on `device`: emulated on CPU with the racecheck on, the real kernel on CUDA; on the
    input as it is (routing off: these are the kernel's tests; test_routing_* test the routes)."""
    backend = fused_inception.cpu_backend("fused") if device == "cpu" else fused_inception.cuda_backend("fused")
    with backend, racecheck(), fused_inception.routing(False):
        yield


def check_fused(block, x, mode):
    """Runs the op (fused) and checks it against unfused PyTorch in the same precision and float64."""
    _, tf32 = MODES[mode]
    with allow_tf32(tf32), torch.no_grad():
        result = fused_inception.inception(x, *op_params(block))
        if mode == "tf32":
            # Unfused PyTorch in TF32: every convolution on TF32 operands. Not block(x): the CPU has no TF32
            # convolutions, and cuDNN may pick an exact FP32 algorithm for a shape even with TF32 allowed.
            unfused = unfused_tf32(block, x)
        else:
            unfused = block(x)
        reference = float64_copy(block)(x.double())
    assert result.shape == reference.shape and result.dtype == x.dtype
    assert result.is_contiguous(memory_format=suggest_memory_format(x))  # the output keeps x's layout
    return assert_numerics(result, unfused, reference)


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", fused_inception.GOOGLENET_BLOCKS, ids=lambda c: c.name)
def test_googlenet_blocks(config, mode, memory_format, device, fused):
    dtype, _ = MODES[mode]
    # The model in the input's layout, as users convert one: channels_last weights are (tap, channel) rows,
    # which the k x k GEMMs read in place from the reduction (whole-vector channels in every block).
    block = make_block(config.block_args, device=device, dtype=dtype).to(memory_format=memory_format)
    batch = 1 if device == "cpu" else 2
    x = make_input(batch, config.in_channels, config.spatial, config.spatial, device, dtype, memory_format)
    before = simt_launch_count()
    check_fused(block, x, mode)
    if device == "cpu":  # one launch, run once per racecheck schedule
        assert simt_launch_count() - before == len(racecheck_schedules())


@pytest.mark.parametrize("kernel_sizes", [(3, 3), (5, 5), (5, 3)], ids=str)
@pytest.mark.parametrize("mode", ["bf16", "fp32"])
def test_kernel_size_pairs_and_two_images(kernel_sizes, mode, device, fused):
    dtype, _ = MODES[mode]
    block = make_block((40, 24, 16, 40, 8, 24, 16), kernel_sizes, device=device, dtype=dtype)
    check_fused(block, make_input(2, 40, 11, 9, device, dtype, torch.channels_last), mode)


# Every branch split into several tasks (chunk 3: 10 = 3 + 3 + 3 + 1, ...), K = 72 input channels in three K
# chunks (a stage is refilled while the 1x1 GEMMs run), partial tiles on both edges; 72 channels are whole
# 16-byte vectors in every dtype, so NHWC reads x with cp.async and NCHW element by element.
SPLIT_BLOCK = (72, 10, 5, 9, 3, 6, 9)


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("mode", MODES)
def test_split_tasks_and_refilled_stages(mode, memory_format, device, fused):
    dtype, _ = MODES[mode]
    block = make_block(SPLIT_BLOCK, device=device, dtype=dtype, seed=3)
    x = make_input(2, 72, 9, 13, device, dtype, memory_format, seed=4)
    with channel_chunk(3):
        assert planned_chunk(block, x) == 3
        check_fused(block, x, mode)


#: Tests only: "0" plans every fused launch without thread-block clusters (csrc/kernels/inception_plan.cpp).
CLUSTERS_ENV = "FUSED_INCEPTION_TEST_CLUSTERS"


@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_clusters_share_the_reduction_bit_for_bit(mode, device, fused, monkeypatch):
    # The 3x3 branch's 130 channels in three tasks of 64 (64 + 64 + 2) form clusters of 3 CTAs, each computing a
    # slice of the 33 reduced channels (16 + 16 + 1: the last slice's vector runs into the row's padding) and
    # copying it into the other two. Every reduced value is the same GEMM either way, so the output must equal
    # that of a launch without clusters (each 3x3 task computing the whole reduction) bit for bit.
    if device == "cuda" and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need compute capability 9.0")
    dtype, tf32 = MODES[mode]
    block = make_block((40, 8, 33, 130, 8, 16, 8), device=device, dtype=dtype, seed=5).to(
        memory_format=torch.channels_last)
    x = make_input(2, 40, 9, 10, device, dtype, torch.channels_last, seed=6)
    shape = [*block.block_args, *block.kernel_sizes]
    with channel_chunk(64):
        plan = torch.ops.fused_inception._fused_plan(shape, 2, 9, 10, x.element_size(), True, 132, 227 * 1024, 0,
                                                     True)
        assert (plan[1], plan[2], plan[9]) == (64, 6, 3)  # 3 + 1 + 1 + 1 tasks a tile, in clusters of 3
        check_fused(block, x, mode)
        with allow_tf32(tf32), torch.no_grad():
            with_clusters = fused_inception.inception(x, *op_params(block))
            monkeypatch.setenv(CLUSTERS_ENV, "0")
            assert torch.ops.fused_inception._fused_plan(shape, 2, 9, 10, x.element_size(), True, 132, 227 * 1024,
                                                         0, True)[9] == 1  # the switch took: no clusters
            without = fused_inception.inception(x, *op_params(block))
    assert torch.equal(with_clusters, without)


@pytest.mark.parametrize("chunk", [1, 4, 130], ids=lambda c: f"chunk{c}")
def test_channel_chunks(chunk, device, fused):
    # One channel per task, an uneven split, and one task per branch with two N passes of 128 channels.
    block = make_block((24, 7, 6, 131, 5, 9, 6), (5, 3), device=device, dtype=torch.bfloat16, seed=chunk)
    x = make_input(1, 24, 8, 17, device, torch.bfloat16, torch.channels_last)
    with channel_chunk(chunk):
        assert planned_chunk(block, x) == chunk
        check_fused(block, x, "bf16")


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch_launches_nothing(mode, device, fused):
    dtype, _ = MODES[mode]
    block = make_block((8, 3, 4, 5, 2, 3, 4), device=device, dtype=dtype)
    x = make_input(0, 8, 9, 10, device, dtype)
    before = simt_launch_count()
    result = check_fused(block, x, mode)
    assert result.error == 0
    assert simt_launch_count() == before


@st.composite
def kernel_cases(draw):
    # Small blocks, or a K of several chunks; batch 0 is its own case above.
    cin = draw(st.one_of(st.integers(1, 20), st.integers(33, 80)))
    block_args = (cin, *(draw(st.integers(1, 20)) for _ in range(6)))
    kernel_sizes = draw(st.sampled_from([(3, 5), (3, 3), (5, 5), (5, 3)]))
    batch = draw(st.sampled_from([1, 2, 3]))
    height, width = draw(st.integers(1, 19)), draw(st.integers(1, 19))
    layout = draw(st.sampled_from(["nchw", "nhwc", "sliced"]))
    weights_channels_last = draw(st.booleans())  # (tap, channel) weight rows: the in-place window path
    mode = draw(st.sampled_from(list(MODES)))
    chunk = draw(st.sampled_from([None, 1, 3, 8]))  # None: the planner's (one task per branch here)
    return (block_args, kernel_sizes, batch, height, width, layout, weights_channels_last, mode, chunk,
            draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=kernel_cases())
def test_random_configs(case, device, fused):
    block_args, kernel_sizes, batch, height, width, layout, weights_channels_last, mode, chunk, seed = case
    dtype, _ = MODES[mode]
    block = make_block(block_args, kernel_sizes, device=device, dtype=dtype, seed=seed)
    if weights_channels_last:
        block = block.to(memory_format=torch.channels_last)
    cin = block_args[0]
    if layout == "sliced":  # strided in every dimension: the kernel reads x through its strides
        x = make_input(batch, cin + 3, height + 2, 2 * width, device, dtype, seed=seed)[:, 2:2 + cin, 1:-1, ::2]
    else:
        x = make_input(batch, cin, height, width, device, dtype, MEMORY_FORMATS[layout], seed=seed)
    with channel_chunk(chunk):
        check_fused(block, x, mode)


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_nan_propagates_through_the_pool_branch(mode, memory_format, device, fused):
    # NCHW takes the max element by element, channels_last in 16-byte vectors from shared memory (max.NaN):
    # a NaN inside the image and one in a corner come out exactly where the float64 reference has them.
    dtype, _ = MODES[mode]
    block = make_block((8, 2, 3, 4, 2, 3, 2), device=device, dtype=dtype)
    x = make_input(1, 8, 9, 9, device)
    x[0, 5, 4, 4] = float("nan")
    x[0, 2, 0, 8] = float("nan")
    check_fused(block, x.to(dtype).contiguous(memory_format=memory_format), mode)


@pytest.mark.parametrize("mode", ["tf32", "bf16"])
def test_nan_in_a_corner_stays_out_of_rows_the_kernel_never_uses(mode, device, fused):
    # Element-wise x (NCHW) in chunks within K loads a pixel outside the reduction's box or the image from
    # pixel (0, 0) of its channel instead of zeroing it (change 38): the reduction's padding rows and the
    # pool's halo outside the image, which neither GEMM's stored rows read. A NaN there must stay where the
    # float64 reference has it (the top-left 1-3 pixels), not reach the right and bottom edge tiles. 136
    # channels: three K chunks in 16 bits, five in TF32 (the whole-chunk loads run; the exact float32 mode
    # keeps its tested loads); 10x13: edge tiles.
    dtype, _ = MODES[mode]
    block = make_block((136, 8, 16, 24, 4, 8, 8), device=device, dtype=dtype)
    x = make_input(1, 136, 10, 13, device)
    x[0, 70, 0, 0] = float("nan")
    check_fused(block, x.to(dtype), mode)


def _just_below_tf32_values(shape, scale, generator):
    """±(1 + 7/8 ulp) x 2^e (TF32's ulp is 2^-10 at 1): rounding to nearest moves each up an eighth of an ulp,
    truncating the 13 low bits down seven eighths."""
    signs = torch.randint(0, 2, shape, generator=generator).double() * 2 - 1
    exponents = torch.randint(-1, 2, shape, generator=generator).double()
    return signs * (1 + 7 * 2.0**-13) * torch.exp2(exponents) * scale


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_tf32_operands_round_to_nearest(memory_format, device, fused):
    # The kernel rounds TF32 operands once where they are stored (x and weight stages, the pool's max, the
    # reduction), not per fragment. Operands an eighth of an ulp under a TF32 value make any truncated one
    # (left to the tensor core) fail the rule's 2x and miss unfused TF32 by about 1e-3 of the output's
    # magnitude; rounded to nearest, the kernel computes on unfused TF32's very operands and matches it to
    # float32 summation (as tests/simt/fused_selftest.cpp checks too).
    generator = torch.Generator().manual_seed(7)
    block = make_block((24, 16, 8, 16, 4, 8, 16), device=device).to(memory_format=memory_format)
    with torch.no_grad():
        for conv in (m for m in block.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.copy_(_just_below_tf32_values(conv.weight.shape, 2.0**-4, generator))
    x = _just_below_tf32_values((2, 24, 7, 10), 1.0, generator).float().to(device)
    x = x.contiguous(memory_format=memory_format)
    check_fused(block, x, "tf32")
    with allow_tf32(True), torch.no_grad():
        result = fused_inception.inception(x, *op_params(block))
        unfused = unfused_tf32(block, x)
    assert (result - unfused).abs().max().item() <= 2.0**-14 * unfused.abs().max().item()


def test_forward_is_one_launch_with_fixed_weights(device, fused):
    block = fused_inception.FusedInception(*fused_inception.BLOCKS_BY_NAME["4a"].block_args).to(device).eval()
    x = make_input(2, 480, 14, 14, device)
    with torch.no_grad(), fused_inception.testing.poison_outputs(False):
        block(x)  # warm-up
        if device == "cpu":
            before = simt_launch_count()
            with simt_orders("forward"):
                block(x)
            assert simt_launch_count() - before == 1
        else:
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
                block(x)
                torch.cuda.synchronize()
            kernels = [e for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            assert len(kernels) == 1, [e.name for e in kernels]


@pytest.mark.parametrize("weight_layout", ["channels_last", "strided", "unaligned_rows"])
def test_kernel_reads_weights_in_any_layout(device, fused, weight_layout):
    # The kernel reads the parameters in place: OIHW rows, channels_last (OHWI) rows, rows of a view whose
    # stride is not their length, and rows that are not whole 16-byte vectors (element-wise loads).
    in_channels = 13 if weight_layout == "unaligned_rows" else 16
    block = make_block((in_channels, 8, 8, 16, 4, 8, 8), (3, 5), device=device, dtype=torch.float16)
    if weight_layout == "channels_last":
        block = block.to(memory_format=torch.channels_last)
        assert not block.branch2[1].conv.weight.is_contiguous()
    elif weight_layout == "strided":
        with torch.no_grad():
            for conv in (m for m in block.modules() if isinstance(m, torch.nn.Conv2d)):
                # The same values, read through a view with 3 more output channels' room per row.
                w = conv.weight
                wide = torch.empty(w.shape[0], w.shape[1] + 3, *w.shape[2:], dtype=w.dtype, device=w.device)
                wide[:, :w.shape[1]] = w
                conv.weight.data = wide[:, :w.shape[1]]
                assert conv.weight.stride(0) != conv.weight[0].numel()
    x = make_input(2, in_channels, 9, 10, device, torch.float16, torch.channels_last)
    before = simt_launch_count()
    check_fused(block, x, "fp16")
    assert device != "cpu" or simt_launch_count() > before  # the kernel ran, not the fallback


def test_cases_the_kernel_skips_run_unfused(device, fused):
    # A reduction too large for shared memory: the op falls back to the unfused composition, still correct.
    block = make_block((4, 2, 1200, 4, 2, 2, 2), (3, 5), device=device)
    x = make_input(1, 4, 6, 6, device)
    before = simt_launch_count()
    check_fused(block, x, "fp32")
    assert simt_launch_count() == before  # no emulated launch on CPU
    # float64 has no fused path either: the unfused composition, no launch
    block64 = make_block((4, 2, 3, 4, 2, 3, 2), device=device, dtype=torch.float64)
    x64 = make_input(1, 4, 5, 5, device, torch.float64)
    before = simt_launch_count()
    with torch.no_grad():
        unfused = block64(x64)  # the float64 reference itself
        assert_numerics(fused_inception.inception(x64, *op_params(block64)), unfused, unfused)
    assert simt_launch_count() == before


def test_routing_follows_the_measurements(device):
    def route(*shape, dtype=torch.bfloat16, memory_format=torch.contiguous_format):
        return fused_inception.route(torch.empty(shape, device=device, dtype=dtype).contiguous(
            memory_format=memory_format))

    switch = fused_inception.cpu_backend if device == "cpu" else fused_inception.cuda_backend
    with switch("fused"):
        # NCHW from batch 32 on 7x7 images up: the kernel on a channels_last copy; channels_last as it is.
        assert route(32, 16, 7, 7) == route(256, 16, 28, 28, dtype=torch.float16) == "kernel_on_channels_last_copy"
        assert route(256, 16, 28, 28, memory_format=torch.channels_last) == "kernel"
        assert route(1, 16, 28, 28) == route(31, 16, 7, 7) == "kernel"  # not measured smaller: as it is
        assert route(256, 12, 7, 7) == "kernel"  # 24-byte pixels: the copy would not be read in 16-byte vectors
        with allow_tf32(True):
            assert route(256, 16, 7, 7, dtype=torch.float32) == "unfused"  # TF32: cuDNN measured faster
            assert route(255, 16, 7, 7, dtype=torch.float32) == "kernel_on_channels_last_copy"
        with allow_tf32(False):  # exact FP32 was not measured: the kernel as it is
            assert route(256, 16, 28, 28, dtype=torch.float32) == "kernel"
        assert route(256, 16, 7, 7, dtype=torch.float64) == "unfused"  # no float64 kernel
        with fused_inception.routing(False):
            assert route(256, 16, 28, 28) == "kernel"
            with allow_tf32(True):
                assert route(256, 16, 28, 28, dtype=torch.float32) == "kernel"
        assert route(256, 16, 28, 28) == "kernel_on_channels_last_copy"  # restored on exit
        with switch("unfused"):
            assert route(256, 16, 28, 28) == "unfused"
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with fused_inception.routing("off"):
            pass


@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_routing_runs_the_channels_last_kernel_on_an_nchw_input(mode, device):
    # 32 images of 7x7: the smallest routed NCHW input. The routed result is the channels_last kernel's on the
    # block converted to channels_last (the route copies x and the k x k weights), bit for bit, in NCHW; the
    # kernel on the NCHW input itself (routing off) meets the same numerics rule.
    dtype, _ = MODES[mode]
    block = make_block((16, 8, 8, 16, 8, 8, 8), (3, 5), device=device, dtype=dtype)
    x = make_input(32, 16, 7, 7, device, dtype)
    switch = fused_inception.cpu_backend if device == "cpu" else fused_inception.cuda_backend
    with switch("fused"), allow_tf32(mode == "tf32"), torch.no_grad():
        assert fused_inception.route(x) == "kernel_on_channels_last_copy"
        before = simt_launch_count()
        routed = fused_inception.inception(x, *op_params(block))
        assert device != "cpu" or simt_launch_count() - before == 1  # the kernel ran
        converted = copy.deepcopy(block).to(memory_format=torch.channels_last)
        with fused_inception.routing(False):
            channels_last = fused_inception.inception(x.contiguous(memory_format=torch.channels_last),
                                                      *op_params(converted))
            staged = fused_inception.inception(x.contiguous(memory_format=torch.channels_last), *op_params(block))
    assert routed.is_contiguous() and torch.equal(routed, channels_last)
    if mode == "tf32":  # the OIHW weights' (channel, tap) sums differ here: equality above shows the copy ran
        assert not torch.equal(channels_last, staged)
    with switch("fused"):
        check_fused(block, x, mode)  # routed
        with fused_inception.routing(False):
            check_fused(block, x, mode)  # the NCHW kernel


@pytest.mark.parametrize("mode", ["bf16", "tf32"])
def test_a_channels_last_input_reads_oihw_kxk_weights_through_copies(mode, device):
    # A channels_last x given to a block that was not converted (OIHW k x k weights): from 1568 pixels on
    # (32 images of 7x7) the kernel reads channels_last copies of the k x k weights, made for the call, so the
    # result is the converted block's bit for bit; below that (31 images) and with routing off it stages the
    # windows from the OIHW weights, whose (channel, tap) sums differ in TF32 (so equality shows the copy ran).
    dtype, _ = MODES[mode]
    block = make_block((16, 8, 8, 16, 8, 8, 8), (3, 5), device=device, dtype=dtype)
    converted = copy.deepcopy(block).to(memory_format=torch.channels_last)
    x = make_input(32, 16, 7, 7, device, dtype, memory_format=torch.channels_last)
    switch = fused_inception.cpu_backend if device == "cpu" else fused_inception.cuda_backend
    with switch("fused"), allow_tf32(mode == "tf32"), torch.no_grad():
        assert fused_inception.route(x) == "kernel"
        before = simt_launch_count()
        out = fused_inception.inception(x, *op_params(block))
        assert device != "cpu" or simt_launch_count() - before == 1  # the kernel ran
        small = fused_inception.inception(x[:31], *op_params(block))
        with fused_inception.routing(False):
            in_place = fused_inception.inception(x, *op_params(converted))
            staged = fused_inception.inception(x, *op_params(block))
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, in_place)
    assert torch.equal(small, staged[:31])
    if mode == "tf32":
        assert not torch.equal(in_place, staged)
    with switch("fused"):
        check_fused(block, x, mode)  # the weights copied
        with fused_inception.routing(False):
            check_fused(block, x, mode)  # staged from the OIHW weights


def test_routing_sends_large_tf32_inputs_to_the_unfused_composition(device):
    block = make_block((16, 8, 8, 16, 8, 8, 8), (3, 5), device=device)
    x = make_input(256, 16, 7, 7, device, memory_format=torch.channels_last)
    backend = fused_inception.cpu_backend if device == "cpu" else fused_inception.cuda_backend
    with allow_tf32(True), torch.no_grad():
        with backend("unfused"):
            unfused = fused_inception.inception(x, *op_params(block))
        with backend("fused"):
            before = simt_launch_count()
            routed = fused_inception.inception(x, *op_params(block))
            assert simt_launch_count() == before  # no kernel launch
    if device == "cpu":
        assert torch.equal(routed, unfused)
    else:  # the same cuDNN calls; tolerance only in case cuDNN's choice of algorithm varies between calls
        torch.testing.assert_close(routed, unfused, rtol=1e-6, atol=1e-6)


def test_backend_switches(device):
    device_type = torch.device(device).type
    switch = fused_inception.cpu_backend if device_type == "cpu" else fused_inception.cuda_backend
    with switch("fused"):
        assert ops.backend(device_type) == "fused" and "fused" in ops.backend_name(device).lower()
        with switch("unfused"):
            assert ops.backend(device_type) == "unfused"
    with pytest.raises(ValueError, match="backend must be one of"):
        with switch("fast"):
            pass
