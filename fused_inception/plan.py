"""`python -m fused_inception plan`: what the fused kernel will do for a block, batch and dtype, and what that
should cost on an H100, from the kernel's own plan (no GPU, no torch, no extension).

Per case: the grid (image tiles x tasks; launched as one dimension in bands of tiles), CTAs and waves, the tasks (each a branch's chunk of output
channels), the work multiplier (tensor-core FLOPs the plan executes / the block's ideal FLOPs), the longest
CTA's K steps, shared memory, modeled DRAM bytes against the minimum, and a modeled kernel time.
docs/performance.md states the model and its assumptions; the first GPU run calibrates it.

The plan is the kernel's: task split, channel chunk and shared memory come from fused_inception.kernel.launch (the
Python mirror of csrc/kernels/inception_params.h and inception_plan.cpp that the CuPy path launches with);
the warp tiling below mirrors FusedPlan, and tests/test_plan.py holds it against the header.
"""

import argparse
import heapq
import json
import re
import sys
from dataclasses import asdict, dataclass, field, replace

from .kernel.launch import (HALO_STAGE_ROWS, OUT_STAGE_ROWS, STAGE_COLS, STAGE_ROWS, THREADS, TILE, BlockShape,
                            UnsupportedCase, count_tasks, cta_of, halo_pixels, k_chunk, plan_band_tiles,
                            plan_channel_chunk, plan_cluster_ctas, reduction_slice, shared_bytes)
from .configs import BLOCKS_BY_NAME, GOOGLENET_BLOCKS, InceptionConfig

# FusedPlan's warp tiling (csrc/kernels/inception_params.h), beyond what launch.py mirrors.
WARPS_M, WARPS_N = 2, 4
OUT_MI, OUT_NI = 2, 4    # output GEMMs: each warp 2 x 4 m16n8 tiles
HALO_MI, HALO_NI = 5, 2  # reduction GEMMs over the tile and its halo: each warp 5 x 2 tiles
OUT_ROWS = WARPS_M * OUT_MI * 16       # M of an output GEMM: the 8x8 tile's 64 pixels
OUT_PASS_N = WARPS_N * OUT_NI * 8      # N of one output pass: 128 channels
HALO_ROWS = WARPS_M * HALO_MI * 16     # the warp grid's M of a reduction GEMM: 160 (rows past the halo skip)
HALO_PASS_N = WARPS_N * HALO_NI * 8    # N of one reduction pass: 64 channels
assert OUT_ROWS == TILE * TILE and HALO_ROWS == STAGE_ROWS and OUT_PASS_N == STAGE_COLS
assert reduction_slice(1, 1) == HALO_NI * 8  # a cluster's slices come in whole warp columns of the reduction
assert (OUT_STAGE_ROWS, HALO_STAGE_ROWS) == (OUT_ROWS + OUT_PASS_N, HALO_ROWS + HALO_PASS_N)
WARPS = THREADS // 32
MMA_FLOPS = 2 * 16 * 8 * 16  # one m16n8k16: the unit of tensor work below

#: dtype label -> (element bytes, MathMode value of the kernel instantiation)
DTYPES = {"f16": (2, 0), "bf16": (2, 1), "tf32": (4, 2), "f32": (4, 3)}

#: The GEMM loops of a channels_last block (x and the model channels_last, as users convert one): "1x1" and
#: "reduction" read x with 16-byte cp.async, "pool" copies x's halo with cp.async and takes the 3x3 max from
#: shared memory, "window" is the k x k GEMM reading A in place from the reduction. An NCHW block (x and the
#: model as PyTorch makes them) runs "... element" loops, which read x element by element, and "window
#: staged", which gathers the windows of its OIHW weights' K order into the A stage. Their m16n8 tiles a
#: warp multiplies: FusedPlan's warp tiles (2 x 4, or 5 x 2 in the reduction).
LOOP_WARP_TILES = {"1x1": 8, "pool": 8, "reduction": 10, "window": 8,
                   "1x1 element": 8, "pool element": 8, "reduction element": 10, "window staged": 8}


def loop_tensor_ops(kind: str, dtype: str, step: int | None = None) -> int:
    """Tensor ops (m16n8k16 equivalents) of one K step of the busiest warp in loop `kind`: its warp tiles x
    the K step in 16s (the step: k_chunk of the dtype, 64 at 16 bits and 32 in TF32, unless given)."""
    return LOOP_WARP_TILES[kind] * (step or k_chunk(DTYPES[dtype][0])) // 16


def k_step_and_granule(dtype: str, measured: dict) -> tuple:
    """K elements of a step, and the K granularity of the multiplies: the last step of a GEMM multiplies only
    its mma slices within K (k16, TF32's k8); the exact float32 path multiplies it whole. A MEASURED_SASS entry
    with k_chunk (a build before change 24) stepped that many elements and multiplied every step whole."""
    if "k_chunk" in measured:
        return measured["k_chunk"], measured["k_chunk"]
    step = k_chunk(DTYPES[dtype][0])
    return step, {"f16": 16, "bf16": 16, "tf32": 8}.get(dtype, step)


#: Layouts of x and the model -> each GEMM's loop kind: "nhwc", both channels_last; "nchw", both as PyTorch
#: makes them; "nhwc_oihw", a channels_last x given to a block that was not converted (its k x k weights
#: OIHW, whose windows the kernel stages: the README's usage, and what the Nsight Compute program profiled
#: as "channels_last" before 2026-12-07).
LAYOUTS = {"nhwc": {"1x1": "1x1", "pool": "pool", "reduction": "reduction", "window": "window"},
           "nchw": {"1x1": "1x1 element", "pool": "pool element", "reduction": "reduction element",
                    "window": "window staged"},
           "nhwc_oihw": {"1x1": "1x1", "pool": "pool", "reduction": "reduction", "window": "window staged"}}

#: The kernel as it builds today (sass_report.py on sm_90; docs/performance.md): registers per thread and,
#: per loop, the SASS instructions of one K step (one trip of that tensor-core inner loop; "window staged":
#: the larger of its two K orders' loops). The exact float32 kernel has no tensor loops.
#: tests/test_sass_report.py holds these against the built extension's SASS.
#: `--sass-report FILE` replaces them with a fresh report's registers and its worst loop's ratio for every loop.
#: An entry may say skips_idle_warps=False for a build whose warps multiply in every pass (before 2026-11-28),
#: skips_edge_tiles=False for one that computes every row of an edge tile (before change 18, tile_frames),
#: interleaves_m_tiles=False for one whose warp rows take their m tiles in blocks (before change 19), and
#: max_channel_chunk=256 for one whose planner halved a chunk of 256 channels (before change 20), and
#: k_chunk=32 for one whose K step was 32 elements in every dtype, its last step multiplied whole (before
#: change 24), and clips_halo=False for one whose reduction computed its halo's rows down to the last in the
#: image, every column (before change 30). shares_reduction_in_clusters=True: a build whose 3x3 tasks of a tile
#: share one reduction in a thread-block cluster where the device has them (change 35; older builds lack it).
#: transposes_output_tiles=True: a build whose output GEMMs compute C^T, a tile's frame rows 8 pixels at a time
#: (change 37, TileFrame.output_rows; older builds lack it).
#: `pass_instructions`, per loop kind: the instructions one pass of that GEMM issues outside its K loop on a full
#: warp's path (sass_report.py's "pass path"), charged per pass against CALIBRATION_PASS_INSTRUCTIONS. Since
#: change 24 a pass's last K step is peeled out of the loop, so it is among them (`peels_last_k_step`); where a
#: loop kind's pass path holds more steps than that one, `peeled_k_steps` says how many (change 36: the NCHW
#: 1x1's step that issues the last chunk, with its channel tests, is peeled too; change 38: the NCHW pool's and
#: reduction's).
_PASS_16 = {"1x1": 339, "pool": 462, "reduction": 359, "window": 356, "1x1 element": 761, "pool element": 1222,
            "reduction element": 1017, "window staged": 382}
_PEELED_ELEMENT = {"1x1 element": 2, "pool element": 2, "reduction element": 2}
MEASURED_SASS = {
    "f16": dict(registers=128, loop_instructions={"1x1": 107, "pool": 187, "reduction": 148, "window": 133,
                                                  "1x1 element": 170, "pool element": 300, "reduction element": 310,
                                                  "window staged": 176}, pass_instructions=_PASS_16,
                peels_last_k_step=True, peeled_k_steps=_PEELED_ELEMENT, shares_reduction_in_clusters=True),
    "bf16": dict(registers=128, loop_instructions={"1x1": 107, "pool": 187, "reduction": 148, "window": 133,
                                                   "1x1 element": 170, "pool element": 300, "reduction element": 310,
                                                   "window staged": 176}, pass_instructions=_PASS_16,
                 peels_last_k_step=True, peeled_k_steps=_PEELED_ELEMENT, shares_reduction_in_clusters=True),
    "tf32": dict(registers=255, loop_instructions={"1x1": 178, "pool": 257, "reduction": 236, "window": 172,
                                                   "1x1 element": 206, "pool element": 302, "reduction element": 303,
                                                   "window staged": 192},
                 pass_instructions={"1x1": 402, "pool": 459, "reduction": 583, "window": 390, "1x1 element": 705,
                                    "pool element": 990, "reduction element": 1085, "window staged": 385},
                 peels_last_k_step=True, peeled_k_steps=_PEELED_ELEMENT, shares_reduction_in_clusters=True),
    "f32": dict(registers=255, loop_instructions=None, shares_reduction_in_clusters=True),
}


#: The same "pass path" counts for the build the fitted per-pass constant (Device.pass_overhead_instructions)
#: stands for: 50c4bcb, the kernel of the second GPU run, whose times re-fitted as what ran gave 1760
#: (calibrate_plan.py --unconverted, change 32) against the constant's 1750. It ran every K step in its loop.
#: A build whose MEASURED_SASS entry has pass_instructions is charged, per pass, the constant plus its pass
#: path's difference from these, less one loop trip where its pass path holds the peeled last K step (the loop
#: term already charges every step): what a pass issues outside its loop is measured (change 34); the rest of
#: the constant (the pipeline's fill, its barriers and stores' latency) stays a fit.
CALIBRATION_PASS_INSTRUCTIONS = {
    dtype: counts for dtypes, counts in (
        (("f16", "bf16"), {"1x1": 371, "pool": 375, "reduction": 392, "window": 364, "1x1 element": 472,
                           "pool element": 556, "reduction element": 530, "window staged": 391}),
        (("tf32",), {"1x1": 362, "pool": 369, "reduction": 474, "window": 351, "1x1 element": 444,
                     "pool element": 505, "reduction element": 618, "window staged": 379}))
    for dtype in dtypes}


def pass_instruction_deltas(measured: dict, dtype: str) -> dict:
    """Per loop kind, what a pass of `measured`'s build issues outside its loop beyond the calibration build's
    (CALIBRATION_PASS_INSTRUCTIONS), its peeled K steps taken off (one trip of its loop each, which the loop
    term charges: the last, and `peeled_k_steps` more where given); empty (nothing charged) for a build that
    does not record its passes."""
    counts, reference = measured.get("pass_instructions"), CALIBRATION_PASS_INSTRUCTIONS.get(dtype)
    if not counts or not reference:
        return {}
    loops = measured["loop_instructions"] if measured.get("peels_last_k_step") else {}
    steps = measured.get("peeled_k_steps", {})
    return {kind: counts[kind] - steps.get(kind, 1) * loops.get(kind, 0) - reference[kind]
            for kind in counts if kind in reference}


def instructions_per_tensor_op(measured: dict, dtype: str) -> dict | None:
    """Per loop kind, SASS instructions per tensor op: from a per-loop table (loop_instructions, per K step of
    `dtype`'s build) or one ratio for every loop (instructions_per_tensor_op, what a SASS report gives); None
    without tensor loops."""
    if measured.get("loop_instructions"):
        step = k_step_and_granule(dtype, measured)[0]
        return {kind: count / loop_tensor_ops(kind, dtype, step) for kind, count in measured["loop_instructions"].items()}
    ratio = measured.get("instructions_per_tensor_op")
    return None if ratio is None else {kind: ratio for kind in LOOP_WARP_TILES}


@dataclass(frozen=True)
class Device:
    """An H100 SXM5 (docs/performance.md says where each number comes from)."""

    sms: int = 132
    clock_hz: float = 1.83e9            # the clock NVIDIA's peak numbers are quoted at
    schedulers_per_sm: int = 4          # each issues at most one instruction per cycle
    registers_per_sm: int = 65536
    max_threads_per_sm: int = 2048
    max_ctas_per_sm: int = 32
    shared_bytes_per_sm: int = 233472   # 228 KiB
    shared_bytes_per_cta: int = 232448  # 227 KiB: the most one CTA may opt into
    shared_reserved_per_cta: int = 1024
    l2_bytes: float = 50e6
    dram_bytes_per_s: float = 3.35e12 * 0.8  # HBM3 peak, of which a streaming kernel reaches about 80%
    # m16n8k16-equivalents per SM per cycle: the dense tensor peak (989 TFLOP/s in 16 bits, 495 in TF32) is
    # 1 per cycle; mma.sync (what the kernel issues; wgmma is needed for the rest) reaches about 2/3 of it.
    mma_sync_fraction: float = 2 / 3
    fp32_flops_per_sm_cycle: int = 256  # 128 FMA lanes: the exact float32 kernel's rate
    # Cycles between one warp's consecutive issues (dependency and memory latency): a scheduler issues every
    # cycle only with this many warps ready. Measured by Nsight Compute on the H200 (2026-11-28, the fused
    # kernel at 8 warps a CTA, 1 CTA an SM: smsp__average_warp_latency_per_inst_issued 6.8-8.9 over six
    # launches, issue active 22-29%); benchmarks/results/2026-11-28-h200.
    warp_cycles_per_issue: float = 7.6
    # Instructions a warp issues outside the GEMM loops: per GEMM pass (zeroing the accumulators, setting up
    # the streams, filling and draining the pipeline, the epilogue's bias, ReLU and element-wise stores) and
    # per CTA (task decode, pointers, the window table). Fitted to the same run: with the loop counts of the
    # kernel it profiled (ffca75c), these two put the model within 0.95-1.08x of all six measured times
    # (tests/test_plan.py::test_model_reproduces_the_first_gpu_run). Not measured from SASS: the epilogue is
    # straight-line code whose dynamic count depends on the bounds it checks.
    pass_overhead_instructions: float = 1750
    cta_overhead_instructions: float = 1100
    # Thread-block clusters (sm_90): the 3x3 branch's tasks of a tile share its reduction (plan_cluster_ctas).
    clusters: bool = True
    # What a CTA that shares the reduction waits at its cluster barriers: the one before its first store into
    # another CTA (mostly hidden: it arrives when it starts) and the one after the reduction, where it waits for
    # the slowest slice. An estimate (a cluster barrier's round trip is a few hundred cycles), not yet measured.
    cluster_barrier_cycles: float = 1000

    def tensor_ops_per_cycle(self, dtype: str) -> float:
        if dtype == "f32":
            return self.fp32_flops_per_sm_cycle / MMA_FLOPS
        return (1.0 if dtype in ("f16", "bf16") else 0.5) * self.mma_sync_fraction

    def dense_peak_flops(self, dtype: str) -> float:
        """The device's dense peak (wgmma, or FMA for float32): for the floor, not for this kernel."""
        per_cycle = self.fp32_flops_per_sm_cycle if dtype == "f32" else (MMA_FLOPS if dtype in ("f16", "bf16")
                                                                         else MMA_FLOPS / 2)
        return per_cycle * self.sms * self.clock_hz


@dataclass(frozen=True)
class Gemm:
    """One run_gemm call of a CTA: `passes` passes of N = pass_n channels, each over K in steps of k_step."""

    rows: int         # M the tensor cores compute (the pixels rounded up to 16-row tiles, or 8: by_tile_row)
    issued_rows: int  # M of the warp grid: its warps run the whole loop even where their tiles are skipped
    pass_n: int
    passes: int
    k: int            # K: input channels (x taps)
    k_step: int       # K elements a step (a K chunk)
    k_granule: int    # K the multiplies compute comes in these (k_step_and_granule)
    channels: int     # N: the channels computed (the last pass may be partial)
    skips_idle_warps: bool = True  # the tensor-core modes; the exact-FP32 path computes every warp's tiles
    kind: str = "1x1"  # its loop in LOOP_WARP_TILES
    interleaved: bool = True  # the warp rows' m tiles interleave (m_tile), rather than come in blocks

    @property
    def k_chunks(self) -> int:
        return _ceil_div(self.k, self.k_step)

    @property
    def k_computed(self) -> int:
        """K the tensor cores compute per pass: K rounded up to whole granules."""
        return _ceil_div(self.k, self.k_granule) * self.k_granule

    @property
    def k_steps(self) -> int:
        return self.passes * self.k_chunks

    @property
    def computed_n(self) -> int:
        """Channels the tensor cores compute over all passes: in each pass, the warps (WARPS_N across N, each
        pass_n / WARPS_N wide) that hold at least one channel; a warp past the pass's channels skips it."""
        if not self.skips_idle_warps:
            return self.passes * self.pass_n
        warp_n = self.pass_n // WARPS_N
        return sum(_ceil_div(min(self.pass_n, self.channels - begin), warp_n) * warp_n
                   for begin in range(0, self.channels, self.pass_n))

    @property
    def flops(self) -> int:
        return 2 * self.rows * self.computed_n * self.k_computed

    @property
    def issued_tensor_ops(self) -> float:
        """m16n8k16 equivalents of the loop iterations its warps run (skipped M tiles included)."""
        return self.issued_rows * self.computed_n * self.k_computed * 2 / MMA_FLOPS

    @property
    def busiest_warp_tensor_ops(self) -> float:
        """The same for the busiest warp, its instruction stream's length in tensor ops: the first, which has
        tiles in every pass and, the warp rows' m tiles being interleaved (m_tile in inception_kernel.h), the
        larger half of the m tiles computed (in blocks: the first ones, its whole share)."""
        m_tiles = _ceil_div(_ceil_div(self.rows, 16), WARPS_M) if self.interleaved else self.rows // 16
        warp_rows, warp_n = min(self.issued_rows // WARPS_M, 16 * m_tiles), self.pass_n // WARPS_N
        return warp_rows * warp_n * self.passes * self.k_computed * 2 / MMA_FLOPS


@dataclass(frozen=True)
class Task:
    branch: str  # "3x3", "5x5", "1x1", "pool": the kernel's launch order (task_of)
    channel_begin: int
    channel_count: int
    gemms: tuple

    @property
    def k_steps(self) -> int:
        return sum(g.k_steps for g in self.gemms)

    @property
    def flops(self) -> int:
        return sum(g.flops for g in self.gemms)


def _ceil_div(a, b):
    return -(-a // b)


def block_shape(config: InceptionConfig, kernel_sizes=(3, 5)) -> BlockShape:
    return BlockShape(*config.block_args, *kernel_sizes)


@dataclass(frozen=True)
class TileFrame:
    """An image tile as the kernel runs it (tile_frame in inception_kernel.h): transposed where fewer of its
    columns than rows lie in the image and x is read in 16-byte vectors, so that its pixels outside are its
    last frame rows. `rows`: its frame rows in the image; `y0`, `height`: its first frame row and the image's
    frame height; `columns`, `x0`, `width`: the same across."""

    rows: int
    y0: int
    height: int
    columns: int
    x0: int
    width: int

    def output_rows(self, by_tile_row: bool = False) -> int:
        """M the output GEMMs compute: their m tiles (two frame rows each) that hold pixels of the image; with
        `by_tile_row` (change 37: the tensor cores compute C^T, multiply_transposed) their frame rows in the
        image, but for the first m tile of each warp row, computed whole (a tile of 1 or 3 rows computes 2 or 4)."""
        if by_tile_row:
            return TILE * (self.rows if self.rows >= 2 * WARPS_M else 2 * _ceil_div(self.rows, 2))
        return 16 * _ceil_div(self.rows, 2)

    def halo_rows(self, kernel: int, clipped: bool = True) -> int:
        """M the reduction computes: the pixels of its halo clipped to the image, in whole m tiles (change 30);
        not `clipped` (the kernel before it): its halo's m tiles down to the last halo row in the image."""
        width, halo = TILE + kernel - 1, kernel // 2
        if not clipped:
            rows_inside = min(width, self.height - (self.y0 - halo))
            return 16 * _ceil_div(rows_inside * width, 16)
        rows = min(self.y0 - halo + width, self.height) - max(self.y0 - halo, 0)
        columns = min(self.x0 - halo + width, self.width) - max(self.x0 - halo, 0)
        return 16 * _ceil_div(rows * columns, 16)


def tile_frames(height: int, width: int, transposes: bool = True) -> list:
    """The TileFrame of every tile of an image, in tile order. `transposes`: x is read in 16-byte vectors
    (channels_last), the only case where the kernel transposes a tile."""
    frames = []
    for y0 in range(0, height, TILE):
        for x0 in range(0, width, TILE):
            rows, columns = min(TILE, height - y0), min(TILE, width - x0)
            transposed = transposes and columns < rows
            frames.append(TileFrame(columns, x0, width, rows, y0, height) if transposed
                          else TileFrame(rows, y0, height, columns, x0, width))
    return frames


def tasks(s: BlockShape, chunk: int, skips_idle_warps: bool = True, layout: str = "nhwc",
          tile: TileFrame | None = None, interleaved: bool = True, k_step: int | None = None, k_granule: int | None = None,
          clips_halo: bool = True, cluster_ctas: int = 1, output_by_tile_row: bool = False) -> list:
    """The tasks of a tile in launch order (task_of in inception_params.h) with the GEMMs each CTA runs, each
    GEMM's loop kind that of `layout` (LAYOUTS). `tile`: the tile's frame, whose GEMMs skip the m tiles
    outside the image; None: a tile inside the image (every m tile of the halo computed). `interleaved`: as
    Gemm.interleaved. `k_step`, `k_granule`: as Gemm's (k_step_and_granule; by default 16-bit's). `clips_halo`:
    the reduction computes its halo clipped to the image (TileFrame.halo_rows). `cluster_ctas` > 1: the 3x3
    tasks share the reduction in a cluster (plan_cluster_ctas), task i computing slice i of its channels
    (reduction_slice), none where that slice is empty. `output_by_tile_row`: the output GEMMs compute C^T
    (TileFrame.output_rows)."""
    kinds = LAYOUTS[layout]
    default_step, default_granule = k_step_and_granule("bf16", {})
    k_step, k_granule = k_step or default_step, k_granule or default_granule
    result = []
    for branch, channels in (("3x3", s.ch3x3), ("5x5", s.ch5x5), ("1x1", s.ch1x1), ("pool", s.pool_proj)):
        for begin in range(0, channels, chunk):
            count = min(chunk, channels - begin)
            output_passes = _ceil_div(count, OUT_PASS_N)
            out_rows = tile.output_rows(output_by_tile_row) if tile else OUT_ROWS
            if branch in ("1x1", "pool"):
                gemms = (Gemm(out_rows, OUT_ROWS, OUT_PASS_N, output_passes, s.in_channels, k_step, k_granule, count,
                              skips_idle_warps, kind=kinds[branch], interleaved=interleaved),)
            else:
                kernel, reduced = (s.k3, s.ch3x3red) if branch == "3x3" else (s.k5, s.ch5x5red)
                computed = reduced  # the reduced channels this CTA computes
                if branch == "3x3" and cluster_ctas > 1:
                    slice_ = reduction_slice(reduced, cluster_ctas)
                    computed = max(0, min(slice_, reduced - begin // chunk * slice_))
                halo_rows = tile.halo_rows(kernel, clips_halo) if tile else 16 * _ceil_div(halo_pixels(kernel), 16)
                reduction = Gemm(halo_rows, HALO_ROWS, HALO_PASS_N, _ceil_div(computed, HALO_PASS_N), s.in_channels,
                                 k_step, k_granule, computed, skips_idle_warps, kind=kinds["reduction"],
                                 interleaved=interleaved)
                window = Gemm(out_rows, OUT_ROWS, OUT_PASS_N, output_passes, kernel * kernel * reduced, k_step,
                              k_granule, count, skips_idle_warps, kind=kinds["window"], interleaved=interleaved)
                gemms = (reduction, window) if computed else (window,)
            result.append(Task(branch, begin, count, gemms))
    assert len(result) == count_tasks(s, chunk)
    return result


def ctas_per_sm(registers: int, shared_bytes: int, device: Device) -> int:
    """Occupancy: CTAs of THREADS threads that fit on one SM by registers, shared memory and threads."""
    registers_per_warp = _ceil_div(registers * 32, 256) * 256  # allocated per warp in units of 256
    by_registers = device.registers_per_sm // (registers_per_warp * WARPS)
    by_shared = device.shared_bytes_per_sm // (shared_bytes + device.shared_reserved_per_cta)
    by_threads = device.max_threads_per_sm // THREADS
    return min(by_registers, by_shared, by_threads, device.max_ctas_per_sm)


def _makespan(durations_in_order, slots: int) -> float:
    """CTAs dispatched in grid order to the first free slot (what the block scheduler does, roughly)."""
    free = [0.0] * slots
    for duration in durations_in_order:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


@dataclass
class Case:
    block: str
    batch: int
    dtype: str
    layout: str
    height: int
    width: int
    grid: tuple
    ctas: int
    ctas_per_sm: int
    waves: int
    channel_chunk: int
    tasks: int
    tasks_per_branch: dict
    work_multiplier: float
    executed_flops: int
    ideal_flops: int
    longest_cta_ksteps: int
    shared_bytes: int
    x_reads: int
    dram_bytes: int
    min_dram_bytes: int
    registers: int
    instructions_per_tensor_op: dict | None  # per loop kind
    issue_us: float
    tensor_us: float
    dram_us: float
    model_us: float
    bound: str
    floor_us: float
    route: str  # what the op runs for such an input (routing on): "kernel", "kernel_on_channels_last_copy", "unfused"
    copy_us: float = 0.0  # a routed call's copies (x and the output on the NCHW route; OIHW k x k weights), in model_us
    weights_copied: bool = False  # the k x k weights read through channels_last copies (change 29)
    cluster_ctas: int = 1  # CTAs a thread-block cluster (the 3x3 tasks share the reduction); 1: none
    assumptions: dict = field(default_factory=dict)


#: The op's routing rule (route_for_case, csrc/inception_fused.cpp, which holds the measurements behind it),
#: mirrored for the plan; tests/test_plan.py checks the two agree.
CHANNELS_LAST_COPY_MIN_PIXELS = 32 * 7 * 7
TF32_UNFUSED_MIN_PIXELS = 256 * 7 * 7


def route(pixels: int, dtype: str, dense_nchw: bool, pixel_bytes: int, unfused: bool = True) -> str:
    """Where the op sends an input of `pixels` (batch x height x width) pixels in math mode `dtype`.
    `unfused=False`: for a caller without the unfused route (the CuPy path), the kernel's routes only."""
    if unfused and dtype == "tf32" and pixels >= TF32_UNFUSED_MIN_PIXELS:
        return "unfused"
    if dtype != "f32" and dense_nchw and pixel_bytes % 16 == 0 and pixels >= CHANNELS_LAST_COPY_MIN_PIXELS:
        return "kernel_on_channels_last_copy"
    return "kernel"


def window_weights_copied(pixels: int, dtype: str) -> bool:
    """Whether a call on `pixels` pixels reads its 3x3 and 5x5 weights through channels_last copies, on any
    route to the kernel (window_weights_copied in csrc/inception_fused.cpp; change 29). The exact float32
    kernel stages its windows either way."""
    return dtype != "f32" and pixels >= CHANNELS_LAST_COPY_MIN_PIXELS


def reads_windows_in_place(reduced_channels: int, element_bytes: int) -> bool:
    """Whether the kernel reads a k x k convolution's windows in place from channels_last (OHWI) weights: the
    reduced channels are whole 16-byte vectors (with_window_weights_in_place, DirectWindows); other counts
    are staged, and copying their weights would gain nothing."""
    return reduced_channels * element_bytes % 16 == 0


def plan_case(config: InceptionConfig, batch: int, dtype: str, device: Device = Device(), sass: dict | None = None,
              kernel_sizes=(3, 5), layout: str = "nhwc", routing: bool = True) -> Case:
    """The plan and the model for one block, batch, dtype and layout (LAYOUTS: "nhwc", x and the model
    channels_last; "nchw", as PyTorch makes them; "nhwc_oihw", a channels_last x and a block not converted).
    Raises UnsupportedCase where the kernel does not run the case (it falls back to the unfused path). A case
    is modeled as what the op runs (routing on): an NCHW case it routes to a channels_last copy (`route`) as
    the channels_last kernel plus the copies of x and the k x k weights in and of the output back at the
    DRAM rate (`copy_us`); from the same size on, OIHW k x k weights as copied to channels_last for the call
    (change 29). `routing=False` models the kernel on the input and weights as they are (what
    `fused_inception.routing(False)` and the Nsight Compute program run)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    element_bytes = DTYPES[dtype][0]
    measured = (sass or MEASURED_SASS)[dtype]
    s = block_shape(config, kernel_sizes)
    height = width = config.spatial

    smem = shared_bytes(s, element_bytes)
    if smem > device.shared_bytes_per_cta:
        raise UnsupportedCase(f"the recomputed reduction needs {smem} bytes of shared memory, over the "
                              f"device's {device.shared_bytes_per_cta}")
    tiles = _ceil_div(height, TILE) * _ceil_div(width, TILE)
    grid_x = batch * tiles
    the_route = route(batch * height * width, dtype, layout == "nchw", s.in_channels * element_bytes)
    copied = routing and the_route == "kernel_on_channels_last_copy"
    # OIHW k x k weights read through channels_last copies (inception_fused.cpp, window_weights_copied): on the
    # NCHW route, and for an unconverted block's channels_last x from the same size on.
    weights_copied = routing and (copied or (layout == "nhwc_oihw" and the_route == "kernel"
                                             and window_weights_copied(batch * height * width, dtype)))
    kernel_layout = "nhwc" if copied or weights_copied else layout
    if "max_channel_chunk" in measured:  # the planner before change 20: halving from its cap
        chunk = measured["max_channel_chunk"]
        while chunk > STAGE_COLS and count_tasks(s, chunk) * grid_x < 2 * device.sms:
            chunk //= 2
    else:
        chunk = plan_channel_chunk(s, grid_x, device.sms)
    # Each tile's tasks (its frame's GEMMs): edge tiles skip the m tiles outside the image.
    frames = (tile_frames(height, width, transposes=kernel_layout != "nchw") if measured.get("skips_edge_tiles", True)
              else [None] * tiles)
    skips = dtype != "f32" and measured.get("skips_idle_warps", True)
    interleaved = measured.get("interleaves_m_tiles", True)
    k_step, k_granule = k_step_and_granule(dtype, measured)
    cluster_ctas = plan_cluster_ctas(s, chunk, device.clusters and measured.get("shares_reduction_in_clusters", False))
    tasks_of = {frame: tasks(s, chunk, skips_idle_warps=skips, layout=kernel_layout, tile=frame, interleaved=interleaved,
                             k_step=k_step, k_granule=k_granule, clips_halo=measured.get("clips_halo", True),
                             cluster_ctas=cluster_ctas,
                             output_by_tile_row=dtype != "f32" and measured.get("transposes_output_tiles", False))
                for frame in set(frames)}
    task_list = tasks_of[frames[0]]
    # The grid runs each tile's tasks in groups of cluster_ctas, the last group padded with CTAs that do
    # nothing (fused_grid_ctas).
    groups = _ceil_div(len(task_list), cluster_ctas)
    ctas = grid_x * groups * cluster_ctas
    occupancy = ctas_per_sm(measured["registers"], smem, device)
    slots = device.sms * occupancy

    executed = batch * sum(t.flops for frame in frames for t in tasks_of[frame])
    ideal = config.flops(batch, kernel_sizes=kernel_sizes)

    # DRAM: the grid runs bands of tiles whose x is at most BAND_BYTES, each band's tasks in turn (cta_of), so
    # x comes from DRAM once if a band's x, with the output slices and weights its CTAs touch, stays in L2;
    # otherwise once per task.
    pixels = batch * height * width
    x_bytes = pixels * s.in_channels * element_bytes
    weight_bytes = config.weight_count(kernel_sizes) * element_bytes
    band_tiles = plan_band_tiles(grid_x, s.in_channels, element_bytes)
    band_bytes = band_tiles * TILE * TILE * (s.in_channels + chunk) * element_bytes + weight_bytes
    x_reads = 1 if band_bytes <= device.l2_bytes else len(task_list)
    dram_bytes = x_bytes * x_reads + pixels * s.out_channels * element_bytes + weight_bytes
    min_bytes = config.min_bytes(batch, element_bytes, kernel_sizes=kernel_sizes)

    # Time: every warp issues R instructions per tensor op of a loop (R per loop kind). A CTA takes the longest
    # of: its busiest warp's instructions at one per warp_cycles_per_issue (latency: one warp cannot issue
    # faster), all its warps' instructions over the four schedulers (throughput), and its tensor ops at the
    # tensor rate; CTAs sharing an SM share the schedulers and the tensor pipe (x occupancy), not their
    # latency. CTAs are list-scheduled in grid order onto SMs x occupancy slots. Then the larger of that and
    # the DRAM time.
    ratios = instructions_per_tensor_op(measured, dtype)
    ratio = (lambda kind: ratios[kind]) if ratios else (lambda kind: 0.0)
    rate = device.tensor_ops_per_cycle(dtype)

    pass_deltas = pass_instruction_deltas(measured, dtype)

    def cta_cycles(task):
        overhead = (sum((device.pass_overhead_instructions + pass_deltas.get(g.kind, 0)) * g.passes
                        for g in task.gemms)
                    + device.cta_overhead_instructions)  # per warp, outside the loops
        busiest = sum(ratio(g.kind) * g.busiest_warp_tensor_ops for g in task.gemms) + overhead
        every_warp = sum(ratio(g.kind) * g.issued_tensor_ops for g in task.gemms) + WARPS * overhead
        latency = busiest * device.warp_cycles_per_issue
        if cluster_ctas > 1 and task.branch == "3x3":
            latency += device.cluster_barrier_cycles
        throughput = occupancy * every_warp / device.schedulers_per_sm
        tensor = occupancy * task.flops / MMA_FLOPS / rate
        return max(latency, throughput), tensor

    per_cta = {frame: [cta_cycles(t) for t in frame_tasks] + [(0.0, 0.0)] * (groups * cluster_ctas - len(frame_tasks))
               for frame, frame_tasks in tasks_of.items()}  # a padding CTA: negligible
    in_grid_order = []
    for cta in range(ctas):
        tile, group = cta_of(cta // cluster_ctas, grid_x, groups, band_tiles)
        in_grid_order.append(per_cta[frames[tile % tiles]][group * cluster_ctas + cta % cluster_ctas])
    compute_s = _makespan([max(issue, tensor) for issue, tensor in in_grid_order], slots) / device.clock_hz
    # The same schedule with only one of the two limits, to say which one binds.
    issue_s = _makespan([i for i, _ in in_grid_order], slots) / device.clock_hz
    tensor_s = _makespan([t for _, t in in_grid_order], slots) / device.clock_hz
    dram_s = dram_bytes / device.dram_bytes_per_s
    # A routed call's copies run as their own kernels, before and after: each reads and writes its tensor once.
    # The k x k weights are copied where the kernel then reads their windows in place (whole 16-byte vectors of
    # reduced channels: with_window_weights_in_place).
    copy_bytes = 0
    if weights_copied:
        copy_bytes = 2 * element_bytes * sum(out * reduced * k * k for out, reduced, k in
                                             ((s.ch3x3, s.ch3x3red, s.k3), (s.ch5x5, s.ch5x5red, s.k5))
                                             if reads_windows_in_place(reduced, element_bytes))
    if copied:
        copy_bytes += 2 * (x_bytes + pixels * s.out_channels * element_bytes)
    copy_s = copy_bytes / device.dram_bytes_per_s
    model_s = max(compute_s, dram_s) + copy_s
    bound = "dram" if dram_s >= compute_s else ("issue" if issue_s >= tensor_s else "tensor")
    floor_s = max(ideal / device.dense_peak_flops(dtype), min_bytes / device.dram_bytes_per_s)

    per_branch = {}
    for t in task_list:
        per_branch[t.branch] = per_branch.get(t.branch, 0) + 1
    return Case(block=config.name, batch=batch, dtype=dtype, layout=layout, height=height, width=width,
                grid=(grid_x, len(task_list)),
                ctas=ctas, ctas_per_sm=occupancy, waves=_ceil_div(ctas, slots), channel_chunk=chunk,
                tasks=len(task_list), tasks_per_branch=per_branch, work_multiplier=executed / ideal,
                executed_flops=executed, ideal_flops=ideal,
                longest_cta_ksteps=max(t.k_steps for frame_tasks in tasks_of.values() for t in frame_tasks),
                shared_bytes=smem, x_reads=x_reads, dram_bytes=dram_bytes, min_dram_bytes=min_bytes,
                registers=measured["registers"], instructions_per_tensor_op=ratios,
                issue_us=issue_s * 1e6, tensor_us=tensor_s * 1e6, dram_us=dram_s * 1e6, model_us=model_s * 1e6,
                bound=bound, floor_us=floor_s * 1e6,
                route=the_route, copy_us=copy_s * 1e6, weights_copied=weights_copied, cluster_ctas=cluster_ctas,
                assumptions=dict(sms=device.sms, l2_bytes=device.l2_bytes, clock_hz=device.clock_hz,
                                 dram_bytes_per_s=device.dram_bytes_per_s,
                                 tensor_ops_per_sm_cycle=rate, schedulers_per_sm=device.schedulers_per_sm,
                                 warp_cycles_per_issue=device.warp_cycles_per_issue))


def sass_from_report(report: dict) -> dict:
    """Registers and instructions per tensor op per dtype from `scripts/sass_report.py --json` output: over the
    inception_kernel instantiations of each MathMode, the most registers and the largest inner-loop ratio."""
    modes = {mode: name for name, (_, mode) in DTYPES.items()}
    result = {}
    for kernel in report.get("kernels", []):
        match = re.search(r"inception_kernel<\(fused_inception::MathMode\)(\d+)", kernel.get("kernel", ""))
        if not match or int(match.group(1)) not in modes:
            continue
        dtype = modes[int(match.group(1))]
        ratios = [loop["instructions_per_tensor_op"] for loop in kernel.get("tensor_loops", [])]
        previous = result.get(dtype, dict(registers=0, instructions_per_tensor_op=None))
        ratio = max(ratios + [previous["instructions_per_tensor_op"] or 0], default=0) or None
        result[dtype] = dict(registers=max(kernel["registers"], previous["registers"]),
                             instructions_per_tensor_op=ratio, shares_reduction_in_clusters=True)
    missing = set(DTYPES) - set(result)
    if missing:
        raise ValueError(f"the SASS report lacks the inception_kernel instantiations for {sorted(missing)}")
    return result


# ---- command line -------------------------------------------------------------------------------------------


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _choice_list(choices):
    """An argparse type: comma-separated names, each one of `choices`."""
    def parse(text):
        values = [v for v in text.split(",") if v]
        if not values or any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}, comma-separated; got {text!r}")
        return values
    return parse


def _blocks(args) -> list:
    if args.channels:
        if len(args.channels) != 7:
            raise SystemExit("--channels takes 7 numbers: in,1x1,3x3red,3x3,5x5red,5x5,pool_proj")
        if args.size is None:
            raise SystemExit("--channels needs --size (the image side)")
        return [InceptionConfig("custom", *args.channels, spatial=args.size)]
    if args.size is not None:
        raise SystemExit("--size goes with --channels (GoogLeNet's blocks have their own sizes)")
    names = args.block.split(",") if args.block else [c.name for c in GOOGLENET_BLOCKS]
    unknown = [n for n in names if n not in BLOCKS_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown block {unknown[0]!r}; choose from {', '.join(BLOCKS_BY_NAME)}")
    return [BLOCKS_BY_NAME[n] for n in names]


COLUMNS = (  # (header, width, format of a Case)
    ("block", 6, lambda c: c.block), ("batch", 5, lambda c: str(c.batch)), ("dtype", 5, lambda c: c.dtype),
    ("layout", 9, lambda c: c.layout),
    ("grid", 9, lambda c: f"{c.grid[0]}x{c.grid[1]}"), ("clu", 3, lambda c: str(c.cluster_ctas)),
    ("CTAs", 6, lambda c: str(c.ctas)),
    ("/SM", 3, lambda c: str(c.ctas_per_sm)), ("waves", 5, lambda c: str(c.waves)),
    ("tasks", 11, lambda c: f"{c.tasks}x{c.channel_chunk}ch"), ("work", 5, lambda c: f"{c.work_multiplier:.2f}"),
    ("maxK", 5, lambda c: str(c.longest_cta_ksteps)), ("smemKB", 6, lambda c: f"{c.shared_bytes / 1024:.1f}"),
    ("DRAM MB", 8, lambda c: f"{c.dram_bytes / 1e6:.2f}"), ("min MB", 7, lambda c: f"{c.min_dram_bytes / 1e6:.2f}"),
    ("x rd", 4, lambda c: str(c.x_reads)), ("issue", 7, lambda c: f"{c.issue_us:.1f}"),
    ("tensor", 7, lambda c: f"{c.tensor_us:.1f}"), ("dram", 6, lambda c: f"{c.dram_us:.1f}"),
    ("model us", 8, lambda c: f"{c.model_us:.1f}"), ("bound", 6, lambda c: c.bound),
    ("floor", 6, lambda c: f"{c.floor_us:.1f}"),
    ("route", 7, lambda c: {"kernel_on_channels_last_copy": "cl-copy"}.get(
        c.route, "w-copy" if c.route == "kernel" and c.weights_copied else c.route)),
)


def format_table(cases: list) -> str:
    lines = [" ".join(f"{h:>{w}}" for h, w, _ in COLUMNS)]
    lines += [" ".join(f"{fmt(c):>{w}}" for _, w, fmt in COLUMNS) for c in cases]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_inception plan", description=__doc__.split("\n\n")[0],
                                     epilog="Columns: grid = tiles x tasks; /SM = CTAs per SM; work = executed "
                                            "tensor FLOPs / ideal; clu = CTAs a thread-block cluster (the 3x3 "
                                            "tasks share the reduction; 1: none); maxK = the longest CTA's K "
                                            "steps; x rd = times "
                                            "x is read from DRAM; issue, tensor, dram, model, floor in us. "
                                            "Assumptions: docs/performance.md.")
    parser.add_argument("--block", help="GoogLeNet blocks, comma-separated (default: all nine)")
    parser.add_argument("--channels", type=_int_list, help="a block of your own: in,1x1,3x3red,3x3,5x5red,5x5,pool")
    parser.add_argument("--size", type=int, help="its image side (with --channels)")
    parser.add_argument("--kernel-sizes", type=_int_list, default=[3, 5], help="k3,k5 (default 3,5)")
    parser.add_argument("--batch", type=_int_list, default=[1, 32, 256], help="comma-separated (default 1,32,256)")
    parser.add_argument("--dtype", type=_choice_list(DTYPES), default=["bf16"],
                        help=f"{','.join(DTYPES)} (default bf16)")
    parser.add_argument("--layout", type=_choice_list(LAYOUTS), default=["nhwc"],
                        help="nhwc (x and the model channels_last), nchw (as PyTorch makes them), nhwc_oihw (a "
                             "channels_last x, the block not converted), comma-separated (default nhwc)")
    parser.add_argument("--sms", type=int, default=Device.sms, help="multiprocessors (default 132, an H100 SXM)")
    parser.add_argument("--l2-mb", type=float, default=Device.l2_bytes / 1e6, help="L2 size in MB (default 50)")
    parser.add_argument("--clusters", action=argparse.BooleanOptionalAction, default=True,
                        help="the device launches thread-block clusters (sm_90, the default); --no-clusters: "
                             "as on an earlier GPU, or through CuPy")
    parser.add_argument("--sass-report", help="registers and instructions per tensor op from this "
                                              "`scripts/sass_report.py --json` output instead of today's numbers")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    args = parser.parse_args(argv)
    if args.sms < 1:
        parser.error("--sms must be positive")
    if len(args.kernel_sizes) != 2 or any(k not in (3, 5) for k in args.kernel_sizes):
        parser.error("--kernel-sizes takes two of 3 and 5")
    device = replace(Device(), sms=args.sms, l2_bytes=args.l2_mb * 1e6, clusters=args.clusters)
    sass = None
    if args.sass_report:
        with open(args.sass_report) as f:
            sass = sass_from_report(json.load(f))

    cases, refused = [], []
    for config in _blocks(args):
        for dtype in args.dtype:
            for layout in args.layout:
                for batch in args.batch:
                    try:
                        cases.append(plan_case(config, batch, dtype, device, sass, tuple(args.kernel_sizes), layout))
                    except UnsupportedCase as why:
                        refused.append(f"{config.name} batch {batch} {dtype} {layout}: not fused ({why})")
    if args.json:
        print(json.dumps([asdict(c) for c in cases], indent=1))
    else:
        print(format_table(cases))
    for line in refused:
        print(line, file=sys.stderr)
    return 0
