// The fused Inception block: the whole block's forward in one launch. Torch-free; compiled by nvcc for the
// GPU, by NVRTC for the CuPy path and by g++ for the SIMT emulator (see docs/fused-kernel.md for the design).
//
// Grid: one dimension of (image tile, task) CTAs in bands (cta_of): a tile is 8x8 output pixels, a task a
// branch's chunk of output channels; each band of tiles runs its tasks in turn, longest first, while its
// x stays in L2 (x comes from DRAM about once).
// Every task is one or two GEMMs with the same engine (run_gemm): C[M x N] = A[M x K] * W[N x K]^T, A staged
// in shared memory K chunk by K chunk by a task-specific loader, W rows streamed with cp.async (both
// double-buffered: the next chunk's copies fly while this one is multiplied), fp32
// accumulators in the mma fragment layout that start at the bias, and an epilogue that applies ReLU and writes
// either the output (each branch straight into its channel slice) or the recomputed reduction in shared
// memory. Nothing intermediate goes to device memory.
#pragma once

#include "kernels/inception_params.h"
#include "simt/simt.h"

namespace fused_inception {
namespace SIMT_NS {
namespace inception {

using Plan = FusedPlan;

// Elements of T in one 16-byte vector: a cp.async copy, an ldmatrix row, a group of the window table.
template <class T>
constexpr int kVectorElements = 16 / int(sizeof(T));
// K elements of T staged per step (FusedPlan::k_chunk).
template <class T>
constexpr int kKChunk = Plan::k_chunk(int(sizeof(T)));

// ---- where a lane's A rows lie in one K chunk ----------------------------------------------------------------

// A warp's m tiles are interleaved with the other warp row's: its mi-th is its first plus mi * kWarpsM. A GEMM
// whose last m tiles hold no pixel (an edge tile, a halo shorter than the warp grid) skips them, and what is
// left stays spread over both warp rows: in blocks, the first warp row would keep most of it and the CTA's
// time is its busiest warp's.
SIMT_DEVICE int m_tile(int first, int mi) { return first + mi * Plan::kWarpsM; }

// ldmatrix takes one row address per lane: lane l gives row l % 8 of matrix q = l / 8, and for A the four
// matrices of an m16 x (16 bytes of K) x 2 tile are (rows 0-7 | 8-15) x (K bytes 0-15 | 16-31), in fragment
// order a0..a3. Both sources below hand multiply() that address for (K offset kk, m tile mi).

// A staged in shared memory, row-major at the stage stride.
template <class T>
struct StagedRows {
  static constexpr int kStride = Plan::stage_stride(int(sizeof(T)));
  const T* stage;     // the chunk (the exact-FP32 path reads it directly)
  const T* lane_row;  // this lane's ldmatrix row in the warp's first m tile
  SIMT_DEVICE StagedRows(const T* stage, int tile_m0, int lane)
      : stage(stage),
        lane_row(stage + (tile_m0 * 16 + lane % 8 + 8 * ((lane / 8) & 1)) * kStride + kVectorElements<T> * (lane / 16)) {}
  struct AtK {
    const T* row0;
    SIMT_DEVICE const T* row(int mi) const { return row0 + mi * (Plan::kWarpsM * 16 * kStride); }
  };
  SIMT_DEVICE AtK at(int kk) const { return AtK{lane_row + kk}; }
};

// The k x k GEMM's A read in place from the reduction (implicit GEMM, no staging): row m is output pixel
// (m / 8, m % 8) of the tile; a 16-byte group of K is 8 (or 4) channels of one tap when K runs over
// (tap, channel) and the channels are whole vectors, so it is 16 contiguous bytes of one reduction row. The
// window table holds each group's element offset from the pixel's tap-(0, 0) row, -1 past K (read from a zero
// vector, so that padding never multiplies a non-finite value).
template <class T>
struct WindowRows {
  static constexpr int kVector = kVectorElements<T>;
  const T* lane_pixel;   // this lane's ldmatrix row (pixel) in the warp's first m tile, at tap (0, 0)
  int64_t m_tile_step;   // elements between a warp's m tiles (m_tile): 2 kWarpsM tile rows, each a halo width of rows
  const int* groups;     // this chunk's window table entries, offset by this lane's K half
  const T* zeros;
  struct AtK {
    const T* row0;
    bool inside;  // the group lies within K
    int64_t m_tile_step;
    const T* zeros;
    SIMT_DEVICE const T* row(int mi) const { return inside ? row0 + mi * m_tile_step : zeros; }
  };
  SIMT_DEVICE AtK at(int kk) const {
    const int offset = groups[kk / kVector];
    return AtK{lane_pixel + offset, offset >= 0, m_tile_step, zeros};
  }
};

// ---- arithmetic per math mode: one K chunk of a warp's M x N tiles ---------------------------------------

template <MathMode kMode>
struct Math;

// Modes whose operands the tensor cores (or FMAs) take as stored: nothing to round.
struct OperandsAsStored {
  static constexpr bool kRoundsStages = false;
  static SIMT_DEVICE float round_operand(float value) { return value; }
  static SIMT_DEVICE simt::u32x4 round_operands(simt::u32x4 vector) { return vector; }
};

// The output GEMMs' tiles transposed (kPixelsAsN, a build variant: Plan::kOutputPixelsAsN): the tensor cores
// compute C^T = W A^T, their M the GEMM's channels and their N its pixels, so that a pixel tile is one tile row
// of 8 pixels, not an m16 tile's two. A 7-row tile (a 7x7 image) then computes 7 tile rows, not 8: 56 of its
// 64 rows where it took all 64 (issue 12's work multiplier at batch 32 and 256: 5a and 5b, 1.31 -> 1.17).
// multiply() loads the same fragments with the lanes' address roles swapped (transposed_lane: lane bits 3 and
// 4), so that each ldmatrix_x4 hands over registers in the order the mma takes them, no move between:
// af[mi] = (rows 0-7 | 8-15) x (k lo, k hi) of A's m tile mi, rows first: the B fragments of tile rows
// 2 m_tile(mi) and + 1;
// bf[2cb], bf[2cb+1] = (W rows 16 cb.. 16 cb+7 | 16 cb+8..) x (k lo | k hi), the A fragment of channels 16 cb..
// (TF32's k8 halves alike). Their product accumulates into acc[mi][2 cb + h]: lane (g, t) holds channels
// 16 cb + g (registers 0, 1) and + 8 (2, 3), at pixel rows 16 m_tile + 8 h + 2t and + 1. `pixel_tiles`: the
// tile rows to compute (warp-uniform tests: rows outside the image; from the second m tile on).
SIMT_DEVICE int transposed_lane(int lane) { return (lane & 7) | ((lane & 8) << 1) | ((lane & 16) >> 1); }

template <class M, int MI, int NI>
SIMT_DEVICE void multiply_transposed(float (&acc)[MI][NI][4], const uint32_t (&af)[MI][4],
                                     const uint32_t (&bf)[NI][2], int tile_m0, int pixel_tiles) {
  SIMT_UNROLL
  for (int mi = 0; mi < MI; ++mi) {
    SIMT_UNROLL
    for (int h = 0; h < 2; ++h) {
      // (The first m tile's two rows are computed together, as in C's layout: the caller's early exit tests
      // it, and a test per row costs each k slice a predicated group, a WARPSYNC and a setp more.)
      if (mi > 0 && 2 * m_tile(tile_m0, mi) + h >= pixel_tiles) continue;
      const uint32_t pixels[2] = {af[mi][2 * h], af[mi][2 * h + 1]};
      SIMT_UNROLL
      for (int cb = 0; cb < NI / 2; ++cb) {
        const uint32_t weights[4] = {bf[2 * cb][0], bf[2 * cb][1], bf[2 * cb + 1][0], bf[2 * cb + 1][1]};
        M::mma(acc[mi][2 * cb + h], weights, pixels);
      }
    }
  }
}

// 16-bit inputs: the staged rows (row-major A[m][k], W[n][k]) are read with ldmatrix, which hands each lane
// the PTX ISA's m16n8k16 fragments directly: one instruction for a 16x16 A tile or two 8-channel B tiles,
// where 32-bit loads took four (sass_report: the loops' LDS count). Rows are 16-byte aligned (kStride = 40
// elements), and the 8 rows of a matrix fall in distinct banks.
template <class T, bool kBf16>
struct Math16 : OperandsAsStored {
  using Element = T;
  static constexpr int kStride = Plan::stage_stride(2);
  static SIMT_DEVICE void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    if constexpr (kBf16) {
      simt::mma_m16n8k16_bf16(c, a, b, c);
    } else {
      simt::mma_m16n8k16_f16(c, a, b, c);
    }
  }

  // kPartial: K ends `k_end` elements into this chunk (the last of a GEMM); the k16 slices past it hold zeros
  // and are skipped (warp-uniform), so a K that is not whole chunks costs no tensor work past its last slice.
  // kPixelsAsN: the tensor cores compute C^T (multiply_transposed), `m_tiles` counts 8-row tiles, and `lane`
  // is the one whose addresses this lane computes (transposed_lane).
  template <int MI, int NI, bool kPartial, bool kPixelsAsN, class ARows>
  static SIMT_DEVICE void multiply(float (&acc)[MI][NI][4], const ARows& a, const T* b, int tile_m0, int tile_n0,
                                   int m_tiles, int n_tiles, int lane, int k_end) {
    static_assert(NI % 2 == 0, "B tiles are loaded in pairs");
    // warp-uniform: no tile of this warp has data
    if ((kPixelsAsN ? 2 * tile_m0 : tile_m0) >= m_tiles || tile_n0 >= n_tiles) return;
    // A: the row addresses come from `a` (StagedRows, WindowRows). B: lane l gives row l % 8 of matrix
    // q = l / 8: (n tile ni, k 0-7), (ni, k 8-15), (ni + 1, k 0-7), (ni + 1, k 8-15).
    const int q = lane / 8, row8 = lane % 8;
    const T* b_lane = b + ((tile_n0 + (q >> 1)) * 8 + row8) * kStride + 8 * (q & 1);
    // Fragments of kSlicesLoadedAhead k16 slices are loaded before the first of their multiplies: with 1, a
    // slice's multiplies wait on its own ldmatrix latency (Nsight Compute's short_scoreboard stall, 2.3-4.5
    // cycles per issue at batch 256 on the H200); with 2, the second slice's loads are in flight meanwhile.
    // Only where a slice's fragments take at most 16 registers (the output GEMMs, 2 x 4 tiles): the
    // reduction's 5 x 2 tiles take 24, and loading two slices ahead spilled inside its K loop.
    constexpr int kSlices = kKChunk<T> / 16;
    constexpr int kWanted = MI * 4 + NI * 2 <= 16 ? Plan::kSlicesLoadedAhead : 1;
    constexpr int kAhead = kWanted < kSlices ? kWanted : kSlices;
    static_assert(kSlices % kAhead == 0, "slices are loaded in whole groups");
    SIMT_UNROLL
    for (int k0 = 0; k0 < kKChunk<T>; k0 += 16 * kAhead) {
      if (kPartial && k0 >= k_end) break;
      uint32_t af[kAhead][MI][4], bf[kAhead][NI][2];
      SIMT_UNROLL
      for (int s = 0; s < kAhead; ++s) {
        const int kk = k0 + 16 * s;
        const auto a_k = a.at(kk);
        SIMT_UNROLL
        for (int mi = 0; mi < MI; ++mi) simt::ldmatrix_x4(af[s][mi], a_k.row(mi));
        SIMT_UNROLL
        for (int ni = 0; ni < NI; ni += 2) {
          uint32_t pair[4];
          simt::ldmatrix_x4(pair, b_lane + ni * 8 * kStride + kk);
          bf[s][ni][0] = pair[0];
          bf[s][ni][1] = pair[1];
          bf[s][ni + 1][0] = pair[2];
          bf[s][ni + 1][1] = pair[3];
        }
      }
      SIMT_UNROLL
      for (int s = 0; s < kAhead; ++s) {
        if (kPartial && k0 + 16 * s >= k_end) break;
        if constexpr (kPixelsAsN) {
          multiply_transposed<Math16>(acc, af[s], bf[s], tile_m0, m_tiles);
          continue;
        }
        SIMT_UNROLL
        for (int mi = 0; mi < MI; ++mi) {
          if (m_tile(tile_m0, mi) >= m_tiles) continue;  // warp-uniform: rows outside the image or the halo
          SIMT_UNROLL
          for (int ni = 0; ni < NI; ++ni) mma(acc[mi][ni], af[s][mi], bf[s][ni]);
        }
      }
    }
  }
};

template <>
struct Math<MathMode::kF16> : Math16<simt::half, false> {};
template <>
struct Math<MathMode::kBF16> : Math16<simt::bfloat16, true> {};

// Float32 on tensor cores: m16n8k8 TF32 fragments, each register one element rounded to TF32. ldmatrix
// reads them too: an 8 x 8 matrix of 16-bit elements is 8 rows of four floats, and lane l receives float
// l % 4 of row l / 4, which is the TF32 fragment's (row g, k t). Rows are 16-byte aligned (stride 36).
// Operands are rounded (cvt.rna's rounding) once where they are stored in shared memory, not per fragment: run_gemm
// rounds each landed stage (round_tf32_stage), the reduction and the pool's max are rounded as they are
// written. A fragment register would otherwise be converted by every warp that loads it (2 or 4 of them),
// at three instructions each: 64 conversions a warp per K step of the output GEMMs.
template <>
struct Math<MathMode::kTF32> {
  using Element = float;
  static constexpr int kStride = Plan::stage_stride(4);
  static constexpr bool kRoundsStages = true;
  static SIMT_DEVICE float round_operand(float value) { return simt::round_tf32_operand(value); }
  static SIMT_DEVICE simt::u32x4 round_operands(simt::u32x4 v) {
    v.x = simt::round_tf32_operand_bits(v.x);
    v.y = simt::round_tf32_operand_bits(v.y);
    v.z = simt::round_tf32_operand_bits(v.z);
    v.w = simt::round_tf32_operand_bits(v.w);
    return v;
  }

  static SIMT_DEVICE void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    simt::mma_m16n8k8_tf32(c, a, b, c);
  }

  template <int MI, int NI, bool kPartial, bool kPixelsAsN, class ARows>
  static SIMT_DEVICE void multiply(float (&acc)[MI][NI][4], const ARows& a, const float* b, int tile_m0,
                                   int tile_n0, int m_tiles, int n_tiles, int lane, int k_end) {
    static_assert(NI % 2 == 0, "B tiles are loaded in pairs");
    // warp-uniform: no tile of this warp has data
    if ((kPixelsAsN ? 2 * tile_m0 : tile_m0) >= m_tiles || tile_n0 >= n_tiles) return;
    // A: (rows 0-7 | 8-15) x (k 0-3 | 4-7), addresses from `a`. B: lane l gives row l % 8 of matrix q = l / 8:
    // (n tile ni, k 0-3), (ni, k 4-7), (ni + 1, k 0-3), (ni + 1, k 4-7).
    const int q = lane / 8, row8 = lane % 8;
    const float* b_lane = b + ((tile_n0 + (q >> 1)) * 8 + row8) * kStride + 4 * (q & 1);
    SIMT_UNROLL
    for (int kk = 0; kk < kKChunk<float>; kk += 8) {
      if (kPartial && kk >= k_end) break;  // k8 slices past K (as Math16's)
      uint32_t af[MI][4], bf[NI][2];
      const auto a_k = a.at(kk);
      SIMT_UNROLL
      for (int mi = 0; mi < MI; ++mi) simt::ldmatrix_x4(af[mi], a_k.row(mi));
      SIMT_UNROLL
      for (int ni = 0; ni < NI; ni += 2) {
        uint32_t pair[4];
        simt::ldmatrix_x4(pair, b_lane + ni * 8 * kStride + kk);
        bf[ni][0] = pair[0];
        bf[ni][1] = pair[1];
        bf[ni + 1][0] = pair[2];
        bf[ni + 1][1] = pair[3];
      }
      if constexpr (kPixelsAsN) {
        multiply_transposed<Math>(acc, af, bf, tile_m0, m_tiles);
        continue;
      }
      SIMT_UNROLL
      for (int mi = 0; mi < MI; ++mi) {
        if (m_tile(tile_m0, mi) >= m_tiles) continue;
        for (int ni = 0; ni < NI; ++ni) mma(acc[mi][ni], af[mi], bf[ni]);
      }
    }
  }
};

// Exact float32: the same tiles and accumulator layout as the mma paths (rows g and g+8, columns 2t and
// 2t+1 of each 16 x 8 tile), computed with FMAs. Each K chunk is summed on its own and then added to the
// accumulator: two-level summation keeps the rounding error near that of blocked GEMM libraries (a single
// running sum over K = 832 loses several times more).
template <>
struct Math<MathMode::kF32> : OperandsAsStored {
  using Element = float;
  static constexpr int kStride = Plan::stage_stride(4);

  // (It multiplies a last, partial chunk whole: its elements past K are zeros, and a test per k would cost
  // this loop more than the zeros do.)
  template <int MI, int NI, bool kPartial, bool kPixelsAsN>
  static SIMT_DEVICE void multiply(float (&acc)[MI][NI][4], const StagedRows<float>& staged, const float* b,
                                   int tile_m0, int tile_n0, int m_tiles, int /*n_tiles*/, int lane, int /*k_end*/) {
    static_assert(!kPixelsAsN, "the exact path keeps C's layout");
    const float* a = staged.stage;
    // No early exit for idle warps here: it cost this FMA path 2.6 KB of spills (255 registers); the exact
    // mode is the reference path, not the fast one.
    const int g = lane / 4, t = lane % 4;
    SIMT_UNROLL
    for (int mi = 0; mi < MI; ++mi) {
      if (m_tile(tile_m0, mi) >= m_tiles) continue;
      const float* row0 = a + (m_tile(tile_m0, mi) * 16 + g) * kStride;
      const float* row1 = row0 + 8 * kStride;
      SIMT_UNROLL
      for (int ni = 0; ni < NI; ++ni) {
        const float* col0 = b + ((tile_n0 + ni) * 8 + 2 * t) * kStride;
        const float* col1 = col0 + kStride;
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        SIMT_UNROLL
        for (int k = 0; k < kKChunk<float>; ++k) {
          c[0] = fmaf(row0[k], col0[k], c[0]);
          c[1] = fmaf(row0[k], col1[k], c[1]);
          c[2] = fmaf(row1[k], col0[k], c[2]);
          c[3] = fmaf(row1[k], col1[k], c[3]);
        }
        SIMT_UNROLL
        for (int r = 0; r < 4; ++r) acc[mi][ni][r] += c[r];
      }
    }
  }
};

// ---- the GEMM engine --------------------------------------------------------------------------------------

SIMT_DEVICE float relu(float v) { return v <= 0.0f ? 0.0f : v; }  // NaN stays NaN, as torch.relu

// The weight rows a GEMM reads: `data` is the first output channel's row of `length` (K) elements, the next
// row `stride` elements on (a WeightView, offset to a task's first channel). Rows start 16-byte aligned and
// any elements between `length` and the next whole 16-byte vector are zeros (the plan's condition).
template <class T>
struct WeightRows {
  const T* data;
  int64_t stride, length;
};

// How the CTA fills a kRows x kKChunk<T> stage with 16-byte copies: each thread keeps one vector column and the
// rows first_row() + j * kRowStep, j < kCopies, so the streams below compute a thread's addresses and
// predicates once; a stream is called for K chunks 0, 1, 2, ... in order and advances its pointer by one
// chunk a call (no division, no 64-bit multiply in the K loop).
template <class T, int kRows>
struct StageColumns {
  static constexpr int kVector = kVectorElements<T>;
  static constexpr int kChunk = kKChunk<T>;
  static constexpr int kVectorsPerRow = kChunk / kVector;
  static_assert(Plan::kThreads % kVectorsPerRow == 0, "a thread keeps one vector column");
  static constexpr int kRowStep = Plan::kThreads / kVectorsPerRow;
  static constexpr int kCopies = (kRows + kRowStep - 1) / kRowStep;
  static SIMT_DEVICE int first_row() { return int(threadIdx.x) / kVectorsPerRow; }
  static SIMT_DEVICE int vector() { return int(threadIdx.x) % kVectorsPerRow; }
  // Copy j lies in the stage (the last step of rows may run past kRows). first_row() < kRowStep, so every
  // step that ends within the stage is known at compile time; only a partial last step tests the thread.
  static SIMT_DEVICE bool in_stage(int j) { return (j + 1) * kRowStep <= kRows || first_row() + j * kRowStep < kRows; }
};

// TF32: rounds a landed float stage in place to mma operands, 16 bytes at a time, each thread the vector
// column and rows a stream's copies give it (a quarter warp covers one 128-byte row): all kRows rows, or
// (kBounded) rows [0, rows).
template <int kRows, bool kBounded>
SIMT_DEVICE void round_tf32_stage(float* stage, int rows = kRows) {
  using C = StageColumns<float, kRows>;
  constexpr int kStride = Plan::stage_stride(4);
  float* const column = stage + C::first_row() * kStride + C::vector() * C::kVector;
  SIMT_UNROLL
  for (int j = 0; j < C::kCopies; ++j) {
    if (!C::in_stage(j) || (kBounded && C::first_row() + j * C::kRowStep >= rows)) break;
    float* const vector = column + j * C::kRowStep * kStride;
    simt::store_128(vector, Math<MathMode::kTF32>::round_operands(simt::load_128(vector)));
  }
}

// Streams rows [n0, n0 + kRows) x [k0, k0 + kKChunk<T>) of the weight rows into the B stage as 16-byte
// cp.async copies (in the chunk's group); rows past `count` and vectors past the row are zero-filled.
template <class T, int kRows>
struct WeightStream : StageColumns<T, kRows> {
  using C = StageColumns<T, kRows>;
  const T* source;      // this thread's first row, its vector column, at the next chunk
  int64_t row_offset[C::kCopies];  // copy j's row from the first, 0 past the pass's channels (an address
                                   // in the weights, like the first row's, never read: src-size 0)
  int k_left;           // elements of the row from there on (K fits int32: plan_fused_launch)
  int stage_offset;     // this thread's first row in the stage
  uint32_t rows_inside;  // bit j: copy j's row is one of the pass's channels

  SIMT_DEVICE WeightStream(const WeightRows<T>& w, int count, int n0, int stride) {
    const int row0 = C::first_row();
    const int column = C::vector() * C::kVector;
    k_left = int(w.length) - column;
    source = w.data + (n0 + row0) * w.stride + column;
    stage_offset = row0 * stride + column;
    rows_inside = 0;
    SIMT_UNROLL
    for (int j = 0; j < C::kCopies; ++j) {
      const int row = row0 + j * C::kRowStep;
      const bool inside = row < kRows && n0 + row < count;
      rows_inside |= uint32_t(inside) << j;
      row_offset[j] = inside ? j * C::kRowStep * w.stride : 0;
    }
  }

  // The next chunk into `stage` (rows `stride` elements apart).
  SIMT_DEVICE void operator()(T* stage, int stride) {
    const bool k_inside = k_left > 0;
    SIMT_UNROLL
    for (int j = 0; j < C::kCopies; ++j) {
      if (!C::in_stage(j)) break;
      const bool inside = k_inside && ((rows_inside >> j) & 1u);
      // Outside, src-size 0 reads nothing and zero-fills; the address only has to be well formed (row_offset:
      // no select per copy in the K loop).
      simt::cp_async_16(stage + stage_offset + j * C::kRowStep * stride, source + row_offset[j], inside ? 16 : 0);
    }
    source += C::kChunk;
    k_left -= C::kChunk;
  }
};

// The epilogue of a pass. Lane (g, t) holds, in each m16n8 tile, rows g and g + 8 of the adjacent columns 2t
// and 2t + 1. The accumulators started at their columns' biases (start_at_biases), so each such pair goes to
// the store as it is, which applies ReLU and writes it: `store.write_pair` in one store where the store has a
// pair path (Store::kHasPairPath) and the channels allow it, `store.write` otherwise. Where every column of
// the warp's tiles is a channel (warp-uniform), the stores test only the row: no column test, no lone last
// channel (change 33). A warp whose columns the channels end inside (112 channels: the fourth warp's 96-127)
// takes the testing path, as does one wholly past them, which stores nothing. The reduction's store has the
// untested path off (kWholeWarpPath).
// What a store needs of a row (GEMM M index m; `index` = 2 mi + half, the lane's row number) and of a column
// (the pair's first channel) is worked out once, by `store.row(m, index)` and `store.column(c)`, not per
// pair: 2 MI rows and NI columns make 2 MI x NI pairs.

// The accumulators of a pass start at their columns' biases (zero past the channels: bias_at), registers 0
// and 2 the lane's first column's, 1 and 3 the second's: the epilogue adds nothing, and the bias loads are
// in flight with the pass's first chunk instead of stalling its epilogue (change 33).
template <int MI, int NI, class Store>
SIMT_DEVICE void start_at_biases(float (&acc)[MI][NI][4], int first, const Store& store) {
  SIMT_UNROLL
  for (int ni = 0; ni < NI; ++ni) {
    const float first_bias = store.bias_at(first, ni * 8), second_bias = store.bias_at(first, ni * 8 + 1);
    SIMT_UNROLL
    for (int mi = 0; mi < MI; ++mi) {
      acc[mi][ni][0] = simt::distinct_copy(first_bias);
      acc[mi][ni][1] = simt::distinct_copy(second_bias);
      acc[mi][ni][2] = simt::distinct_copy(first_bias);
      acc[mi][ni][3] = simt::distinct_copy(second_bias);
    }
  }
}

// The same for transposed tiles (multiply_transposed): registers 0, 1 of tile (mi, 2 cb + h) start at channel
// `first` + 16 cb's bias (`first`: the warp's first channel + g), 2 and 3 at + 8's.
template <int MI, int NI, class Store>
SIMT_DEVICE void start_at_biases_transposed(float (&acc)[MI][NI][4], int first, const Store& store) {
  SIMT_UNROLL
  for (int cb = 0; cb < NI / 2; ++cb) {
    const float low = store.bias_at(first, 16 * cb), high = store.bias_at(first, 16 * cb + 8);
    SIMT_UNROLL
    for (int mi = 0; mi < MI; ++mi) {
      SIMT_UNROLL
      for (int h = 0; h < 2; ++h) {
        acc[mi][2 * cb + h][0] = simt::distinct_copy(low);
        acc[mi][2 * cb + h][1] = simt::distinct_copy(low);
        acc[mi][2 * cb + h][2] = simt::distinct_copy(high);
        acc[mi][2 * cb + h][3] = simt::distinct_copy(high);
      }
    }
  }
}

// Transposed tiles into the pairs the stores take: lane (g, t) holds channels c = 16 cb + g (+ 8) at pixel rows
// 2t and 2t + 1 of a tile row, and a store wants two adjacent channels of one pixel. Lanes g and g ^ 1 (lane ^ 4)
// swap one value each: the even one keeps pixel 2t (channels g, g + 1), the odd one pixel 2t + 1 (g - 1, g). The
// result has the layout of C's tiles with the lane's rows at 2t + (g & 1) (+ 8) and its pairs at channel g & ~1
// (+ 8 ni): pair (mi, ni = 2 cb + half) of row half h in registers 2h, 2h + 1.
template <int MI, int NI>
SIMT_DEVICE void pairs_from_transposed(float (&acc)[MI][NI][4], int lane) {
  const bool odd = (lane / 4) & 1;
  float pairs[MI][NI][4];
  SIMT_UNROLL
  for (int mi = 0; mi < MI; ++mi) {
    SIMT_UNROLL
    for (int cb = 0; cb < NI / 2; ++cb) {
      SIMT_UNROLL
      for (int h = 0; h < 2; ++h) {
        SIMT_UNROLL
        for (int half = 0; half < 2; ++half) {
          const float at_even = acc[mi][2 * cb + h][2 * half], at_odd = acc[mi][2 * cb + h][2 * half + 1];
          const float other = __shfl_xor_sync(0xffffffffu, odd ? at_even : at_odd, 4);
          pairs[mi][2 * cb + half][2 * h] = odd ? other : at_even;
          pairs[mi][2 * cb + half][2 * h + 1] = odd ? at_odd : other;
        }
      }
    }
  }
  SIMT_UNROLL
  for (int mi = 0; mi < MI; ++mi) {
    SIMT_UNROLL
    for (int ni = 0; ni < NI; ++ni) {
      SIMT_UNROLL
      for (int r = 0; r < 4; ++r) acc[mi][ni][r] = pairs[mi][ni][r];
    }
  }
}

// Calls write(row, ni, first, second) for every pair of the pass, with its row (worked out once per row) and
// its accumulators; `lane_row`: the lane's first row in an m tile (g, or 2t + (g & 1) for transposed tiles).
// (A function, not a generic lambda: NVRTC compiles those as host code.)
template <int MI, int NI, class Store, class Write>
SIMT_DEVICE void for_each_pair(const float (&acc)[MI][NI][4], int tile_m0, int lane_row, const Store& store,
                               const Write& write) {
  SIMT_UNROLL
  for (int mi = 0; mi < MI; ++mi) {
    SIMT_UNROLL
    for (int row_half = 0; row_half < 2; ++row_half) {
      const typename Store::Row row = store.row(m_tile(tile_m0, mi) * 16 + lane_row + 8 * row_half, 2 * mi + row_half);
      SIMT_UNROLL
      for (int ni = 0; ni < NI; ++ni) write(row, ni, acc[mi][ni][2 * row_half], acc[mi][ni][2 * row_half + 1]);
    }
  }
}

// The pass's pairs through the store, kWhole: every column of the warp's tiles is a channel.
template <bool kWhole, int MI, int NI, class Store>
SIMT_DEVICE void store_pairs(const float (&acc)[MI][NI][4], int first, int tile_m0, int lane_row, const Store& store) {
  using Row = typename Store::Row;
  if constexpr (Store::kHasPairPath) {
    // Channels contiguous (a CTA-uniform test): the pair of column (tile_n0 + ni) * 8 + 2t lies ni * 8 elements
    // from the lane's first, a constant offset from its row's pointer.
    if (store.pairs) {
      for_each_pair(acc, tile_m0, lane_row, store, [&](const Row& row, int ni, float first_value, float second_value) {
        store.template write_pair<kWhole>(row, first, ni * 8, first_value, second_value);
      });
      return;
    }
  }
  typename Store::Column columns[NI];
  SIMT_UNROLL
  for (int ni = 0; ni < NI; ++ni) columns[ni] = store.column(first + ni * 8);
  for_each_pair(acc, tile_m0, lane_row, store, [&](const Row& row, int ni, float first_value, float second_value) {
    store.template write<kWhole>(row, columns[ni], first_value, second_value);
  });
}

// `first`: the lane's first column (tile ni's pair is ni * 8 further; for transposed tiles the warp's first
// channel + (g & ~1): pairs_from_transposed); `whole_warp`: every column of the warp's tiles is a channel.
template <bool kPixelsAsN, int MI, int NI, class Store>
SIMT_DEVICE void store_accumulators(float (&acc)[MI][NI][4], int first, bool whole_warp, int tile_m0,
                                    int lane, const Store& store) {
  static_assert(2 * MI == Store::kLaneRows, "the store's lane rows (row index 2 mi + half) are this GEMM's");
  const int g = lane / 4;
  int lane_row = g;
  if constexpr (kPixelsAsN) {
    pairs_from_transposed(acc, lane);
    lane_row = 2 * (lane % 4) + (g & 1);
  }
  if constexpr (Store::kWholeWarpPath) {
    if (whole_warp) {
      store_pairs<true>(acc, first, tile_m0, lane_row, store);
      return;
    }
  }
  store_pairs<false>(acc, first, tile_m0, lane_row, store);
}

// This thread's warp, and its warp's first m tile (a kWarpsM x kWarpsN grid of warps; m_tile gives the others).
// The launch's block is told to nvcc twice: the warp index taken modulo the warp count as well bounds tile_m0
// in every inlined copy (the assumption alone was lost in some). (That folded the output GEMMs' m tile tests
// while their count was the constant 4; since edge tiles skip m tiles it is a run-time value.)
SIMT_DEVICE int warp_index() {
  SIMT_ASSUME(threadIdx.x < unsigned(Plan::kThreads));
  return int(threadIdx.x / simt::kWarpSize) % (Plan::kWarpsM * Plan::kWarpsN);
}
SIMT_DEVICE int warp_tile_m0() {
  return warp_index() / Plan::kWarpsN;  // its warp row (m_tile)
}

// A loaders whose A needs a second step once its copies have landed (finish()), between two barriers: the
// pool's (specialised below).
template <class LoadA>
struct FinishesA {
  static constexpr bool value = false;
};

// Whether a loader's A stage holds x as read (cp.async copies or element stores), which TF32 rounds in the
// stage (true), or values already rounded (false): the pool's max (rounded by finish()) and the k x k windows,
// read from the reduction (rounded by ReductionStore). Every loader states it (a specialisation next to it;
// the primary template is never defined): rounding is not idempotent here, since the stored form keeps the
// low bits with half an ulp added (simt::round_tf32_operand), so A rounded twice would be an ulp off.
template <class LoadA>
struct StagesRawA;

// A loader whose loads for the next chunk are kept in registers across a multiply (fetch() with the copies,
// commit(stage) after the multiply): ElementLoader where its share is small (specialised next to it).
template <class LoadA>
struct DefersStores {
  static constexpr bool value = false;
};

// A loader with load<kWhole>(stage, k0), which in a chunk within K tests no channel (ElementLoader and the
// pool's halo through it, specialised next to them): run_gemm then peels the step that issues the last chunk.
template <class LoadA>
struct LoadsWholeChunks {
  static constexpr bool value = false;
};

// Where multiply() finds a K chunk's A: in the stage, for every loader that stages it (an overload below
// serves the one that does not).
template <class LoadA, class T>
SIMT_DEVICE StagedRows<T> a_rows(const LoadA&, const T* stage, int64_t /*chunk*/, int tile_m0, int lane) {
  return StagedRows<T>(stage, tile_m0, lane);
}

// C[m_rows x count] = A * W^T over K = w.length in passes of N = kWarpsN * NI * 8 channels. `load_a(stage,
// k0)` fills the A stage (all kWarpsM * MI * 16 rows, zeros where there is no data); each pass calls a fresh
// copy of it for k0 = 0, kKChunk, 2 kKChunk, ... in order (a stream may count instead of reading k0).
// `stages`: kStages buffers of kRowsPerStage rows, each this GEMM's A rows followed by its B rows.
// `store` receives every accumulator of a pass (store_accumulators). Loaders and stores are functors, not lambdas, so that they
// inline and the accumulators stay in registers. Every thread of the CTA calls it with the same arguments
// (it synchronises the CTA). kPixelsAsN: the tensor cores compute C^T (multiply_transposed), and `m_tiles`
// counts the 8-row tiles to compute, not the 16-row ones.
template <MathMode kMode, int MI, int NI, bool kPixelsAsN, class LoadA, class Store>
SIMT_DEVICE void run_gemm(typename Math<kMode>::Element* stages, const WeightRows<typename Math<kMode>::Element>& w,
                          int count, int m_tiles, const LoadA& load_a, const Store& store) {
  using M = Math<kMode>;
  constexpr int kChunk = kKChunk<typename M::Element>;
  constexpr int kN = Plan::kWarpsN * NI * 8, kARows = Plan::kWarpsM * MI * 16;
  static_assert(kARows + kN <= Plan::kRowsPerStage, "a stage holds the GEMM's A and B rows");
  // Stage i of A and B (computed, not an array of pointers: a run-time index would put that in local memory).
  auto a_stage = [&](int stage) { return stages + stage * Plan::kRowsPerStage * M::kStride; };
  auto b_stage = [&](int stage) { return a_stage(stage) + kARows * M::kStride; };
  static_assert(Plan::kStages == 2, "the pipeline below alternates two stages");
  const int warp = warp_index(), lane = threadIdx.x % simt::kWarpSize;
  const int tile_m0 = warp_tile_m0(), tile_n0 = (warp % Plan::kWarpsN) * NI;
  // The lane whose ldmatrix addresses this one computes (multiply_transposed: the registers' order).
  const int address_lane = kPixelsAsN ? transposed_lane(lane) : lane;
  const int chunks = int((w.length + kChunk - 1) / kChunk);  // K fits int32: plan_fused_launch
  if (chunks == 0) return;  // no K: nothing to issue (a committed group would outlive the kernel)
  const int last_k_end = int(w.length) - (chunks - 1) * kChunk;  // K elements in the last chunk
  for (int n0 = 0; n0 < count; n0 += kN) {
    // 8-channel tiles of this pass that hold channels: a warp whose tiles all lie past them skips the
    // multiply (a 64-channel task in a 128-wide pass: half the warps). Its tiles' accumulators stay zero,
    // and the stores drop columns past `count`.
    const int n_tiles = ((count - n0 < kN ? count - n0 : kN) + 7) / 8;
    // The lane's first column, in the accumulators (transposed tiles: in the pairs they become).
    const int first_column = n0 + tile_n0 * 8 + (kPixelsAsN ? (lane / 4) & ~1 : 2 * (lane % 4));
    const bool whole_warp = n0 + (tile_n0 + NI) * 8 <= count;     // every column of the warp's tiles a channel
    float acc[MI][NI][4];
    WeightStream<typename M::Element, kN> stage_weights(w, count, n0, M::kStride);
    LoadA pass_load_a = load_a;
    // Stage `chunk` into buffer `stage`: weights and (where the loader can) A as cp.async, one group. A
    // loader that defers its stores only loads here; step() stores them after its multiply.
    // (Not in the exact float32 mode: its FMA multiply holds more registers, and the extra live state and
    // peeled steps doubled its spills; it is the reference path, not the fast one.)
    constexpr bool kDefersA = DefersStores<LoadA>::value && kMode != MathMode::kF32;
    constexpr bool kWholeA = LoadsWholeChunks<LoadA>::value && kMode != MathMode::kF32;
    // `whole`: the chunk lies within K (a constant at every call), so the loader tests no channel.
    auto issue = [&](int chunk, int stage, bool whole) {
      stage_weights(b_stage(stage), M::kStride);
      if constexpr (kDefersA) {
        whole ? pass_load_a.template fetch<true>() : pass_load_a.template fetch<false>();
      } else if constexpr (kWholeA) {
        whole ? pass_load_a.template load<true>(a_stage(stage), int64_t(chunk) * kChunk)
              : pass_load_a.template load<false>(a_stage(stage), int64_t(chunk) * kChunk);
      } else {
        pass_load_a(a_stage(stage), int64_t(chunk) * kChunk);
      }
      simt::cp_async_commit();
    };
    // One barrier a K step (two where a landed stage is completed first). Each step waits for its own
    // chunk's copies, then the barrier makes every thread's copies visible and also ends every warp's
    // multiply of the previous chunk, whose buffer the next chunk's copies then refill: they fly while this
    // chunk is multiplied, as long as they did when issued before the wait (change 28).
    // `last`, a constant at both calls below: the last chunk multiplies only its k slices within K, and
    // issues nothing.
    constexpr bool kOneBarrier = Plan::kBarriersPerStep == 1;
    auto step = [&](int chunk, bool last, bool next_whole) {
      const int stage = int(chunk & 1);
      if constexpr (kOneBarrier) {
        simt::cp_async_wait<0>();  // this thread's copies of the chunk (the only group in flight)
        __syncthreads();
        if (!last) issue(chunk + 1, stage ^ 1, next_whole);
      } else {  // the build variant: the buffer was released by the barrier ending the last step
        if (!last) issue(chunk + 1, stage ^ 1, next_whole);
        last ? simt::cp_async_wait<0>() : simt::cp_async_wait<1>();
        __syncthreads();
      }
      if constexpr (FinishesA<LoadA>::value || M::kRoundsStages) {
        // Each thread completes its share of the landed stages: the pool's max, TF32's rounding.
        if constexpr (FinishesA<LoadA>::value) pass_load_a.template finish<M>(a_stage(stage), stage);
        if constexpr (M::kRoundsStages) {
          round_tf32_stage<kN, false>(b_stage(stage));  // every row: those past the channels hold zeros
          if constexpr (StagesRawA<LoadA>::value) {
            round_tf32_stage<kARows, true>(a_stage(stage), m_tiles * (kPixelsAsN ? 8 : 16));  // skip M padding
          }
        }
        __syncthreads();  // the stages are complete before any warp multiplies them
      }
      const auto a = a_rows(load_a, a_stage(stage), chunk, tile_m0, address_lane);
      if (last) {
        M::template multiply<MI, NI, true, kPixelsAsN>(acc, a, b_stage(stage), tile_m0, tile_n0, m_tiles, n_tiles,
                                                        address_lane, last_k_end);
      } else {
        M::template multiply<MI, NI, false, kPixelsAsN>(acc, a, b_stage(stage), tile_m0, tile_n0, m_tiles, n_tiles,
                                                         address_lane, kChunk);
      }
      // The next chunk's A, loaded before the multiply, into the buffer the barrier above released.
      if constexpr (kDefersA) {
        if (!last) pass_load_a.commit(a_stage(stage ^ 1));
      }
      if constexpr (!kOneBarrier) __syncthreads();  // the variant: this buffer is refilled two steps on
    };
    issue(0, 0, false);
    if constexpr (kDefersA) pass_load_a.commit(a_stage(0));
    // After the first chunk's copies are issued: a use of a bias waits for its load. (ptxas may still move one
    // copy after the first use, so that copy waits a load's latency, as the epilogue's bias adds did before.)
    if constexpr (kPixelsAsN) {
      start_at_biases_transposed(acc, n0 + tile_n0 * 8 + lane / 4, store);
    } else {
      start_at_biases(acc, first_column, store);
    }
    if constexpr (kDefersA || kWholeA) {
      // The step that issues the last chunk is peeled too: the loop's loads test no channel.
      for (int chunk = 0; chunk + 2 < chunks; ++chunk) step(chunk, false, true);
      if (chunks >= 2) step(chunks - 2, false, false);
    } else {
      for (int chunk = 0; chunk + 1 < chunks; ++chunk) step(chunk, false, false);
    }
    step(chunks - 1, true, false);
    store_accumulators<kPixelsAsN>(acc, first_column, whole_warp, tile_m0, lane, store);
    // The next pass fills buffer 0 first: with an odd number of chunks a warp may still be multiplying it.
    // (After the last pass the caller synchronises where it reads what the store wrote.)
    if (kOneBarrier && (chunks & 1) && n0 + kN < count) __syncthreads();
  }
}

// ---- A loaders ----------------------------------------------------------------------------------------------

// A CTA's view of its image: frame pixel (y, x) is image pixel (y, x), or (x, y) when transposed. The kernel
// works in frame coordinates throughout (the tile, its halo, the pool's neighbours, the k x k taps); only
// image bounds and memory offsets go through here. A tile cut short by the image's right edge more than by
// its bottom edge is transposed (tile_frame), so that its pixels outside the image are the GEMMs' last rows,
// whole m tiles that they skip.
struct Frame {
  const InceptionParams& p;
  bool transposed;
  SIMT_DEVICE int64_t height() const { return transposed ? p.width : p.height; }
  SIMT_DEVICE int64_t width() const { return transposed ? p.height : p.width; }
  SIMT_DEVICE bool inside(int y, int x) const { return y >= 0 && y < height() && x >= 0 && x < width(); }
  // Offsets from frame coordinates: the coordinates swapped (two selects), not the strides (four 64-bit ones).
  SIMT_DEVICE int image_y(int y, int x) const { return transposed ? x : y; }
  SIMT_DEVICE int image_x(int y, int x) const { return transposed ? y : x; }
  SIMT_DEVICE int64_t x_offset(int y, int x) const {
    return image_y(y, x) * p.x_stride[2] + image_x(y, x) * p.x_stride[3];
  }
  SIMT_DEVICE int64_t out_offset(int y, int x) const {
    return image_y(y, x) * p.out_stride[2] + image_x(y, x) * p.out_stride[3];
  }
};

// Tile `tile` of an image in its frame: transposed where fewer of its columns than of its rows lie in the
// image and x is read in 16-byte vectors of channels. (x read element by element, NCHW, would then be read
// down the image's columns: a warp's 32 pixels of a channel in 32 sectors, not 4 to 8, on every K step;
// and an NCHW output written the same way. Those tiles keep the image's frame and compute their rows.)
// `rows`: its frame rows in the image (the output GEMMs compute their (rows + 1) / 2 m tiles).
struct TileFrame {
  Frame frame;
  int y0, x0, rows;
};
SIMT_DEVICE TileFrame tile_frame(const InceptionParams& p, int tile) {
  const int y0 = (tile / p.tiles_w) * Plan::kTile, x0 = (tile % p.tiles_w) * Plan::kTile;
  const int rows = int(p.height - y0 < Plan::kTile ? p.height - y0 : Plan::kTile);
  const int columns = int(p.width - x0 < Plan::kTile ? p.width - x0 : Plan::kTile);
  const bool transposed = columns < rows && p.x_vectorized;
  return TileFrame{Frame{p, transposed}, transposed ? x0 : y0, transposed ? y0 : x0, transposed ? columns : rows};
}

// A box of pixels of one image, in frame coordinates: row r of the GEMM is pixel (y0 + r / width, x0 + r % width).
struct PixelBox {
  int y0, x0, width, pixels;
};

// x element by element, when its channels are not contiguous 16-byte vectors (NCHW, odd channel counts, any
// strided view), into a stage of rows kStride elements apart: rows [0, kStageRows) (pixels of the box; zero
// past it and outside the image), channels [k0, k0 + kKChunk<T>) (zero past them). Each thread keeps fixed
// pixels, rows lane + 32 i, and takes the channels warp + 8 j of every chunk: pixel offsets and predicates
// are computed once per GEMM, so a chunk costs a load, a store and 64-bit adds per element, no division.
// A warp reads 32 consecutive pixels of one channel: coalesced in NCHW.
template <class T, int kStageRows, int kStride = Plan::stage_stride(int(sizeof(T)))>
struct ElementLoader {
  static constexpr int kPixels = (kStageRows + simt::kWarpSize - 1) / simt::kWarpSize;  // rows a thread keeps
  static constexpr int kChannelStep = Plan::kThreads / simt::kWarpSize;  // warps: a thread's channels are this apart
  static constexpr int kChannels = kKChunk<T> / kChannelStep;  // channels a thread stages per chunk
  static_assert(Plan::kThreads % simt::kWarpSize == 0 && kKChunk<T> % kChannelStep == 0, "whole channels");
  const T* x;               // this image at this thread's first channel of the next chunk
  int64_t channel_stride;   // x_stride[1]
  int channels_left;        // channels from there on (in_channels fits int32: plan_fused_launch)
  int stage_offset;         // this thread's first element in the stage
  int64_t pixel_offset[kPixels];
  uint32_t pixels_inside;   // bit i: pixel i is in the box and the image

  SIMT_DEVICE ElementLoader(const Frame& frame, int64_t image, const PixelBox& box) {
    const InceptionParams& p = frame.p;
    const int lane = int(threadIdx.x) % simt::kWarpSize, first_channel = int(threadIdx.x) / simt::kWarpSize;
    channel_stride = p.x_stride[1];
    x = static_cast<const T*>(p.x) + image * p.x_stride[0] + first_channel * channel_stride;
    channels_left = int(p.shape.in_channels) - first_channel;
    stage_offset = lane * kStride + first_channel;
    pixels_inside = 0;
    SIMT_UNROLL
    for (int i = 0; i < kPixels; ++i) {
      const int row = lane + i * simt::kWarpSize;
      const int y = box.y0 + row / box.width, xx = box.x0 + row % box.width;
      const bool inside = row < box.pixels && frame.inside(y, xx);
      pixels_inside |= uint32_t(inside) << i;
      pixel_offset[i] = inside ? frame.x_offset(y, xx) : 0;
    }
    if constexpr (kDefersStores) {
      SIMT_UNROLL
      for (int j = 0; j < kChannels; ++j) {
        SIMT_UNROLL
        for (int i = 0; i < kPixels; ++i) held[j][i] = simt::from_float<T>(0.0f);
      }
    }
  }

  // Row lane + 32 i lies in the stage: known at compile time but for a partial last step of rows.
  static SIMT_DEVICE bool in_stage(int i) {
    return (i + 1) * simt::kWarpSize <= kStageRows || int(threadIdx.x) % simt::kWarpSize + i * simt::kWarpSize < kStageRows;
  }

  // Element (channel j, pixel i) of the next chunk as stored at its address (pixel_offset 0 outside the image),
  // and the same zero outside the image and past the channels.
  SIMT_DEVICE T loaded(int j, int i) const { return x[j * kChannelStep * channel_stride + pixel_offset[i]]; }
  SIMT_DEVICE T element(int j, int i) const {
    const bool inside = channels_left > j * kChannelStep && ((pixels_inside >> i) & 1u);
    return inside ? loaded(j, i) : simt::from_float<T>(0.0f);
  }
  SIMT_DEVICE T& at(T* stage, int j, int i) const {
    return stage[stage_offset + i * simt::kWarpSize * kStride + j * kChannelStep];
  }
  SIMT_DEVICE void advance() {
    x += kKChunk<T> * channel_stride;
    channels_left -= kKChunk<T>;
  }

  // The next chunk (its K offset k0 is implied by the calls so far), loaded and stored. (At 16 bits ptxas
  // issues all of its loads first, 8 channels x 5 pixels in the reduction, and spills some of them inside the
  // K loop: fewer instructions a step than a loop over channel groups, or a __syncwarp between two, measured;
  // change 24.) kWhole (run_gemm: LoadsWholeChunks): every channel of the chunk exists, and a pixel outside the
  // box or the image is loaded from the well-formed address it has (pixel_offset 0) instead of zeroed: no test
  // or select an element. That is for the GEMMs whose rows outside are never used: the reduction's M padding
  // (its box lies in the image) and the pool's halo outside the image (its max skips it: PoolStream).
  template <bool kWhole>
  SIMT_DEVICE void load(T* stage, int64_t /*k0*/) {
    SIMT_UNROLL
    for (int j = 0; j < kChannels; ++j) {
      SIMT_UNROLL
      for (int i = 0; i < kPixels; ++i) {
        if (!in_stage(i)) break;
        at(stage, j, i) = kWhole ? loaded(j, i) : element(j, i);
      }
    }
    advance();
  }
  SIMT_DEVICE void operator()(T* stage, int64_t k0) { load<false>(stage, k0); }

  // Or loaded now and stored after the multiply (run_gemm: DefersStores), so that the loads' latency passes
  // during the multiply: stored at once, every K step waited a global load's latency before its multiply.
  // Only where a thread's share is small: the reduction's 40 16-bit elements would spill in its K loop.
  static constexpr bool kDefersStores = kPixels * kChannels <= 16;
  T held[kDefersStores ? kChannels : 1][kDefersStores ? kPixels : 1];
  // kWhole: every channel of the chunk exists, and a pixel outside keeps the zero it holds from the start
  // (held is zeroed on construction, and no load writes it): only in-image pixels are loaded, no select.
  template <bool kWhole>
  SIMT_DEVICE void fetch() {
    static_assert(kDefersStores, "only a small share is held in registers");
    SIMT_UNROLL
    for (int j = 0; j < kChannels; ++j) {
      SIMT_UNROLL
      for (int i = 0; i < kPixels; ++i) {
        if (!in_stage(i)) continue;
        if (!kWhole) {
          held[j][i] = element(j, i);
        } else if ((pixels_inside >> i) & 1u) {
          held[j][i] = loaded(j, i);
        }
      }
    }
    advance();
  }
  SIMT_DEVICE void commit(T* stage) const {
    SIMT_UNROLL
    for (int j = 0; j < kChannels; ++j) {
      SIMT_UNROLL
      for (int i = 0; i < kPixels; ++i) {
        if (in_stage(i)) at(stage, j, i) = held[j][i];
      }
    }
  }
};

template <class T, int kStageRows, int kStride>
struct StagesRawA<ElementLoader<T, kStageRows, kStride>> {
  static constexpr bool value = true;
};
template <class T, int kStageRows, int kStride>
struct DefersStores<ElementLoader<T, kStageRows, kStride>> {
  static constexpr bool value = ElementLoader<T, kStageRows, kStride>::kDefersStores;
};
template <class T, int kStageRows, int kStride>
struct LoadsWholeChunks<ElementLoader<T, kStageRows, kStride>> {
  static constexpr bool value = !ElementLoader<T, kStageRows, kStride>::kDefersStores;
};

// Plain x when its channels are contiguous and 16-byte aligned: cp.async copies of 16 bytes, zero-filled
// (src_bytes 0) outside the image, past the box and past the channels, so that they overlap the multiply
// of the previous chunk like the weights do. As for the weights, a thread keeps one vector column of fixed
// pixels: their offsets and predicates are computed once per GEMM, a K chunk adds k0.
template <class T, int kRows, int kStride = Plan::stage_stride(int(sizeof(T)))>
struct PixelStream : StageColumns<T, kRows> {
  using C = StageColumns<T, kRows>;
  const T* x;                          // this image, this thread's channel offset, at the next chunk
  int64_t pixel_offset[C::kCopies];    // of copy j's pixel
  int channels_left;                   // channels from there on (in_channels fits int32: plan_fused_launch)
  int stage_offset;
  uint32_t pixels_inside;           // bit j: copy j's pixel is in the box and the image

  SIMT_DEVICE PixelStream(const Frame& frame, int64_t image, const PixelBox& box, int stride = kStride) {
    const InceptionParams& p = frame.p;
    const int row0 = C::first_row();
    const int column = C::vector() * C::kVector;
    channels_left = int(p.shape.in_channels) - column;
    x = static_cast<const T*>(p.x) + image * p.x_stride[0] + column;
    stage_offset = row0 * stride + column;
    pixels_inside = 0;
    SIMT_UNROLL
    for (int j = 0; j < C::kCopies; ++j) {
      const int row = row0 + j * C::kRowStep;
      const int y = box.y0 + row / box.width, xx = box.x0 + row % box.width;
      const bool inside = row < box.pixels && frame.inside(y, xx);
      pixels_inside |= uint32_t(inside) << j;
      pixel_offset[j] = inside ? frame.x_offset(y, xx) : 0;
    }
  }

  // The next chunk (its K offset k0 is implied by the calls so far).
  SIMT_DEVICE void operator()(T* stage, int64_t /*k0*/) {
    constexpr int stride = kStride;
    const bool c_inside = channels_left > 0;
    SIMT_UNROLL
    for (int j = 0; j < C::kCopies; ++j) {
      if (!C::in_stage(j)) break;
      const bool inside = c_inside && ((pixels_inside >> j) & 1u);
      // Outside, src-size 0 (pixel_offset is 0 outside the image: the address stays well formed).
      simt::cp_async_16(stage + stage_offset + j * C::kRowStep * stride, x + pixel_offset[j], inside ? 16 : 0);
    }
    x += C::kChunk;
    channels_left -= C::kChunk;
  }
};

template <class T, int kRows, int kStride>
struct StagesRawA<PixelStream<T, kRows, kStride>> {
  static constexpr bool value = true;
};

// The 3x3 stride-1 max-pool of x (-inf padded, NaN propagating) as the pool projection's A: each K chunk's
// 10 x 10 halo of x goes to shared memory (HaloLoader: 16-byte cp.async copies where x's channels are
// contiguous aligned vectors, in flight with the weights like the 1x1 GEMM's x; element by element
// otherwise), and once it has landed finish() takes each pixel's max over its neighbours in the image, 16
// bytes of channels at a time, into the A stage. The halo stages live where a spatial task keeps its
// reduction (a pool task has none); rows are kHaloStride elements apart (see the two loaders below).
template <class T, class HaloLoader, int kHaloStride>
struct PoolStream {
  static constexpr int kHaloWidth = Plan::kTile + 2, kHaloPixels = kHaloWidth * kHaloWidth;
  static constexpr int kVector = kVectorElements<T>, kVectorsPerRow = kKChunk<T> / kVector;
  // A thread takes one vector column of two vertically adjacent pixels of the tile (rows 2 r and 2 r + 1 of a
  // tile column), which share two of their three rows of neighbours: 4 rows of 3 loads and 11 vector maxes
  // for both, where two pixels apart took 18 loads and 16 maxes. kPairs of them: every thread's with 128-byte
  // K chunks; the first warps' with a shorter chunk (the k32 build variant).
  static constexpr int kPairs = Plan::kTilePixels / 2 * kVectorsPerRow;
  static_assert(kPairs <= Plan::kThreads && kPairs % simt::kWarpSize == 0, "whole warps take a pair each");
  static_assert(Plan::kTile % 2 == 0, "a tile column is whole pairs");
  static_assert(kHaloStride % kVector == 0, "halo rows start 16-byte aligned");
  // next_stage alternates like run_gemm's stage (chunk & 1): two stages, chunks issued 0, 1, 2, ... per pass.
  static_assert(Plan::kStages == 2, "the halo stages follow run_gemm's two-stage pipeline");
  HaloLoader halo_copies;
  T* halo;  // kStages x kHaloPixels x kHaloStride elements
  int next_stage;
  // The element offsets from the top pixel's halo row to the rows the pair's maxes read (above the top
  // pixel, below it, below the bottom one) and to the columns left and right; where that neighbour lies
  // outside the image, the offset of a row or column inside that the max reads anyway, which leaves the max
  // as over the neighbours in the image (the -inf padding), with no branch and no select. (A bottom pixel
  // outside the image takes its max from anywhere in the halo: its row of the GEMM is never stored.) In
  // bytes: a load's address is then one add from its row's (an element offset took a scaling as well).
  int top_pixel, column;  // the pair's top pixel in the tile, this thread's vector column
  int up, middle, down, left, right;

  SIMT_DEVICE PoolStream(const Frame& frame, int64_t image, int y0, int x0, T* halo_stages)
      : halo_copies(frame, image, PixelBox{y0 - 1, x0 - 1, kHaloWidth, kHaloPixels}), halo(halo_stages), next_stage(0) {
    const int pair = int(threadIdx.x) / kVectorsPerRow;
    top_pixel = pair / Plan::kTile * 2 * Plan::kTile + pair % Plan::kTile;
    column = int(threadIdx.x) % kVectorsPerRow * kVector;
    const int y = y0 + top_pixel / Plan::kTile, x = x0 + top_pixel % Plan::kTile;
    constexpr int kPixel = kHaloStride * int(sizeof(T)), kRow = kHaloWidth * kPixel;
    up = y >= 1 ? -kRow : 0;
    middle = y + 1 < frame.height() ? kRow : 0;  // the top pixel's row below: the bottom pixel's own
    down = y + 2 < frame.height() ? 2 * kRow : middle;
    left = x >= 1 ? -kPixel : 0;
    right = x + 1 < frame.width() ? kPixel : 0;
  }

  // The halo stage the next chunk goes to.
  SIMT_DEVICE T* next_halo_stage() {
    T* const stage = halo + next_stage * kHaloPixels * kHaloStride;
    next_stage ^= 1;
    return stage;
  }
  // The next chunk's halo into the next halo stage (run_gemm's A stage is filled by finish()).
  SIMT_DEVICE void operator()(T* /*a_stage*/, int64_t k0) { halo_copies(next_halo_stage(), k0); }
  // The same through an element-wise halo loader's load<kWhole> (LoadsWholeChunks): finish() reads no pixel
  // outside the image.
  template <bool kWhole>
  SIMT_DEVICE void load(T* /*a_stage*/, int64_t k0) {
    halo_copies.template load<kWhole>(next_halo_stage(), k0);
  }

  // The max of the chunk in halo stage `stage` into `a_stage`, as math mode M's operands (TF32: rounded):
  // after the chunk has landed (a barrier), before any warp multiplies it (another). A pixel outside the
  // image takes its max from pixels inside; its row of the GEMM is never stored.
  template <class M>
  SIMT_DEVICE void finish(T* a_stage, int stage) const {
    if (kPairs < Plan::kThreads && int(threadIdx.x) >= kPairs) return;  // warp-uniform
    const char* top = reinterpret_cast<const char*>(
        halo + stage * kHaloPixels * kHaloStride +
        ((top_pixel / Plan::kTile + 1) * kHaloWidth + top_pixel % Plan::kTile + 1) * kHaloStride + column);
    // The max over a row's three columns, for the rows above the pair, of each pixel, and below the pair.
    auto row_max = [&](int row) {
      const char* center = top + row;
      return simt::max_nan_128<T>(simt::max_nan_128<T>(simt::load_128(center + left), simt::load_128(center)),
                                  simt::load_128(center + right));
    };
    const simt::u32x4 above = row_max(up), upper = row_max(0), lower = row_max(middle), below = row_max(down);
    const simt::u32x4 shared = simt::max_nan_128<T>(upper, lower);
    constexpr int kStride = Plan::stage_stride(int(sizeof(T)));
    T* const out = a_stage + top_pixel * kStride + column;
    simt::store_128(out, M::round_operands(simt::max_nan_128<T>(above, shared)));
    simt::store_128(out + Plan::kTile * kStride, M::round_operands(simt::max_nan_128<T>(shared, below)));
  }
};

// The pool's halo by 16-byte cp.async copies: rows unpadded (a K chunk, 128 bytes), so a quarter warp's
// 16-byte loads in finish() cover one whole row, no bank conflicts.
template <class T>
using VectorPoolStream = PoolStream<T, PixelStream<T, FusedPlan::kPoolHaloPixels, kKChunk<T>>, kKChunk<T>>;
// The pool's halo element by element (ElementLoader): rows padded like the A stage's, which spreads a warp's
// stores over 8 banks (unpadded, 32 pixels 64 bytes apart would share 2).
template <class T>
using ElementPoolStream =
    PoolStream<T, ElementLoader<T, FusedPlan::kPoolHaloPixels, FusedPlan::stage_stride(int(sizeof(T)))>,
               FusedPlan::stage_stride(int(sizeof(T)))>;

template <class T, class HaloLoader, int kHaloStride>
struct FinishesA<PoolStream<T, HaloLoader, kHaloStride>> {
  static constexpr bool value = true;
};
template <class T, int kRows, int kStride, int kHaloStride>
struct LoadsWholeChunks<PoolStream<T, ElementLoader<T, kRows, kStride>, kHaloStride>> {
  static constexpr bool value = true;
};
template <class T, class HaloLoader, int kHaloStride>
struct StagesRawA<PoolStream<T, HaloLoader, kHaloStride>> {
  static constexpr bool value = false;
};

// Stages the implicit-GEMM A of a k x k convolution over the reduction in shared memory: row r is output
// pixel r of the 8x8 tile, column k reads reduced[(py + dy, px + dx)][c] for the (c, tap = dy * ks + dx) that
// k stands for in the weight's K order: k = c * ks * ks + tap (OIHW), or k = tap * channels + c (OHWI;
// kTapsOuter, a template parameter, so the K loop carries no branch on it); in a transposed frame the tap
// (dy, dx) of the weight lies dx rows and dy columns on in the reduction. A thread stages one column k of
// the pixels of kColumns tile columns px (kPxStep apart); the tile's 8 rows of pixels are a fixed stride apart
// in the reduction. Its column's (c, dy, dx) is decoded once per GEMM and advanced by one chunk a call, with
// carries: no division in the K loop (a K chunk is a fixed number of taps and channels on).
template <class T, bool kTapsOuter>
struct WindowLoader {
  static constexpr int kChunk = kKChunk<T>;
  static constexpr int kPxStep = Plan::kThreads / kChunk, kColumns = Plan::kTile / kPxStep;
  static_assert(Plan::kThreads % kChunk == 0 && Plan::kTile % kPxStep == 0, "whole (K column, tile column)s a thread");
  const T* reduced;
  int kernel, channels;
  // Element offsets in the reduction, worked out once: from a tap to the next dy and to the next dx, and this
  // thread's tile column px at tile row 0; and in bytes (a load's address is then its window's plus one
  // product; an element index took a product and a scaling), one tile row down and from this thread's tile
  // column to its next (kPxStep on).
  int tap_row_step, tap_column_step, column_offset;
  int tile_row_bytes, columns_bytes;
  int column;                    // this thread's K column kk in the stage, at tile row 0
  int c, dy, dx;                 // this thread's K column in the next chunk (past K: dy >= kernel with
                                 // taps outer, c >= channels in OIHW order)
  int c_step, dy_step, dx_step;  // one chunk on, before the carries

  SIMT_DEVICE WindowLoader(const T* reduced, int kernel, int channels, int row_stride, bool transposed)
      : reduced(reduced), kernel(kernel), channels(channels) {
    const int halo_width = Plan::kTile + kernel - 1;
    tap_row_step = (transposed ? 1 : halo_width) * row_stride;
    tap_column_step = (transposed ? halo_width : 1) * row_stride;
    tile_row_bytes = halo_width * row_stride * int(sizeof(T));
    const int kk = int(threadIdx.x) % kChunk, px = int(threadIdx.x) / kChunk;
    column_offset = px * row_stride;
    columns_bytes = kPxStep * row_stride * int(sizeof(T));
    column = px * Plan::stage_stride(int(sizeof(T))) + kk;
    const int taps = kernel * kernel;
    // (c, tap) of k = kk and of one chunk, kChunk.
    const int inner = kTapsOuter ? channels : taps;
    const int tap = kTapsOuter ? kk / inner : kk % inner, tap_step = kTapsOuter ? kChunk / inner : kChunk % inner;
    c = kTapsOuter ? kk % inner : kk / inner;
    c_step = kTapsOuter ? kChunk % inner : kChunk / inner;
    dy = tap / kernel, dx = tap % kernel;
    dy_step = tap_step / kernel, dx_step = tap_step % kernel;
  }

  SIMT_DEVICE void operator()(T* stage, int64_t /*k0*/) {
    constexpr int stride = Plan::stage_stride(int(sizeof(T)));
    const bool inside = kTapsOuter ? dy < kernel : c < channels;  // k < taps x channels
    const char* const window = reinterpret_cast<const char*>(
        reduced + (dy * tap_row_step + dx * tap_column_step + column_offset + c));  // tile row 0's
    SIMT_UNROLL
    for (int j = 0; j < kColumns; ++j) {
      SIMT_UNROLL
      for (int py = 0; py < Plan::kTile; ++py) {
        stage[column + (py * Plan::kTile + j * kPxStep) * stride] =
            inside ? *reinterpret_cast<const T*>(window + (py * tile_row_bytes + j * columns_bytes)) : simt::from_float<T>(0.0f);
      }
    }
    // One chunk on: k + kChunk, its tap and channel parts each carried at most once.
    c += c_step, dy += dy_step, dx += dx_step;
    if (dx >= kernel) dx -= kernel, ++dy;
    if constexpr (kTapsOuter) {
      if (c >= channels) {
        c -= channels;
        if (++dx == kernel) dx = 0, ++dy;
      }
    } else {
      if (dy >= kernel) dy -= kernel, ++c;
    }
  }
};
template <class T, bool kTapsOuter>
struct StagesRawA<WindowLoader<T, kTapsOuter>> {
  static constexpr bool value = false;
};

// The k x k GEMM with A read in place (WindowRows): K over (tap, channel), channels whole 16-byte vectors,
// tensor-core modes. Nothing to stage; the window table maps each 16-byte group of K to its reduction offset.
template <class T>
struct DirectWindows {
  const T* reduced;
  const int* table;  // window_groups entries
  const T* zeros;    // one zero vector
  int halo_width, row_stride;
  SIMT_DEVICE void operator()(T*, int64_t) const {}

  // Fills the table for a kernel x kernel window over `channels`: group g is K elements [g, g + 1) x kVector.
  // The weight's tap (dy, dx) is (dx, dy) in a transposed frame. Every thread of the CTA calls it; a barrier
  // must follow before the GEMM reads the table.
  static SIMT_DEVICE void fill_table(int* table, T* zeros, int kernel, int channels, int halo_width,
                                     int row_stride, bool transposed) {
    constexpr int kVector = kVectorElements<T>;
    const int taps = kernel * kernel;
    const int groups = int(window_groups(kernel, channels, int(sizeof(T))));
    for (int g = threadIdx.x; g < groups; g += Plan::kThreads) {
      const int k = g * kVector, tap = k / channels, c = k % channels;
      const int dy = transposed ? tap % kernel : tap / kernel, dx = transposed ? tap / kernel : tap % kernel;
      table[g] = tap < taps ? (dy * halo_width + dx) * row_stride + c : -1;
    }
    if (int(threadIdx.x) < kVector) zeros[threadIdx.x] = simt::from_float<T>(0.0f);
  }
};

template <class T>
struct StagesRawA<DirectWindows<T>> {
  static constexpr bool value = false;  // no stage: A is the reduction
};

template <class T>
SIMT_DEVICE WindowRows<T> a_rows(const DirectWindows<T>& w, const T* /*stage*/, int64_t chunk, int tile_m0, int lane) {
  constexpr int kVector = kVectorElements<T>;
  // Lane l's row: pixel (m / 8, m % 8) for m = tile_m0 * 16 + l % 8 + 8 * ((l / 8) & 1); its K half: l / 16.
  // Its next m tile (m_tile) is kWarpsM m tiles of two tile rows on.
  const int tile_y = tile_m0 * 2 + ((lane / 8) & 1), tile_x = lane % 8;
  return WindowRows<T>{w.reduced + (tile_y * w.halo_width + tile_x) * w.row_stride,
                       int64_t(2 * Plan::kWarpsM) * w.halo_width * w.row_stride,
                       w.table + chunk * (kKChunk<T> / kVector) + lane / 16, w.zeros};
}

// Output GEMM pass: ReLU, the branch's channel slice of the output (row: pixel of the 8x8 tile).
template <class T>
struct OutputStore {
  Frame frame;
  T* out;        // this image's output at the task's first channel
  const T* bias;  // at the task's first channel
  int count, y0, x0;
  bool pairs;  // channels contiguous and every pair 2-element aligned: one store a pair
  static constexpr int kLaneRows = 2 * Plan::kOutMI;  // a lane's rows in an output GEMM
  struct Row {
    T* pixel;     // the output at the task's first channel, this row's pixel (`out` itself outside the image)
    bool inside;  // the pixel is in the image
  };
  struct Column {
    int64_t offset;  // of the pair's first channel from the task's first
    int channel;
  };
  SIMT_DEVICE Row row(int m, int /*index*/) const {
    const int y = y0 + m / Plan::kTile, x = x0 + m % Plan::kTile;
    const bool inside = y < frame.height() && x < frame.width();
    return Row{out + (inside ? frame.out_offset(y, x) : 0), inside};
  }
  SIMT_DEVICE Column column(int channel) const { return Column{channel * frame.p.out_stride[1], channel}; }
  // The bias of column first + delta, zero past the channels (delta a constant: one pointer for all of a lane's).
  SIMT_DEVICE float bias_at(int first, int delta) const {
    return first + delta < count ? simt::to_float((bias + first)[delta]) : 0.0f;
  }
  // With `pairs` (channels contiguous): the pair at channel first + delta, both stored where both exist.
  static constexpr bool kHasPairPath = true;
  static constexpr bool kWholeWarpPath = true;  // store_accumulators' path without column tests
  // kWhole: both channels exist (store_accumulators), only the row is tested.
  template <bool kWhole>
  SIMT_DEVICE void write_pair(const Row& row, int first, int delta, float first_value, float second_value) const {
    const int channel = first + delta;
    if (!row.inside || (!kWhole && channel >= count)) return;
    T* const pixel = row.pixel + first + delta;
    if (kWhole || channel + 1 < count) {
      simt::store_pair(pixel, relu(first_value), relu(second_value));
    } else {
      pixel[0] = simt::from_float<T>(relu(first_value));
    }
  }
  // Without `pairs` (write_pair serves those): the two channels of a pair in two stores.
  template <bool kWhole>
  SIMT_DEVICE void write(const Row& row, const Column& column, float first, float second) const {
    if (!row.inside || (!kWhole && column.channel >= count)) return;
    T* const pixel = row.pixel + column.offset;
    pixel[0] = simt::from_float<T>(relu(first));
    if (kWhole || column.channel + 1 < count) pixel[frame.p.out_stride[1]] = simt::from_float<T>(relu(second));
  }
};

// Whether an output slice from channel `first` on takes pair stores: channels contiguous, and the image,
// pixel strides, first channel and base all even in elements (so every pair (even column, + 1) is aligned).
template <class T>
SIMT_DEVICE bool output_pairs(const InceptionParams& p, int64_t first) {
  return p.out_stride[1] == 1 && first % 2 == 0 && p.out_stride[0] % 2 == 0 && p.out_stride[2] % 2 == 0 &&
         p.out_stride[3] % 2 == 0 && reinterpret_cast<uintptr_t>(p.out) % (2 * sizeof(T)) == 0;
}

// Reduction GEMM pass: ReLU into the halo buffer in shared memory. The GEMM's rows are the pixels of `box`,
// the tile's halo clipped to the image (change 30: a halo row outside the image is never computed), and row
// m goes to its pixel's row of the whole halo (`halo`, halo.width pixels a row); the halo's pixels outside
// the image are zeroed by zero_outside_image instead, because the k x k convolution zero-pads the reduced
// activation. Rows are row_stride elements apart, whole 16-byte vectors, so a pair (even column, + 1)
// always lies in its row (past the channels: padding, written as 0; in TF32 as the operand form of 0, which
// the tensor core reads as 0). Values are stored as math mode M's operands (TF32: rounded), since the k x k
// GEMM reads them as they are. Each of this lane's rows (2 kHaloMI of them in the halo GEMM's warp tiling,
// as run_gemm assigns them) has its halo row worked out once, in the constructor, not per pass (the box's
// width is not a constant, and a division per row would be), 8 bits each.
template <class M>
struct ReductionStore {
  using T = typename M::Element;
  static constexpr int kLaneRows = 2 * Plan::kHaloMI;
  static constexpr uint32_t kNoRow = 0xffu;  // a lane row past the box
  static_assert(Plan::kMaxHaloPixels <= int(kNoRow), "a halo row fits in 8 bits");
  T* reduced;  // channel 0 of the channels this CTA computes (a slice where a cluster shares the reduction)
  const T* bias;
  int channels, row_stride;
  uint32_t halo_rows[(kLaneRows + 3) / 4];  // byte index % 4 of word index / 4: lane row index's halo row
  struct Row {
    T* pixel;
    bool in_box;
  };
  struct Column {
    int channel;
  };

  SIMT_DEVICE ReductionStore(T* reduced, const T* bias, const PixelBox& halo, const PixelBox& box, int channels,
                             int row_stride)
      : reduced(reduced), bias(bias), channels(channels), row_stride(row_stride) {
    const int g = int(threadIdx.x) % simt::kWarpSize / 4, tile_m0 = warp_tile_m0();  // run_gemm's
    SIMT_UNROLL
    for (int word = 0; word < (kLaneRows + 3) / 4; ++word) halo_rows[word] = 0;
    SIMT_UNROLL
    for (int index = 0; index < kLaneRows; ++index) {
      const int m = m_tile(tile_m0, index / 2) * 16 + g + 8 * (index % 2);
      const int y = box.y0 + m / box.width, x = box.x0 + m % box.width;
      const uint32_t row = m < box.pixels ? uint32_t((y - halo.y0) * halo.width + (x - halo.x0)) : kNoRow;
      halo_rows[index / 4] |= row << (8 * (index % 4));
    }
  }
  SIMT_DEVICE Row row(int /*m*/, int index) const {
    const uint32_t halo_row = (halo_rows[index / 4] >> (8 * (index % 4))) & 0xffu;
    const bool in_box = halo_row != kNoRow;  // (no pointer past the reduction for rows past the box)
    return Row{reduced + (in_box ? int(halo_row) * row_stride : 0), in_box};
  }
  SIMT_DEVICE Column column(int channel) const { return Column{channel}; }
  SIMT_DEVICE float bias_at(int first, int delta) const {
    return first + delta < channels ? simt::to_float((bias + first)[delta]) : 0.0f;
  }
  static constexpr bool kHasPairPath = false;  // every pair is one store (write)
  // No second path without column tests: its code put two spills in the reduction's K loop (its 40
  // accumulators and the row table leave no room), for a saving of one compare per pair.
  static constexpr bool kWholeWarpPath = false;
  template <bool kWhole>
  SIMT_DEVICE void write(const Row& row, const Column& column, float first, float second) const {
    if (!row.in_box || (!kWhole && column.channel >= channels)) return;
    simt::store_pair(row.pixel + column.channel, M::round_operand(relu(first)), M::round_operand(relu(second)));
  }
};

// Where a cluster shares the reduction: copies this CTA's slice (channels [begin, begin + count) of the halo
// rows of the box, which its GEMM stored) into the same places of every other CTA of the cluster, in 16-byte
// vectors through distributed shared memory. Warp w takes the box's pixels w, w + 8, ..., its lanes the
// (peer, vector) pairs of a pixel. A slice starts at a multiple of 16 channels, whole vectors; only the last
// slice's last vector may run past the channels, into the row's padding. Outside the K loops, so that the
// GEMM's registers are as without clusters (stores to the peers in its epilogue spilled in its K loop).
template <class T>
SIMT_DEVICE void share_slice(T* reduced, const PixelBox& halo, const PixelBox& box, int row_stride, int begin,
                             int count, unsigned cluster_ctas, unsigned rank) {
  constexpr int kWarps = Plan::kThreads / simt::kWarpSize;
  const int vectors = (count + kVectorElements<T> - 1) / kVectorElements<T>;
  const int copies = vectors * int(cluster_ctas - 1);  // a pixel's, over the other CTAs
  const int lane = int(threadIdx.x) % simt::kWarpSize;
  for (int m = int(threadIdx.x) / simt::kWarpSize; m < box.pixels; m += kWarps) {
    const int y = box.y0 + m / box.width, x = box.x0 + m % box.width;
    T* const row = reduced + ((y - halo.y0) * halo.width + (x - halo.x0)) * row_stride + begin;
    for (int j = lane; j < copies; j += simt::kWarpSize) {
      const int peer = j / vectors, v = j - peer * vectors;
      const unsigned target = rank + 1 + unsigned(peer) < cluster_ctas ? rank + 1 + unsigned(peer)
                                                                       : rank + 1 + unsigned(peer) - cluster_ctas;
      T* const source = row + v * kVectorElements<T>;
      simt::store_128(simt::map_shared_rank(source, target), simt::load_128(source));
    }
  }
}

// Zeroes the rows of the halo buffer whose pixels lie outside the image (the zero padding the k x k
// convolution reads; the reduction GEMM computes the others), whole rows in 16-byte vectors: warp w takes
// halo pixels w, w + 8, ..., its lanes a row's vectors. Once a CTA, before the reduction (its rows are
// others), ordered before the windows' reads by the barrier that follows it. (Zero is also TF32's operand
// form of 0.)
template <class T>
SIMT_DEVICE void zero_outside_image(T* reduced, const Frame& frame, const PixelBox& halo, int row_stride) {
  constexpr int kWarps = Plan::kThreads / simt::kWarpSize;
  const int vectors = row_stride / kVectorElements<T>;
  const int lane = int(threadIdx.x) % simt::kWarpSize;
  for (int pixel = int(threadIdx.x) / simt::kWarpSize; pixel < halo.pixels; pixel += kWarps) {
    if (frame.inside(halo.y0 + pixel / halo.width, halo.x0 + pixel % halo.width)) continue;  // warp-uniform
    for (int v = lane; v < vectors; v += simt::kWarpSize) {
      simt::store_128(reduced + pixel * row_stride + v * kVectorElements<T>, simt::u32x4{0, 0, 0, 0});
    }
  }
}

// ---- the kernel ---------------------------------------------------------------------------------------------

template <MathMode kMode>
SIMT_GLOBAL void SIMT_LAUNCH_BOUNDS(FusedPlan::kThreads,
                                   FusedPlan::min_ctas_per_sm(int(sizeof(typename Math<kMode>::Element))))
    inception_kernel(const InceptionParams p) {
  using M = Math<kMode>;
  using T = typename M::Element;
  constexpr int kStride = M::kStride;
  // Shared memory: the stages (each A rows then B rows), then the reduction at a 16-byte boundary
  // (fused_shared_bytes).
  T* const base = simt::dynamic_shared<T>();
  T* const stages = base;
  constexpr int kStageElements =
      (Plan::kStages * Plan::kRowsPerStage * kStride * int(sizeof(T)) + 15) / 16 * 16 / int(sizeof(T));
  T* reduced = base + kStageElements;

  const int64_t tiles = int64_t(p.tiles_h) * p.tiles_w;
  // The grid runs groups of cluster_ctas consecutive tasks of one tile (cta_of over the groups; 1: a task a
  // group), a CTA's place in its group its rank in the cluster. CTAs of the last group past the tasks have
  // nothing to do (no cluster barrier waits for them: plan_cluster_ctas).
  SIMT_ASSUME(p.cluster_ctas >= 1);
  const unsigned cluster_ctas = unsigned(p.cluster_ctas), rank = blockIdx.x % cluster_ctas;
  const int64_t groups = (int64_t(p.num_tasks) + cluster_ctas - 1) / cluster_ctas;
  const GridCta cta = cta_of(blockIdx.x / cluster_ctas, p.batch * tiles, groups, p.band_tiles);
  const int64_t task_index = cta.task_index * cluster_ctas + rank;
  if (task_index >= p.num_tasks) return;
  const Task task = task_of(p.shape, p.channel_chunk, task_index);
  const int64_t image = cta.tile_index / tiles;
  const TileFrame tile = tile_frame(p, int(cta.tile_index % tiles));
  const Frame& frame = tile.frame;
  const int y0 = tile.y0, x0 = tile.x0;
  // The output GEMMs compute the tile's m tiles (two frame rows each) that hold pixels of the image; in the
  // variant that transposes them (Plan::kOutputPixelsAsN, tensor-core modes), its frame rows.
  constexpr bool kOutPixelsAsN = Plan::kOutputPixelsAsN && kMode != MathMode::kF32;
  const int out_m_tiles = kOutPixelsAsN ? tile.rows : (tile.rows + 1) / 2;
  const InceptionShape& s = p.shape;
  T* out = static_cast<T*>(p.out) + image * p.out_stride[0];
  // Weight rows and biases of convolution `index`, from output channel `first` on.
  auto weight_rows = [&](int index, int64_t first) {
    const WeightView& v = p.weights[index];
    return WeightRows<T>{static_cast<const T*>(v.weight) + first * v.row_stride, v.row_stride,
                         weight_row_length(s, index)};
  };
  auto bias = [&](int index, int64_t first) { return static_cast<const T*>(p.weights[index].bias) + first; };
  const Branch branch = task.branch;

  if (branch == Branch::k1x1 || branch == Branch::kPool) {
    const bool pooled = branch == Branch::kPool;
    const int conv = pooled ? kWp : kW1;
    const int64_t out0 = (pooled ? s.out_offset_branch4() : s.out_offset_branch1()) + task.channel_begin;
    const PixelBox tile_box{y0, x0, Plan::kTile, Plan::kTilePixels};
    constexpr int kRows = Plan::kWarpsM * Plan::kOutMI * 16;
    const WeightRows<T> rows = weight_rows(conv, task.channel_begin);
    const OutputStore<T> store{frame, out + out0 * p.out_stride[1], bias(conv, task.channel_begin),
                               task.channel_count, y0, x0, output_pairs<T>(p, out0)};
    // One GEMM per way of reading A, chosen here once: no loader branch inside a K loop.
    if (pooled && p.x_vectorized) {
      run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
          stages, rows, task.channel_count, out_m_tiles, VectorPoolStream<T>(frame, image, y0, x0, reduced), store);
    } else if (pooled) {
      run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
          stages, rows, task.channel_count, out_m_tiles, ElementPoolStream<T>(frame, image, y0, x0, reduced), store);
    } else if (p.x_vectorized) {
      run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
          stages, rows, task.channel_count, out_m_tiles, PixelStream<T, kRows>(frame, image, tile_box, kStride), store);
    } else {
      run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
          stages, rows, task.channel_count, out_m_tiles, ElementLoader<T, kRows>(frame, image, tile_box), store);
    }
    return;  // no barrier follows
  }

  // A spatial branch: its reduction over the tile and halo into shared memory, then the k x k convolution.
  const bool three = branch == Branch::kSpatial3;
  const int reduce = three ? kW3r : kW5r, conv = three ? kW3 : kW5;
  const int kernel = int(three ? s.k3 : s.k5);
  const int channels = int(three ? s.ch3x3red : s.ch5x5red);
  const int halo = kernel / 2, halo_width = Plan::kTile + kernel - 1;
  const int row_stride = int(reduced_row_stride(channels, int(sizeof(T))));
  const PixelBox halo_box{y0 - halo, x0 - halo, halo_width, halo_width * halo_width};
  // The reduction computes the halo clipped to the image (in the frame): its pixels outside are zeros, which
  // zero_outside_image writes without a GEMM row (on a 7x7 image a 3x3 halo is 49 rows, 4 m tiles, where
  // the halo's rows in the image took 80, 5; a 5x5 halo 49 where they took 108, 7).
  const int box_y0 = halo_box.y0 > 0 ? halo_box.y0 : 0, box_x0 = halo_box.x0 > 0 ? halo_box.x0 : 0;
  const int box_y1 = int(halo_box.y0 + halo_width < frame.height() ? halo_box.y0 + halo_width : frame.height());
  const int box_x1 = int(halo_box.x0 + halo_width < frame.width() ? halo_box.x0 + halo_width : frame.width());
  const PixelBox reduction_box{box_y0, box_x0, box_x1 - box_x0, (box_y1 - box_y0) * (box_x1 - box_x0)};
  const int halo_m_tiles = (reduction_box.pixels + 15) / 16;
  // Where the cluster holds the 3x3 branch's every task of this tile (plan_cluster_ctas), each CTA computes
  // one slice of the reduction's channels into its halo rows and then copies it into the others'
  // (share_slice): the reduction is computed once a tile, not once a task. A build for an architecture without clusters sees a cluster of one
  // (cluster_size) and computes it whole, as does every CTA of a launch without clusters.
  const bool shared_reduction = three && cluster_ctas > 1 && simt::cluster_size() == cluster_ctas &&
                                (s.ch3x3 + p.channel_chunk - 1) / p.channel_chunk == cluster_ctas;
  if (shared_reduction) simt::cluster_arrive_relaxed();  // this CTA has started: others may store into it
  int slice_begin = 0, slice_count = channels;  // the reduced channels this CTA computes
  if (shared_reduction) {
    const int slice = int(reduction_slice(channels, cluster_ctas));
    slice_begin = int(rank) * slice < channels ? int(rank) * slice : channels;
    slice_count = channels - slice_begin < slice ? channels - slice_begin : slice;
  }
  const ReductionStore<M> reduction(reduced + slice_begin, bias(reduce, slice_begin), halo_box, reduction_box,
                                    slice_count, row_stride);
  zero_outside_image(reduced, frame, halo_box, row_stride);
  // The k x k GEMM reads A in place where K runs over (tap, channel) in whole 16-byte groups (DirectWindows);
  // its table is filled here, ordered before its reads by the barrier that follows the reduction.
  T* const zeros = reduced + p.reduced_elements;
  int* const window_table = reinterpret_cast<int*>(zeros + kVectorElements<T>);
  const bool direct_windows = kMode != MathMode::kF32 && p.weights[conv].taps_outer &&
                              channels % kVectorElements<T> == 0;
  if (direct_windows) {
    DirectWindows<T>::fill_table(window_table, zeros, kernel, channels, halo_width, row_stride, frame.transposed);
  }
  const WeightRows<T> reduction_rows = weight_rows(reduce, slice_begin);
  if (p.x_vectorized) {
    run_gemm<kMode, Plan::kHaloMI, Plan::kHaloNI, false>(
        stages, reduction_rows, slice_count, halo_m_tiles,
        PixelStream<T, Plan::kStageRows>(frame, image, reduction_box, kStride), reduction);
  } else {
    run_gemm<kMode, Plan::kHaloMI, Plan::kHaloNI, false>(
        stages, reduction_rows, slice_count, halo_m_tiles,
        ElementLoader<T, Plan::kStageRows>(frame, image, reduction_box), reduction);
  }
  __syncthreads();  // the reduction (this CTA's slice of it) is complete before any window reads it
  if (shared_reduction) {
    simt::cluster_wait();  // every CTA of the cluster has started: its shared memory may be written
    share_slice(reduced, halo_box, reduction_box, row_stride, slice_begin, slice_count, cluster_ctas, rank);
    // Every slice in every CTA before any window reads it. After this no CTA touches another's shared
    // memory, so none needs to wait for the others before it exits.
    simt::cluster_sync();
  }

  const int64_t out0 = (three ? s.out_offset_branch2() : s.out_offset_branch3()) + task.channel_begin;
  const WeightRows<T> conv_rows = weight_rows(conv, task.channel_begin);
  const OutputStore<T> conv_store{frame, out + out0 * p.out_stride[1], bias(conv, task.channel_begin),
                                  task.channel_count, y0, x0, output_pairs<T>(p, out0)};
  if constexpr (kMode != MathMode::kF32) {  // (the exact-FP32 multiply reads staged A only)
    if (direct_windows) {
      run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
          stages, conv_rows, task.channel_count, out_m_tiles,
          DirectWindows<T>{reduced, window_table, zeros, halo_width, row_stride}, conv_store);
      return;
    }
  }
  if (p.weights[conv].taps_outer) {
    run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
        stages, conv_rows, task.channel_count, out_m_tiles,
        WindowLoader<T, true>(reduced, kernel, channels, row_stride, frame.transposed), conv_store);
  } else {
    run_gemm<kMode, Plan::kOutMI, Plan::kOutNI, kOutPixelsAsN>(
        stages, conv_rows, task.channel_count, out_m_tiles,
        WindowLoader<T, false>(reduced, kernel, channels, row_stride, frame.transposed), conv_store);
  }
}

}  // namespace inception
}  // namespace SIMT_NS
}  // namespace fused_inception
