"""The SIMT emulator: primitives against scalar references, the GEMM against torch.matmul (both emulated on
CPU and real on CUDA), the racecheck and the memcheck (an AddressSanitizer build of the emulator)."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from fused_inception.testing import (RACECHECK_ENV, assert_numerics, racecheck, racecheck_schedules,
                                     simt_launch_count, simt_orders)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
simt_test = torch.ops.fused_inception._simt_test


@pytest.fixture(autouse=True)
def _racecheck():
    """Every emulated launch in this file runs in two schedules and must give identical bits."""
    with simt_orders("forward", "reverse@issue"):
        yield


# ---- primitives -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_mma_matches_triple_loop(dtype, device):
    generator = torch.Generator().manual_seed(4)
    k = 8 if dtype == torch.float32 else 16
    a = (torch.rand(16, k, generator=generator) * 4 - 2).to(dtype)
    b = (torch.rand(k, 8, generator=generator) * 4 - 2).to(dtype)
    c = torch.rand(16, 8, generator=generator) * 4 - 2
    if dtype == torch.float32:  # the kernel rounds to TF32 (10 mantissa bits); give it values that are exact
        a, b = (t.to(torch.bfloat16).to(torch.float32) for t in (a, b))
    d = simt_test("mma", [t.to(device) for t in (a, b, c)]).cpu()
    expected = (a.double() @ b.double() + c.double()).float()
    if device == "cpu":  # exact products summed in double, rounded once
        assert torch.equal(d, expected)
    else:  # the tensor core rounds its sums its own way
        torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-5)


def ldmatrix_expected(matrices, transposed):
    m = matrices.numpy().view(np.uint16).astype(np.uint32)
    count = m.shape[0]
    out = np.zeros((32, count), dtype=np.uint32)
    for lane in range(32):
        outer, inner = lane // 4, 2 * (lane % 4)
        for i in range(count):
            if transposed:
                out[lane, i] = m[i, inner, outer] | (m[i, inner + 1, outer] << 16)
            else:
                out[lane, i] = m[i, outer, inner] | (m[i, outer, inner + 1] << 16)
    return torch.from_numpy(out.view(np.int32))


@pytest.mark.parametrize("transposed", [False, True], ids=["plain", "trans"])
@pytest.mark.parametrize("count", [1, 2, 4])
def test_ldmatrix_layout(count, transposed, device):
    matrices = torch.randint(-(2**15), 2**15, (count, 8, 8), dtype=torch.int16)
    kernel = f"ldmatrix_x{count}" + ("_trans" if transposed else "")
    out = simt_test(kernel, [matrices.to(device)]).cpu()
    assert torch.equal(out, ldmatrix_expected(matrices, transposed))


def warp_ops_expected(v):
    def shuffle(source_of):
        return [v[source_of(lane)] for lane in range(32)]

    def segment_start(lane, width):
        return lane & ~(width - 1)

    rows = [
        shuffle(lambda lane: (lane * 7 + 3) % 32),
        shuffle(lambda lane: lane ^ 5),
        shuffle(lambda lane: lane + 3 if lane + 3 < 32 else lane),
        shuffle(lambda lane: lane - 2 if lane >= 2 else lane),
        shuffle(lambda lane: segment_start(lane, 8) + ((lane + 3) & 7)),
        # xor within width 8: a source in a later group of 8 returns the caller's own value
        shuffle(lambda lane: lane ^ 9 if segment_start(lane ^ 9, 8) <= segment_start(lane, 8) else lane),
        shuffle(lambda lane: lane + 5 if lane + 5 < segment_start(lane, 16) + 16 else lane),
        shuffle(lambda lane: lane - 1 if lane - 1 >= segment_start(lane, 4) else lane),
    ]
    ballot = sum(1 << lane for lane in range(32) if v[lane] % 3 == 0)
    rows.append([np.array(ballot, dtype=np.uint32).view(np.int32).item()] * 32)
    rows.append([int(any(v[lane] == v[0] + lane for lane in range(32)))] * 32)
    rows.append([int(all(x > -1000000 for x in v))] * 32)
    return torch.tensor(rows, dtype=torch.int32)


def test_shuffles_and_votes(device):
    v = torch.randint(-100, 100, (32,), dtype=torch.int32)
    v[5] = v[0] + 5  # makes __any_sync true
    out = simt_test("warp_ops", [v.to(device)]).cpu()
    assert torch.equal(out, warp_ops_expected(v.tolist()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_max_nan_is_torch_maximum(dtype, device):
    # max.NaN (the channels_last pool's max): NaN wherever either side is NaN, else the larger, infinities
    # included; torch.maximum propagates NaN the same way. Fresh values, then NaN, +-inf, and ties.
    per_lane = 16 // torch.tensor([], dtype=dtype).element_size()
    generator = torch.Generator().manual_seed(7)
    a = torch.randn(32, per_lane, generator=generator).to(dtype)
    b = torch.randn(32, per_lane, generator=generator).to(dtype)
    a[0, 0], b[1, 1], a[2, 2], b[2, 2] = float("nan"), float("nan"), float("nan"), float("nan")
    a[3, 0], b[3, 0], a[4, 1], b[5, 1], a[6, 0], b[6, 0] = float("-inf"), 1.0, float("inf"), float("inf"), 2.5, 2.5
    out = simt_test("max_nan", [a.to(device), b.to(device)]).cpu()
    expected = torch.maximum(a, b)
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    finite = ~torch.isnan(expected)
    assert torch.equal(out[finite], expected[finite])


# ---- the GEMM: cp.async + ldmatrix + mma ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(70, 72, 40), (1, 8, 8), (130, 136, 96), (64, 64, 32)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gemm_matches_torch_matmul(shape, dtype, device):
    m, n, k = shape
    generator = torch.Generator().manual_seed(m * n + k)
    a = torch.randn(m, k, generator=generator).to(dtype).to(device)
    b = torch.randn(k, n, generator=generator).to(dtype).to(device)
    out = simt_test("gemm", [a, b])
    reference = a.double() @ b.double()
    if a.is_cuda:
        # cuBLAS on the tensor cores, float32 out: the same precision as the mma (whose float32 accumulation
        # is not IEEE round-to-nearest, so an exact float32 product would be the wrong baseline on a GPU).
        try:
            unfused = torch.mm(a, b, out_dtype=torch.float32)
        except TypeError:  # torch < 2.8
            pytest.skip("this torch has no mm(out_dtype=): no tensor-core float32 baseline for the test GEMM")
    else:
        unfused = torch.matmul(a.float(), b.float())  # the emulator's mma accumulates in IEEE float32
    assert_numerics(out, unfused, reference)


# ---- thread-block clusters: distributed shared memory ----------------------------------------------------

def cluster_exchange_expected(x, cluster):
    """cluster_exchange's four rows (csrc/kernels/test_kernels.h) for x of (grid_y, grid_x, 64) in clusters of
    cluster = (x, y) blocks: a block's rank is its position in its cluster, x fastest."""
    grid_y, grid_x, n = x.shape
    cx, cy = cluster
    size = cx * cy
    out = torch.empty(4, grid_y, grid_x, n)
    for by in range(grid_y):
        for bx in range(grid_x):
            rx, ry = bx % cx, by % cy
            rank = rx + ry * cx

            def block(r):
                return by - ry + r // cx, bx - rx + r % cx
            out[0, by, bx] = 2 * x[block((rank - 1) % size)]
            out[1, by, bx] = x[block((rank + 1) % size)].roll(-1)
            out[2, by, bx] = rank
            out[3, by, bx] = size
    return out


@pytest.mark.parametrize("grid, cluster", [((4, 2), (2, 2)), ((8, 1), (4, 1)), ((2, 3), (1, 3)), ((3, 1), (1, 1))],
                         ids=["2x2", "4x1", "1x3", "1x1"])
def test_cluster_exchange_through_distributed_shared_memory(grid, cluster, device):
    if device == "cuda" and torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need compute capability 9.0")
    x = torch.randn(grid[1], grid[0], 64)
    out = simt_test("cluster_exchange", [x.to(device), torch.tensor(cluster, dtype=torch.int32, device=device)])
    torch.testing.assert_close(out.cpu(), cluster_exchange_expected(x, cluster), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", ["cluster_exchange_without_first_sync", "cluster_exchange_without_last_sync"])
def test_racecheck_catches_missing_cluster_barrier(kernel):
    # Without the first barrier a block reads its shared memory before the previous block's stores; without
    # the last, a block reads the next one's shared memory after that block exited (the emulator fills it
    # with NaN then).
    x = torch.randn(1, 8, 64)
    with simt_orders("forward", "reverse"), pytest.raises(RuntimeError, match="differs between fiber orders"):
        simt_test(kernel, [x, torch.tensor([4, 1], dtype=torch.int32)])


def test_cluster_exchange_checks_its_cluster():
    x = torch.randn(1, 6, 64)
    with pytest.raises(RuntimeError, match=r"grid \(6, 1\) must be a whole number of clusters \(4, 1\)"):
        simt_test("cluster_exchange", [x, torch.tensor([4, 1], dtype=torch.int32)])
    with pytest.raises(RuntimeError, match="a cluster must have 1 to 8 blocks"):
        simt_test("cluster_exchange", [torch.randn(1, 16, 64), torch.tensor([16, 1], dtype=torch.int32)])


def test_one_launch_per_call_and_per_order():
    a = torch.randn(16, 16).half()
    b = torch.randn(16, 8).half()
    with simt_orders("forward"):
        before = simt_launch_count()
        simt_test("gemm", [a, b])
        assert simt_launch_count() - before == 1
    before = simt_launch_count()
    simt_test("gemm", [a, b])  # the fixture's two schedules
    assert simt_launch_count() - before == 2


# ---- planted bugs: the racecheck and the memcheck --------------------------------------------------------

@pytest.mark.parametrize("orders", [("forward", "reverse"), ("forward", "shuffle"), ("shuffle", "reverse")],
                         ids="-".join)
def test_racecheck_catches_missing_barrier(orders):
    x = torch.randn(96)
    with simt_orders(*orders), pytest.raises(RuntimeError, match="differs between fiber orders"):
        simt_test("neighbour", [x])
    with simt_orders(*orders):
        torch.testing.assert_close(simt_test("neighbour_with_barrier", [x]), 2 * x.roll(-1), rtol=0, atol=0)


def test_shared_overrun_caught_without_sanitizer():
    with pytest.raises(RuntimeError, match="wrote past the end of dynamic shared memory of 256 bytes"):
        simt_test("shared_off_by_one", [torch.zeros(64)])


def test_emulator_errors_reach_python():
    with pytest.raises(RuntimeError, match="unknown kernel"):
        simt_test("nope", [torch.zeros(1)])
    with pytest.raises(RuntimeError, match="orders must be forward, reverse or shuffle"):
        torch.ops.fused_inception._simt_set_orders(["sideways"], 0)
    with pytest.raises(RuntimeError, match="optionally followed by @issue or @wait"):
        torch.ops.fused_inception._simt_set_orders(["forward@never"], 0)


def test_schedules_by_name():
    # A bare shuffle gets the seed plus its position, so two of them differ; names come back with their seeds.
    with simt_orders("forward", "reverse@issue", "shuffle", "shuffle@issue", "shuffle:7@wait", seed=100):
        assert torch.ops.fused_inception._simt_get_orders() == [
            "forward", "reverse@issue", "shuffle:102", "shuffle:103@issue", "shuffle:7"]
    assert racecheck_schedules(2) == ["forward", "reverse@issue"]
    many = racecheck_schedules(10)
    assert len(set(many)) == 10 and any(s.endswith("@issue") for s in many[2:])
    with pytest.raises(ValueError, match="at least one schedule"):
        racecheck_schedules(0)


def test_racecheck_env_sets_the_schedule_count(monkeypatch):
    monkeypatch.setenv(RACECHECK_ENV, "4")
    assert racecheck_schedules() == ["forward", "reverse@issue", "shuffle:1@issue", "shuffle:2"]
    a, b = torch.randn(16, 16).half(), torch.randn(16, 8).half()
    with racecheck():
        before = simt_launch_count()
        simt_test("gemm", [a, b])
        assert simt_launch_count() - before == 4
    monkeypatch.setenv(RACECHECK_ENV, "many")
    with pytest.raises(ValueError, match="whole number"):
        racecheck_schedules()


ASAN_PROGRAMS = {
    # the emulator's own checks and the planted overruns
    "selftest": ["tests/simt/selftest.cpp", "csrc/simt/emulator.cpp", "csrc/kernels/test_kernels_emu.cpp"],
    # the fused Inception kernel in every math mode and layout
    "fused_selftest": ["tests/simt/fused_selftest.cpp", "csrc/simt/emulator.cpp", "csrc/kernels/inception_plan.cpp",
                       "csrc/kernels/inception_emu_f16.cpp", "csrc/kernels/inception_emu_bf16.cpp",
                       "csrc/kernels/inception_emu_tf32.cpp", "csrc/kernels/inception_emu_f32.cpp"],
}


def build_asan_program(name, directory, defines=()):
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler ({compiler}) to build the AddressSanitizer programs")
    binary = directory / name
    subprocess.run([compiler, "-std=c++17", "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-Icsrc",
                    *defines, "-o", str(binary), *ASAN_PROGRAMS[name], "-lpthread"], cwd=REPO, check=True)
    return binary


@pytest.fixture(scope="module")
def asan_selftest(tmp_path_factory):
    """The emulator's self-test, built with AddressSanitizer (the CPU memcheck)."""
    return build_asan_program("selftest", tmp_path_factory.mktemp("asan"))


def run_selftest(binary, mode):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run([str(binary)] + ([mode] if mode else []), capture_output=True, text=True, env=env,
                          timeout=300)


def test_selftest_passes_under_asan(asan_selftest):
    result = run_selftest(asan_selftest, "clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "0 failure(s)" in result.stdout
    assert "AddressSanitizer" not in result.stderr


@pytest.mark.parametrize("mode", ["global_overrun", "shared_overrun"])
def test_asan_catches_planted_overrun(asan_selftest, mode):
    result = run_selftest(asan_selftest, mode)
    assert result.returncode != 0
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in result.stderr
    assert "off_by_one_kernel" in result.stderr  # reported in the kernel's own source line


def test_asan_catches_a_read_of_an_exited_blocks_shared_memory(asan_selftest):
    # A cluster's block exits while the previous one has yet to read its shared memory (no cluster barrier
    # before the exit): the emulator poisons an exited block's shared memory, so the read is reported.
    result = run_selftest(asan_selftest, "cluster_exit")
    assert result.returncode != 0, result.stdout
    assert "ERROR: AddressSanitizer: use-after-poison" in result.stderr
    assert "cluster_exchange_kernel" in result.stderr


# The kernel as built, and the variants scripts/device_ab.sh times on a GPU (their source must be right first).
KERNEL_VARIANTS = {"as_built": (), "slices_loaded_ahead_2": ("-DFUSED_INCEPTION_SLICES_LOADED_AHEAD=2",),
                   "k_chunk_32_at_16_bits": ("-DFUSED_INCEPTION_K_CHUNK_16BIT=32",),
                   "two_barriers_per_step": ("-DFUSED_INCEPTION_BARRIERS_PER_STEP=2",),
                   "output_pixels_as_n": ("-DFUSED_INCEPTION_OUTPUT_PIXELS_AS_N=1",)}


@pytest.mark.parametrize("variant", list(KERNEL_VARIANTS))
def test_fused_kernel_passes_under_asan(tmp_path, variant):
    binary = build_asan_program("fused_selftest", tmp_path, KERNEL_VARIANTS[variant])
    result = run_selftest(binary, "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failure(s)" in result.stdout and result.stdout.count("ok  ") == 23
    assert result.stdout.count("(16-byte copies of x)") == 8  # both ways of reading x ran
    assert result.stdout.count("OIHW weights") == 1  # staged windows on transposed tiles
    assert result.stdout.count(" 1x24x") == 2  # the reduction that fills the reduction space
    assert result.stdout.count(" chunk 3 ") == 8 and result.stdout.count(" chunk 4") == 9  # several tasks a branch
    # the 3x3 branch's tasks sharing one reduction in clusters, and each recomputing it
    assert result.stdout.count(" clusters of 3") == 11 and result.stdout.count(" chunk 4 (16-byte copies of x):") == 4
    assert "AddressSanitizer" not in result.stderr
