"""Mutation check of the fused kernel's CPU tests: plants realistic bugs in the kernel source one at a time and
requires the fast kernel test to catch every one.

The harness is tests/simt/fused_selftest.cpp: the kernel's own source under the SIMT emulator, built with g++
straight from csrc/ (no torch, no nvcc), in every math mode and both layouts, with every branch split into
several tasks, partial tiles, both ways of reading x and refilled stages, each launch under the racecheck's
schedules and checked with the project's numerics rule. The unchanged objects (emulator, plan, test) are
compiled once; each mutant recompiles only the four kernel translation units, in a copy of csrc/, and
relinks (seconds). A mutant is caught when the test exits non-zero (a failed case, a crash, a timeout);
mutants marked `everywhere` must fail a case in every math mode and layout.

Every mutant's original snippet must occur exactly once in the current source: the kernel changes, and a
snippet that no longer matches is reported (exit 2) so that the table below is kept in step with it.

Usage: python scripts/mutation_check.py [--list] [--only NAME ...] [--jobs N]
Exit status 0 only when every mutant is caught; the last line says "N of M mutants caught".
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL = "csrc/kernels/inception_kernel.h"
MODES = ("fp16", "bf16", "tf32", "fp32")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class Mutant:
    name: str
    original: str  # must occur exactly once in `path`
    replacement: str
    path: str = KERNEL
    everywhere: bool = False  # must fail a case in every math mode and layout


# The planted bugs. Keep each snippet short and unique; prefer code the weight-input layout does not touch.
MUTANTS = [
    # bounds
    Mutant("halo bound: the reduction outside the image is not zeroed on the top edge",
           "if (frame.inside(halo.y0 + pixel / halo.width, halo.x0 + pixel % halo.width)) continue;",
           "if (frame.inside(halo.y0 + pixel / halo.width == -1 ? 0 : halo.y0 + pixel / halo.width,"
           " halo.x0 + pixel % halo.width)) continue;"),
    Mutant("halo bound: reduction rows past the box stored (past its pixels)",
           "const uint32_t row = m < box.pixels ?", "const uint32_t row = m <= box.pixels ?"),
    Mutant("clipped halo: the reduction's box not clipped on the left (rows outside the image computed)",
           "box_x0 = halo_box.x0 > 0 ? halo_box.x0 : 0;", "box_x0 = halo_box.x0;"),
    Mutant("clipped halo: a row's halo row ignores the box's column offset",
           "uint32_t((y - halo.y0) * halo.width + (x - halo.x0))", "uint32_t((y - halo.y0) * halo.width + x)"),
    Mutant("clipped halo: only the first two vectors of a row outside the image zeroed",
           "for (int v = lane; v < vectors; v += simt::kWarpSize) {", "for (int v = lane; v < vectors && v < 2; v += simt::kWarpSize) {"),
    Mutant("tile bound: the output store writes one column past the image",
           "const bool inside = y < frame.height() && x < frame.width();",
           "const bool inside = y < frame.height() && x <= frame.width();"),
    Mutant("channel bound: 16-byte copies of x read past the input channels",
           "const bool c_inside = channels_left > 0;",
           "const bool c_inside = true;"),
    Mutant("window bound: K columns past K are read instead of zero",
           "const bool inside = kTapsOuter ? dy < kernel : c < channels;",
           "const bool inside = true;"),
    # channel offsets per branch
    Mutant("1x1 and pool output slice without the task's channel_begin",
           "(pooled ? s.out_offset_branch4() : s.out_offset_branch1()) + task.channel_begin;",
           "(pooled ? s.out_offset_branch4() : s.out_offset_branch1());"),
    Mutant("spatial output slice without the task's channel_begin",
           "(three ? s.out_offset_branch2() : s.out_offset_branch3()) + task.channel_begin;",
           "(three ? s.out_offset_branch2() : s.out_offset_branch3());"),
    Mutant("output slice offset: the 5x5 branch writes into the 3x3 branch's channels",
           "(three ? s.out_offset_branch2() : s.out_offset_branch3())",
           "(three ? s.out_offset_branch2() : s.out_offset_branch2())"),
    # biases and weights per branch (these read the packed weights: update them with the weight inputs)
    Mutant("spatial bias read without the task's channel_begin",
           "conv_store{frame, out + out0 * p.out_stride[1], bias(conv, task.channel_begin),",
           "conv_store{frame, out + out0 * p.out_stride[1], bias(conv, 0),"),
    Mutant("spatial weights read without the task's channel_begin",
           "conv_rows = weight_rows(conv, task.channel_begin);",
           "conv_rows = weight_rows(conv, 0);"),
    # ReLU
    Mutant("no ReLU on the recomputed reduction",
           "M::round_operand(relu(first))",
           "M::round_operand(first)"),
    # the paired epilogue
    Mutant("epilogue: the second channel of a pair starts at the first one's bias",
           "second_bias = store.bias_at(first, ni * 8 + 1);",
           "second_bias = store.bias_at(first, ni * 8);"),
    Mutant("epilogue: a warp whose last tile ends past the channels stores as if every column were one",
           "const bool whole_warp = n0 + (tile_n0 + NI) * 8 <= count;",
           "const bool whole_warp = n0 + (tile_n0 + NI - 1) * 8 < count;"),
    Mutant("epilogue: pair stores from an odd first channel (misaligned pairs)",
           "return p.out_stride[1] == 1 && first % 2 == 0 &&",
           "return p.out_stride[1] == 1 &&"),
    # fragment layouts
    Mutant("staged A fragment: ldmatrix's row and K halves swapped (registers 1 and 2)",
           "(tile_m0 * 16 + lane % 8 + 8 * ((lane / 8) & 1)) * kStride + kVectorElements<T> * (lane / 16)",
           "(tile_m0 * 16 + lane % 8 + 8 * (lane / 16)) * kStride + kVectorElements<T> * ((lane / 8) & 1)"),
    Mutant("16-bit B fragment: ldmatrix pairs the K halves of two tiles",
           "((tile_n0 + (q >> 1)) * 8 + row8) * kStride + 8 * (q & 1);",
           "((tile_n0 + (q & 1)) * 8 + row8) * kStride + 8 * (q >> 1);"),
    Mutant("TF32 B fragment: ldmatrix pairs the K halves of two tiles",
           "((tile_n0 + (q >> 1)) * 8 + row8) * kStride + 4 * (q & 1);",
           "((tile_n0 + (q & 1)) * 8 + row8) * kStride + 4 * (q >> 1);"),
    # TF32 operands rounded once where they are stored (the tensor core would truncate them)
    Mutant("TF32: the weight stage left unrounded",
           "          round_tf32_stage<kN, false>(b_stage(stage));", "          (void)0;"),
    Mutant("TF32: the x stage left unrounded (16-byte copies)",
           "struct StagesRawA<PixelStream<T, kRows, kStride>> {\n  static constexpr bool value = true;",
           "struct StagesRawA<PixelStream<T, kRows, kStride>> {\n  static constexpr bool value = false;"),
    Mutant("TF32: the x stage left unrounded (element-wise)",
           "struct StagesRawA<ElementLoader<T, kStageRows, kStride>> {\n  static constexpr bool value = true;",
           "struct StagesRawA<ElementLoader<T, kStageRows, kStride>> {\n  static constexpr bool value = false;"),
    Mutant("TF32: the staged windows rounded a second time (an ulp off: rounding is not idempotent)",
           "struct StagesRawA<WindowLoader<T, kTapsOuter>> {\n  static constexpr bool value = false;",
           "struct StagesRawA<WindowLoader<T, kTapsOuter>> {\n  static constexpr bool value = true;"),
    Mutant("TF32: the pool's max stored unrounded",
           "simt::store_128(out, M::round_operands(simt::max_nan_128<T>(above, shared)));",
           "simt::store_128(out, simt::max_nan_128<T>(above, shared));"),
    Mutant("TF32: the reduction stored unrounded",
           "M::round_operand(relu(second))", "(relu(second))"),
    Mutant("float32 FMA path: row g + 8 multiplied with the wrong column",
           "c[3] = fmaf(row1[k], col1[k], c[3]);",
           "c[3] = fmaf(row1[k], col0[k], c[3]);"),
    # warps past a pass's channels skip the multiply
    Mutant("idle-warp skip: a pass's partial last 8-channel tile counted as empty",
           "const int n_tiles = ((count - n0 < kN ? count - n0 : kN) + 7) / 8;",
           "const int n_tiles = (count - n0 < kN ? count - n0 : kN) / 8;"),
    Mutant("idle-warp skip: a warp that holds only some of the pass's channels skips them (16-bit)",
           "if ((kPixelsAsN ? 2 * tile_m0 : tile_m0) >= m_tiles || tile_n0 >= n_tiles) return;\n"
           "    // A: the row addresses come from `a` (StagedRows, WindowRows). B: lane l gives row l % 8 of matrix",
           "if ((kPixelsAsN ? 2 * tile_m0 : tile_m0) >= m_tiles || tile_n0 + NI > n_tiles) return;\n"
           "    // A: the row addresses come from `a` (StagedRows, WindowRows). B: lane l gives row l % 8 of matrix"),
    # the CTA index
    Mutant("grid bands: a shorter last band indexed as a full one",
           "return GridCta{first_tile + in_band % band_size, in_band / band_size};",
           "return GridCta{first_tile + in_band % band_tiles, in_band / band_tiles};",
           path="csrc/kernels/inception_params.h"),
    # barriers and cp.async waits
    Mutant("missing barrier of a K step: the landed chunk unseen, the buffer refilled while multiplied",
           "        __syncthreads();\n        if (!last) issue(chunk + 1, stage ^ 1, next_whole);\n      } else",
           "        if (!last) issue(chunk + 1, stage ^ 1, next_whole);\n      } else", everywhere=True),
    Mutant("next chunk issued before the K step's barrier: its buffer refilled while a warp multiplies it",
           "        __syncthreads();\n        if (!last) issue(chunk + 1, stage ^ 1, next_whole);\n      } else",
           "        if (!last) issue(chunk + 1, stage ^ 1, next_whole);\n        __syncthreads();\n      } else"),
    Mutant("missing barrier between two passes after an odd number of chunks",
           "    if (kOneBarrier && (chunks & 1) && n0 + kN < count) __syncthreads();\n", ""),
    Mutant("missing barrier between the pool's max (or TF32's rounding) and the multiply",
           "        __syncthreads();  // the stages are complete before any warp multiplies them\n", ""),
    Mutant("missing barrier between the reduction and the windows",
           "  __syncthreads();  // the reduction (this CTA's slice of it) is complete before any window reads it\n", ""),
    Mutant("cp.async wait too weak: the chunk being multiplied may still be in flight",
           "simt::cp_async_wait<0>();  // this thread's copies", "simt::cp_async_wait<1>();  // this thread's copies"),
    # the pool (PoolStream, both halo loaders)
    Mutant("pool: the centre column left out of every row's max",
           "simt::load_128(center + left), simt::load_128(center)),",
           "simt::load_128(center + left), simt::negative_infinity_128<T>()),"),
    Mutant("pool: the row above read across the image's top edge (a zero-filled halo row)",
           "up = y >= 1 ? -kRow : 0;",
           "up = -kRow;"),
    Mutant("pool: the bottom pixel's max without its own row",
           "const simt::u32x4 shared = simt::max_nan_128<T>(upper, lower);",
           "const simt::u32x4 shared = upper;"),
    Mutant("pool: halo stages not alternated",
           "    next_stage ^= 1;\n",
           ""),
    # pool padding
    Mutant("element-wise pool halo: the max reads rows a K chunk apart, the loader wrote them a stage stride apart",
           "               FusedPlan::stage_stride(int(sizeof(T)))>;", "               kKChunk<T>>;"),
    Mutant("element-wise pool halo: rows past the halo written (a partial last step of rows unbounded)",
           "return (i + 1) * simt::kWarpSize <= kStageRows || int(threadIdx.x) % simt::kWarpSize + i * simt::kWarpSize < kStageRows;",
           "return true;"),
    Mutant("pool: window clipped one pixel short on the right",
           "right = x + 1 < frame.width() ? kPixel : 0;",
           "right = x + 2 < frame.width() ? kPixel : 0;"),
    Mutant("pool: the column offsets counted in elements, not bytes",
           "constexpr int kPixel = kHaloStride * int(sizeof(T)),",
           "constexpr int kPixel = kHaloStride,"),
    # element-wise x (ElementLoader)
    Mutant("element-wise x: channels past the input's read instead of zero",
           "const bool inside = channels_left > j * kChannelStep &&",
           "const bool inside = channels_left + kChannelStep > j * kChannelStep &&"),
    Mutant("element-wise x, deferred: the held loads stored into the stage being multiplied",
           "if (!last) pass_load_a.commit(a_stage(stage ^ 1));", "if (!last) pass_load_a.commit(a_stage(stage));"),
    Mutant("element-wise x, deferred: the first chunk's loads never stored",
           "if constexpr (kDefersA) pass_load_a.commit(a_stage(0));", ""),
    Mutant("element-wise x, whole chunks: every channel of the chunk read from the thread's first",
           "at(stage, j, i) = kWhole ? loaded(j, i) : element(j, i);",
           "at(stage, j, i) = kWhole ? loaded(0, i) : element(j, i);"),
    Mutant("element-wise x, deferred: the last chunk fetched as a whole one (no channel test)",
           "if (chunks >= 2) step(chunks - 2, false, false);", "if (chunks >= 2) step(chunks - 2, false, true);"),
    Mutant("element-wise x: the loader does not advance to the next K chunk",
           "    x += kKChunk<T> * channel_stride;\n", ""),
    # staged windows (WindowLoader) index math
    Mutant("windows: kernel taps transposed",
           "reduced + (dy * tap_row_step + dx * tap_column_step + column_offset + c));",
           "reduced + (dx * tap_row_step + dy * tap_column_step + column_offset + c));"),
    Mutant("windows: a tile row's byte offset counted in elements",
           "tile_row_bytes = halo_width * row_stride * int(sizeof(T));",
           "tile_row_bytes = halo_width * row_stride;"),
    Mutant("windows: a chunk's column carry into the next tap row lost",
           "if (dx >= kernel) dx -= kernel, ++dy;", "if (dx >= kernel) dx -= kernel;"),
    Mutant("windows (OIHW): a chunk's tap carry into the next channel lost",
           "if (dy >= kernel) dy -= kernel, ++c;", "if (dy >= kernel) dy -= kernel;"),
    Mutant("windows (OHWI, staged): a chunk's channel carry into the next tap lost",
           "        if (++dx == kernel) dx = 0, ++dy;\n", ""),
    Mutant("windows: halo row stride of the tile instead of the halo",
           "tile_row_bytes = halo_width * row_stride * int(sizeof(T));",
           "tile_row_bytes = Plan::kTile * row_stride * int(sizeof(T));"),
    Mutant("reduction rows stored unpadded (channels apart, not row_stride)",
           "return Row{reduced + (in_box ? int(halo_row) * row_stride : 0),",
           "return Row{reduced + (in_box ? int(halo_row) * channels : 0),"),
    # A read in place from the reduction (DirectWindows)
    Mutant("in-place windows: kernel taps transposed in the window table",
           "const int dy = transposed ? tap % kernel : tap / kernel, dx = transposed ? tap / kernel : tap % kernel;",
           "const int dy = transposed ? tap / kernel : tap % kernel, dx = transposed ? tap % kernel : tap / kernel;"),
    # tile frames: a tile cut short by the right edge is transposed, and its GEMMs skip the m tiles outside
    Mutant("tile frame: a transposed tile's corner left in image coordinates",
           "return TileFrame{Frame{p, transposed}, transposed ? x0 : y0, transposed ? y0 : x0,",
           "return TileFrame{Frame{p, transposed}, y0, x0,"),
    Mutant("tile frame: x read at a transposed pixel's image coordinates swapped",
           "return image_y(y, x) * p.x_stride[2] + image_x(y, x) * p.x_stride[3];",
           "return y * p.x_stride[2] + x * p.x_stride[3];"),
    Mutant("tile frame: the output of a transposed pixel written at swapped coordinates",
           "return image_y(y, x) * p.out_stride[2] + image_x(y, x) * p.out_stride[3];",
           "return y * p.out_stride[2] + x * p.out_stride[3];"),
    Mutant("tile frame: the window table ignores a transposed frame",
           "row_stride, frame.transposed);\n  }",
           "row_stride, false);\n  }"),
    Mutant("tile frame: staged windows (OIHW) ignore a transposed frame",
           "WindowLoader<T, false>(reduced, kernel, channels, row_stride, frame.transposed)",
           "WindowLoader<T, false>(reduced, kernel, channels, row_stride, false)"),
    Mutant("interleaved m tiles: staged A rows of a warp's next m tile taken adjacent",
           "return row0 + mi * (Plan::kWarpsM * 16 * kStride);", "return row0 + mi * (16 * kStride);"),
    Mutant("interleaved m tiles: the epilogue stores a warp's next m tile at the adjacent one",
           "store.row(m_tile(tile_m0, mi) * 16 + lane_row + 8 * row_half, 2 * mi + row_half);",
           "store.row((tile_m0 + mi) * 16 + lane_row + 8 * row_half, 2 * mi + row_half);"),
    Mutant("interleaved m tiles: a warp skips the last m tile that holds data (16-bit)",
           "if (m_tile(tile_m0, mi) >= m_tiles) continue;  // warp-uniform: rows outside the image or the halo",
           "if (m_tile(tile_m0, mi) + 1 >= m_tiles) continue;  // warp-uniform: rows outside the image or the halo"),
    Mutant("tile frame: staged windows (OHWI) ignore a transposed frame",
           "WindowLoader<T, true>(reduced, kernel, channels, row_stride, frame.transposed)",
           "WindowLoader<T, true>(reduced, kernel, channels, row_stride, false)"),
    Mutant("tile frame: the reduction's box clipped at the image's height, not the frame's",
           "const int box_y1 = int(halo_box.y0 + halo_width < frame.height() ? halo_box.y0 + halo_width : frame.height());",
           "const int box_y1 = int(halo_box.y0 + halo_width < p.height ? halo_box.y0 + halo_width : p.height);"),
    Mutant("tile frame: the pool's row below read across the frame's bottom edge",
           "middle = y + 1 < frame.height() ? kRow : 0;",
           "middle = y + 1 <= frame.height() ? kRow : 0;"),
    Mutant("tile frame: the pool's row below the pair read across the frame's bottom edge",
           "down = y + 2 < frame.height() ? 2 * kRow : middle;",
           "down = y + 2 <= frame.height() ? 2 * kRow : middle;"),
    Mutant("interleaved m tiles: the reduction's row masks for blocked m tiles",
           "const int m = m_tile(tile_m0, index / 2) * 16 + g + 8 * (index % 2);",
           "const int m = (tile_m0 * Plan::kHaloMI + index / 2) * 16 + g + 8 * (index % 2);"),
    Mutant("tile frame: the output GEMMs skip the last m tile holding pixels of the image",
           "const int out_m_tiles = kOutPixelsAsN ? tile.rows : (tile.rows + 1) / 2;",
           "const int out_m_tiles = kOutPixelsAsN ? tile.rows : tile.rows / 2;"),
    Mutant("clipped halo: the reduction skips the m tile holding its box's last pixels",
           "const int halo_m_tiles = (reduction_box.pixels + 15) / 16;",
           "const int halo_m_tiles = reduction_box.pixels / 16;"),
    Mutant("in-place windows: groups past K read the reduction instead of the zero vector",
           "return inside ? row0 + mi * m_tile_step : zeros;",
           "return row0 + mi * m_tile_step;"),
    Mutant("in-place windows: every lane reads the first K half",
           "w.table + chunk * (kKChunk<T> / kVector) + lane / 16, w.zeros};",
           "w.table + chunk * (kKChunk<T> / kVector), w.zeros};"),
    Mutant("in-place windows: a warp's m tiles taken adjacent, not interleaved with the other warp row's",
           "int64_t(2 * Plan::kWarpsM) * w.halo_width * w.row_stride,",
           "int64_t(2) * w.halo_width * w.row_stride,"),
    # streams count their K chunks
    Mutant("weight stream does not advance to the next K chunk",
           "    source += C::kChunk;\n    k_left -= C::kChunk;\n",
           "    k_left -= C::kChunk;\n"),
    Mutant("x stream does not advance to the next K chunk",
           "    x += C::kChunk;\n    channels_left -= C::kChunk;\n",
           "    channels_left -= C::kChunk;\n"),
    # K chunks of 128 bytes (change 24): the stage layout, the last chunk's slices, two tile columns a thread
    Mutant("stages: B rows start one m tile early, over A's last",
           "auto b_stage = [&](int stage) { return a_stage(stage) + kARows * M::kStride; };",
           "auto b_stage = [&](int stage) { return a_stage(stage) + (kARows - 16) * M::kStride; };"),
    Mutant("last K chunk: its last k16 slice within K skipped",
           "      if (kPartial && k0 >= k_end) break;\n",
           "      if (kPartial && k0 + 16 >= k_end) break;\n"),
    Mutant("last K chunk: K counted one k16 slice short",
           "const int last_k_end = int(w.length) - (chunks - 1) * kChunk;",
           "const int last_k_end = int(w.length) - (chunks - 1) * kChunk - 16;"),
    Mutant("weight stream: a copy's row offset one row, not one step of rows",
           "row_offset[j] = inside ? j * C::kRowStep * w.stride : 0;",
           "row_offset[j] = inside ? j * w.stride : 0;"),
    Mutant("staged windows: a thread's second tile column reads its first's window",
           "    columns_bytes = kPxStep * row_stride * int(sizeof(T));\n",
           "    columns_bytes = 0;\n"),
    # thread-block clusters share the 3x3 branch's reduction (change 35)
    Mutant("shared reduction: no slice copied into the other CTAs of the cluster",
           "for (int j = lane; j < copies; j += simt::kWarpSize) {",
           "for (int j = lane; j < 0; j += simt::kWarpSize) {"),
    Mutant("shared reduction: a slice's weight rows from reduced channel 0",
           "const WeightRows<T> reduction_rows = weight_rows(reduce, slice_begin);",
           "const WeightRows<T> reduction_rows = weight_rows(reduce, 0);"),
    Mutant("shared reduction: a slice's biases from reduced channel 0",
           "ReductionStore<M> reduction(reduced + slice_begin, bias(reduce, slice_begin),",
           "ReductionStore<M> reduction(reduced + slice_begin, bias(reduce, 0),"),
    Mutant("shared reduction: every CTA computes the first slice",
           "slice_begin = int(rank) * slice < channels ? int(rank) * slice : channels;",
           "slice_begin = 0;"),
    Mutant("shared reduction: the copy's target rank not wrapped (the last CTAs copy to themselves)",
           ": rank + 1 + unsigned(peer) - cluster_ctas;", ": rank;"),
    Mutant("shared reduction: the copies before the start-up barrier's wait (a CTA not yet started written)",
           "    simt::cluster_wait();  // every CTA of the cluster has started: its shared memory may be written\n"
           "    share_slice(reduced, halo_box, reduction_box, row_stride, slice_begin, slice_count, cluster_ctas, rank);\n",
           "    share_slice(reduced, halo_box, reduction_box, row_stride, slice_begin, slice_count, cluster_ctas, rank);\n"
           "    simt::cluster_wait();\n"),
    Mutant("shared reduction: a CTA barrier, not the cluster's, after the copies",
           "    simt::cluster_sync();\n  }", "    __syncthreads();\n  }"),
    Mutant("cluster groups: a tile's last, partial group of tasks dropped",
           "const int64_t groups = (int64_t(p.num_tasks) + cluster_ctas - 1) / cluster_ctas;",
           "const int64_t groups = int64_t(p.num_tasks) / cluster_ctas;"),
]

KERNEL_UNITS = [f"csrc/kernels/inception_emu_{m}.cpp" for m in ("f16", "bf16", "tf32", "f32")]
FIXED_UNITS = ["csrc/simt/emulator.cpp", "csrc/kernels/inception_plan.cpp", "tests/simt/fused_selftest.cpp"]
# The emulator and the test once, optimised; the kernel units per mutant unoptimised: they compile ten times
# faster, and the emulator's fiber switches, not the kernel's arithmetic, dominate the test's time.
FIXED_CXXFLAGS = ["-std=c++17", "-O2", "-w"]
KERNEL_CXXFLAGS = ["-std=c++17", "-O0", "-w"]
TIMEOUT_S = 300


def check_snippets(mutants):
    """Each original snippet exactly once in the current source; returns the problems found."""
    problems = []
    for m in mutants:
        with open(os.path.join(REPO, m.path)) as f:
            count = f.read().count(m.original)
        if count != 1:
            problems.append(f"mutant {m.name!r}: its snippet occurs {count} times in {m.path} (must be once): "
                            f"{m.original!r}")
    return problems


def compile_units(units, source_root, out_dir, jobs, flags):
    """Compiles `units` (paths relative to the repo, read under `source_root`) to objects in `out_dir`."""
    compiler = os.environ.get("CXX", "g++")

    def one(unit):
        obj = os.path.join(out_dir, os.path.basename(unit).replace(".cpp", ".o"))
        source = os.path.join(source_root if unit.startswith("csrc/") else REPO, unit)
        include = os.path.join(source_root, "csrc")
        subprocess.run([compiler, *flags, "-I", include, "-c", source, "-o", obj], check=True,
                       capture_output=True, text=True)
        return obj

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, units))


def link(objects, binary):
    subprocess.run([os.environ.get("CXX", "g++"), "-o", binary, *objects, "-lpthread"], check=True,
                   capture_output=True, text=True)


def run_test(binary, fail_fast=False):
    """(caught, failing (mode, layout) pairs, summary line) for one build of the test."""
    env = dict(os.environ, SIMT_HOST_THREADS=os.environ.get("SIMT_HOST_THREADS", "2"),
               FUSED_SELFTEST_FAIL_FAST="1" if fail_fast else "0")
    try:
        result = subprocess.run([binary], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return True, None, f"timed out after {TIMEOUT_S} s"
    failing = set(re.findall(r"^FAIL (\w+) (NCHW|NHWC) ", result.stdout, re.MULTILINE))
    if result.returncode == 0:
        return False, failing, "every case passed"
    if result.returncode < 0:
        return True, None, f"crashed (signal {-result.returncode})"
    lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    first = lines[0][:150] if lines else result.stdout[-150:]
    return True, failing, f"{len(lines)} failing case(s), first: {first}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run the mutants whose name contains NAME")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compilations (default 2)")
    args = parser.parse_args()
    mutants = MUTANTS
    if args.only:
        mutants = [m for m in MUTANTS if any(part in m.name for part in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}{'  [every mode and layout]' if m.everywhere else ''}")
        return 0
    problems = check_snippets(mutants)
    if problems:
        print("mutation check: the mutant table is out of step with the kernel source:", *problems, sep="\n  ")
        return 2

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as work:
        fixed_dir, clean_dir = os.path.join(work, "fixed"), os.path.join(work, "clean")
        os.makedirs(fixed_dir), os.makedirs(clean_dir)
        fixed = compile_units(FIXED_UNITS, REPO, fixed_dir, args.jobs, FIXED_CXXFLAGS)
        clean_binary = os.path.join(work, "clean-test")
        link(fixed + compile_units(KERNEL_UNITS, REPO, clean_dir, args.jobs, KERNEL_CXXFLAGS), clean_binary)
        failed, _, summary = run_test(clean_binary)
        if failed:  # a mutant caught by a test that fails anyway proves nothing
            print(f"mutation check: the unmutated kernel fails its test ({summary})")
            return 2
        print(f"unmutated kernel: {summary} ({time.monotonic() - start:.0f} s)", flush=True)

        caught = 0
        for index, m in enumerate(mutants, 1):
            t0 = time.monotonic()
            tree = os.path.join(work, f"mutant{index}")
            shutil.copytree(os.path.join(REPO, "csrc"), os.path.join(tree, "csrc"))
            path = os.path.join(tree, m.path)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace(m.original, m.replacement))
            if m.path == KERNEL:
                objects = fixed + compile_units(KERNEL_UNITS, tree, tree, args.jobs, KERNEL_CXXFLAGS)
            else:  # a mutant elsewhere: rebuild everything from the mutated copy
                objects = (compile_units(FIXED_UNITS, tree, tree, args.jobs, FIXED_CXXFLAGS) +
                           compile_units(KERNEL_UNITS, tree, tree, args.jobs, KERNEL_CXXFLAGS))
            binary = os.path.join(tree, "test")
            link(objects, binary)
            is_caught, failing, summary = run_test(binary, fail_fast=not m.everywhere)
            if is_caught and m.everywhere and failing is None:
                is_caught = False
                summary += "; but no per-case report to show it fails in every mode and layout"
            elif is_caught and m.everywhere:
                missed = [f"{mode} {layout}" for mode in MODES for layout in LAYOUTS if (mode, layout) not in failing]
                if missed:
                    is_caught = False
                    summary += f"; but no failing case in {', '.join(missed)}"
            caught += is_caught
            verdict = "caught" if is_caught else "MISSED"
            print(f"{verdict:7} {m.name}: {summary} ({time.monotonic() - t0:.0f} s)", flush=True)
            shutil.rmtree(tree)
    print(f"total {time.monotonic() - start:.0f} s")
    print(f"{caught} of {len(mutants)} mutants caught")
    return 0 if caught == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
