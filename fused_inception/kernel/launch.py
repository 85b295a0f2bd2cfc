"""Launching the fused kernel from Python, for the CuPy path (which has no C++ extension): the launch
parameters and the host plan, with NumPy or CuPy arrays. Needs only NumPy.

Mirrors csrc/kernels/inception_params.h (InceptionParams, WeightView, FusedPlan, the task order) and
csrc/kernels/inception_plan.cpp (the host plan). tests/test_cupy.py holds them against the C++: the byte
layout, the plan over a grid of shapes, and emulated launches of parameters built here.
"""

from dataclasses import dataclass

import numpy as np

# FusedPlan (csrc/kernels/inception_params.h)
THREADS = 256
# kFusedKernelMinCapability (csrc/device_support.cpp): bf16 mma.sync and cp.async need compute capability 8.0.
MIN_COMPUTE_CAPABILITY = (8, 0)
TILE = 8
K_CHUNK_16BIT, K_CHUNK_32BIT = 64, 32  # FusedPlan::kKChunk16 / kKChunk32: K staged per step (k_chunk)
STAGES = 2
STAGE_ROWS = 160  # A rows of the largest M (the reduction's)
STAGE_COLS = 128  # B rows of the largest N (an output pass)
# A stage's A + B rows (FusedPlan::kRowsPerStage): an output GEMM's tile pixels + one pass of channels, a
# reduction's STAGE_ROWS + one pass of 64 reduced channels (plan.py checks both against the warp tiling).
OUT_STAGE_ROWS, HALO_STAGE_ROWS = TILE * TILE + STAGE_COLS, STAGE_ROWS + 64
ROWS_PER_STAGE = max(OUT_STAGE_ROWS, HALO_STAGE_ROWS)
MAX_TASKS = 65535
BAND_BYTES = 16 << 20  # FusedPlan::kBandBytes

SHAPE_FIELDS = ("in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj", "k3", "k5")
#: The convolutions in InceptionParams::weights order (WeightIndex), and their biases.
CONVOLUTIONS = (("w1", "b1"), ("w3r", "b3r"), ("w3", "b3"), ("w5r", "b5r"), ("w5", "b5"), ("wp", "bp"))

#: WeightView: one convolution's weight and bias where they lie (row stride in elements).
WEIGHT_VIEW_DTYPE = np.dtype([
    ("weight", "<u8"), ("bias", "<u8"), ("row_stride", "<i8"), ("taps_outer", "<i4"), ("padding", "<i4"),
], align=True)

#: InceptionParams, field for field (natural alignment: 8-byte pointers and int64, 4-byte int32).
PARAMS_DTYPE = np.dtype([
    ("x", "<u8"), ("out", "<u8"), ("weights", WEIGHT_VIEW_DTYPE, (len(CONVOLUTIONS),)),
    ("batch", "<i8"), ("height", "<i8"), ("width", "<i8"),
    ("x_stride", "<i8", (4,)), ("out_stride", "<i8", (4,)),
    ("shape", "<i8", (len(SHAPE_FIELDS),)),
    ("tiles_h", "<i4"), ("tiles_w", "<i4"), ("x_vectorized", "<i4"), ("reduced_elements", "<i4"),
    ("channel_chunk", "<i4"), ("num_tasks", "<i4"), ("band_tiles", "<i4"), ("cluster_ctas", "<i4"),
], align=True)


class UnsupportedCase(ValueError):
    """The fused kernel does not cover this case (the message says why)."""


@dataclass(frozen=True)
class BlockShape:
    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    k3: int = 3
    k5: int = 5

    @property
    def out_channels(self):
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def as_tuple(self):
        return tuple(getattr(self, f) for f in SHAPE_FIELDS)


def _round_up(value, multiple):
    return (value + multiple - 1) // multiple * multiple


def k_chunk(element_bytes):
    """K elements staged per step: 64 at 16 bits, 32 at 32 (FusedPlan::k_chunk)."""
    return K_CHUNK_16BIT if element_bytes == 2 else K_CHUNK_32BIT


def stage_stride(element_bytes):
    return k_chunk(element_bytes) + 16 // element_bytes


def cta_of(cta, tiles, tasks, band_tiles):
    """(tile index, task index) of a CTA: bands of band_tiles tiles, task-major within a band (the kernel's
    cta_of)."""
    first_tile = cta // (band_tiles * tasks) * band_tiles
    in_band = cta - first_tile * tasks
    band_size = min(band_tiles, tiles - first_tile)
    return first_tile + in_band % band_size, in_band // band_size


def plan_band_tiles(tiles, in_channels, element_bytes):
    """Tiles per band: as many as keep a band's x within BAND_BYTES, then equal bands."""
    band = max(1, BAND_BYTES // max(1, TILE * TILE * in_channels * element_bytes))
    bands = -(-tiles // band)
    return -(-tiles // bands) if bands > 0 else 1


def count_tasks(s: BlockShape, chunk):
    return sum(-(-c // chunk) for c in (s.ch3x3, s.ch5x5, s.ch1x1, s.pool_proj))


def plan_channel_chunk(s: BlockShape, ctas_per_task, sm_count):
    widest = max(s.ch3x3, s.ch5x5)  # 1x1 and pool tasks recompute nothing: they split for free
    chunk = max(STAGE_COLS, _round_up(widest, STAGE_COLS))  # one task per spatial branch, in whole output passes
    while chunk > STAGE_COLS and count_tasks(s, chunk) * ctas_per_task < 2 * sm_count:  # one output pass at least
        chunk -= STAGE_COLS
    while count_tasks(s, chunk) > MAX_TASKS:
        chunk *= 2
    return chunk


def plan_cluster_ctas(s: BlockShape, chunk, device_has_clusters):
    """CTAs a thread-block cluster (plan_cluster_ctas in inception_params.h): the 3x3 branch's tasks of a tile,
    2 to 8 of them, share its reduction; 1: no clusters."""
    tasks = -(-s.ch3x3 // chunk)
    return tasks if device_has_clusters and 2 <= tasks <= 8 else 1


def reduction_slice(channels, ctas):
    """Reduced channels each CTA of a cluster computes: an equal share in whole 16-channel warp columns."""
    return _round_up(-(-channels // ctas), 16)


def reduced_row_stride(channels, element_bytes):
    vector = 16 // element_bytes
    vectors = -(-channels // vector)
    return (vectors + 1 if vectors % 2 == 0 else vectors) * vector


def halo_pixels(kernel):
    return (TILE + kernel - 1) ** 2


def window_groups(kernel, channels, element_bytes):
    return _round_up(kernel * kernel * channels, k_chunk(element_bytes)) // (16 // element_bytes)


def reduced_elements(s: BlockShape, element_bytes):
    pool_halo = STAGES * halo_pixels(3) * stage_stride(element_bytes)  # a pool task's halo stages of x (PoolStream)
    return max(halo_pixels(s.k3) * reduced_row_stride(s.ch3x3red, element_bytes),
               halo_pixels(s.k5) * reduced_row_stride(s.ch5x5red, element_bytes), pool_halo)


def shared_bytes(s: BlockShape, element_bytes):
    stage = STAGES * ROWS_PER_STAGE * stage_stride(element_bytes)
    groups = max(window_groups(s.k3, s.ch3x3red, element_bytes), window_groups(s.k5, s.ch5x5red, element_bytes))
    return _round_up(stage * element_bytes, 16) + reduced_elements(s, element_bytes) * element_bytes + 16 + 4 * groups


def build_params(s: BlockShape, *, x_ptr, out_ptr, weights, batch, height, width, x_strides, out_strides,
                 element_bytes, sm_count, shared_memory_limit):
    """InceptionParams for one launch (strides in elements), with its grid and shared memory:
    ``(params, (grid_x, 1), shared_bytes)``: one CTA per (tile, task), in bands (:func:`cta_of`). ``weights`` holds, per convolution in CONVOLUTIONS order,
    ``(weight_ptr, bias_ptr, row_stride, taps_outer)``: the weight's output-channel rows are dense in K order
    (channel, tap) (OIHW), or (tap, channel) with ``taps_outer`` (OHWI), ``row_stride`` elements apart, start
    16-byte aligned and are zero past K up to a whole 16-byte vector (see :func:`padded_rows`); the bias is
    contiguous. Raises UnsupportedCase where plan_fused_launch refuses."""
    if s.k3 not in (3, 5) or s.k5 not in (3, 5):
        raise UnsupportedCase("kernel sizes other than 3 and 5")
    if height > 2**30 - 1 or width > 2**30 - 1:
        raise UnsupportedCase("an image side over 2^30 pixels")
    smem = shared_bytes(s, element_bytes)
    if smem > shared_memory_limit:
        raise UnsupportedCase(f"the recomputed reduction needs {smem} bytes of shared memory, over the device's "
                              f"{shared_memory_limit}")
    if max(s.in_channels, s.k3 * s.k3 * s.ch3x3red, s.k5 * s.k5 * s.ch5x5red) > 2**31 - 1 - k_chunk(element_bytes):
        # the kernel counts K in int32
        raise UnsupportedCase("a convolution with over 2^31 - 1 - a K chunk input channels x taps")
    tiles_h, tiles_w = -(-height // TILE), -(-width // TILE)
    ctas_per_task = batch * tiles_h * tiles_w
    if ctas_per_task > 2**31 - 1:
        raise UnsupportedCase("more than 2^31 - 1 image tiles")
    chunk = plan_channel_chunk(s, ctas_per_task, sm_count)
    vector = 16 // element_bytes
    vectorized = (x_strides[1] == 1 and s.in_channels % vector == 0 and x_strides[0] % vector == 0
                  and x_strides[2] % vector == 0 and x_strides[3] % vector == 0 and x_ptr % 16 == 0)
    if len(weights) != len(CONVOLUTIONS):
        raise ValueError(f"weights must describe the {len(CONVOLUTIONS)} convolutions {CONVOLUTIONS}, "
                         f"got {len(weights)}")
    params = np.zeros((), dtype=PARAMS_DTYPE)
    params["x"], params["out"] = x_ptr, out_ptr
    for index, (weight_ptr, bias_ptr, row_stride, taps_outer) in enumerate(weights):
        view = params["weights"][index]
        if row_stride % vector or weight_ptr % 16:
            raise UnsupportedCase(f"weight rows that do not start 16-byte aligned ({CONVOLUTIONS[index][0]})")
        view["weight"], view["bias"], view["row_stride"], view["taps_outer"] = (weight_ptr, bias_ptr, row_stride,
                                                                                int(taps_outer))
    params["batch"], params["height"], params["width"] = batch, height, width
    params["x_stride"], params["out_stride"] = x_strides, out_strides
    params["shape"] = s.as_tuple()
    params["tiles_h"], params["tiles_w"], params["x_vectorized"] = tiles_h, tiles_w, int(vectorized)
    params["reduced_elements"], params["channel_chunk"] = reduced_elements(s, element_bytes), chunk
    params["num_tasks"] = count_tasks(s, chunk)
    if ctas_per_task * int(params["num_tasks"]) > 2**31 - 1:
        raise UnsupportedCase("more than 2^31 - 1 CTAs (image tiles x tasks)")  # the grid is one-dimensional
    params["band_tiles"] = plan_band_tiles(ctas_per_task, s.in_channels, element_bytes)
    params["cluster_ctas"] = 1  # CuPy launches no thread-block clusters: each 3x3 task computes the reduction
    return params, (ctas_per_task * int(params["num_tasks"]), 1), smem


# ---- weights --------------------------------------------------------------------------------------------
#: Parameter order of the ops' schemas, after x.
WEIGHT_NAMES = ("w1", "b1", "w3r", "b3r", "w3", "b3", "w5r", "b5r", "w5", "b5", "wp", "bp")


def block_shape(weights) -> BlockShape:
    """The block shape of 12 weights in schema order, with ValueErrors that name the argument."""
    if len(weights) != len(WEIGHT_NAMES):
        raise ValueError(f"expected the 12 weights {WEIGHT_NAMES}, got {len(weights)}")
    w = dict(zip(WEIGHT_NAMES, weights))
    for name in ("w1", "w3r", "w3", "w5r", "w5", "wp"):
        if getattr(w[name], "ndim", None) != 4:
            raise ValueError(f"{name} must be a 4-D convolution weight (out, in, k, k), got shape "
                             f"{getattr(w[name], 'shape', None)}")
    cin = w["w1"].shape[1]
    expected_in = dict(w1=cin, w3r=cin, w5r=cin, wp=cin, w3=w["w3r"].shape[0], w5=w["w5r"].shape[0])
    for name, channels in expected_in.items():
        k = 1 if name in ("w1", "w3r", "w5r", "wp") else w[name].shape[2]
        if w[name].shape[1] != channels or w[name].shape[2:] != (k, k) or (k != 1 and k not in (3, 5)):
            raise ValueError(f"{name} must have {channels} input channels and a "
                             f"{'1x1' if k == 1 else '3x3 or 5x5'} kernel, got shape {tuple(w[name].shape)}")
    for name in ("w1", "w3r", "w3", "w5r", "w5", "wp"):
        if w[name].shape[0] < 1 or w[name].shape[1] < 1:
            raise ValueError(f"{name} must have at least one input and one output channel, got shape "
                             f"{tuple(w[name].shape)}")
    for bias, weight in (("b1", "w1"), ("b3r", "w3r"), ("b3", "w3"), ("b5r", "w5r"), ("b5", "w5"), ("bp", "wp")):
        if tuple(w[bias].shape) != (w[weight].shape[0],):
            raise ValueError(f"{bias} must be 1-D with {w[weight].shape[0]} elements, got shape "
                             f"{tuple(w[bias].shape)}")
    dtype = w["w1"].dtype
    for name, t in w.items():
        if t.dtype != dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but w1 has {dtype}; all weights must share one dtype")
    return BlockShape(cin, w["w1"].shape[0], w["w3r"].shape[0], w["w3"].shape[0], w["w5r"].shape[0],
                      w["w5"].shape[0], w["wp"].shape[0], w["w3"].shape[2], w["w5"].shape[2])


def in_place_rows(shape, strides, itemsize, address):
    """How the kernel can read a weight of `shape` (O, I, k, k) with `strides` (in elements) at `address` in
    place: ``(row_stride, taps_outer)``, or None when it needs a copy with padded rows (:func:`padded_rows`).
    In place means each output channel's row dense in OIHW or OHWI order, starting 16-byte aligned, K whole
    16-byte vectors: the host code's rule (csrc/inception_fused.cpp, weight_view)."""
    vector = 16 // itemsize

    def dense(order):
        expected = 1
        for d in reversed(order):
            if shape[d] != 1 and strides[d] != expected:
                return False
            expected *= shape[d]
        return True

    oihw, ohwi = dense((1, 2, 3)), dense((2, 3, 1))
    k = shape[1] * shape[2] * shape[3]
    if (oihw or ohwi) and k % vector == 0 and strides[0] % vector == 0 and address % 16 == 0:
        return strides[0], not oihw
    return None


def padded_rows(xp, weight):
    """A copy of `weight` (O, I, k, k) as rows [O][K], K = (channel, tap), zero-padded to whole 16-byte vectors:
    what the kernel reads where :func:`in_place_rows` says no."""
    vector = 16 // weight.dtype.itemsize
    k = weight.shape[1] * weight.shape[2] * weight.shape[3]
    rows = xp.zeros((weight.shape[0], _round_up(k, vector)), dtype=weight.dtype)
    rows[:, :k] = weight.reshape(weight.shape[0], k)
    return rows
