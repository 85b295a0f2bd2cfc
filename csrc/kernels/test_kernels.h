// Kernels that test the SIMT emulator against the hardware: the same source runs emulated (tests here) and
// on a GPU (when one is lent), through the same Python tests. Torch-free.
#pragma once

#include <type_traits>

#include "kernels/test_kernels_api.h"
#include "simt/simt.h"

namespace fused_inception {
namespace SIMT_NS {
namespace test_kernels {

// ---- primitives, one warp each -------------------------------------------------------------------------

// d = a * b + c through one mma. Each lane builds its fragments from row-major matrices with the PTX ISA's
// layouts (g = lane / 4, t = lane % 4), so a GPU run checks the layouts the fused kernel relies on.
// T = simt::half or simt::bfloat16: a[16][16], b[16][8]; T = float: TF32, a[16][8], b[8][8].
template <class T>
SIMT_GLOBAL void mma_kernel(const T* a, const T* b, const float* c, float* d) {
  const int lane = threadIdx.x % simt::kWarpSize, g = lane / 4, t = lane % 4;
  uint32_t a_frag[4], b_frag[2];
  float c_frag[4], d_frag[4];
  if constexpr (std::is_same_v<T, float>) {
    for (int r = 0; r < 4; ++r) a_frag[r] = simt::to_tf32(a[(g + 8 * (r & 1)) * 8 + t + 4 * (r >> 1)]);
    for (int r = 0; r < 2; ++r) b_frag[r] = simt::to_tf32(b[(t + 4 * r) * 8 + g]);
  } else {
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
      a_frag[r] = simt::pack2(a[row * 16 + col], a[row * 16 + col + 1]);
    }
    for (int r = 0; r < 2; ++r) {
      const int row = 2 * t + 8 * r;
      b_frag[r] = simt::pack2(b[row * 8 + g], b[(row + 1) * 8 + g]);
    }
  }
  for (int r = 0; r < 4; ++r) c_frag[r] = c[(g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)];
  if constexpr (std::is_same_v<T, float>) {
    simt::mma_m16n8k8_tf32(d_frag, a_frag, b_frag, c_frag);
  } else if constexpr (std::is_same_v<T, simt::half>) {
    simt::mma_m16n8k16_f16(d_frag, a_frag, b_frag, c_frag);
  } else {
    simt::mma_m16n8k16_bf16(d_frag, a_frag, b_frag, c_frag);
  }
  for (int r = 0; r < 4; ++r) d[(g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)] = d_frag[r];
}

// ldmatrix of `kMatrices` 8x8 16-bit matrices (given row-major, one after the other) staged through shared
// memory; out[lane * kMatrices + i] = the lane's register i.
template <int kMatrices, bool kTransposed>
SIMT_GLOBAL void ldmatrix_kernel(const uint16_t* matrices, uint32_t* out) {
  SIMT_SHARED_ARRAY(uint16_t, staged, kMatrices * 64);
  const int lane = threadIdx.x;
  for (int i = lane; i < kMatrices * 64; i += simt::kWarpSize) staged[i] = matrices[i];
  __syncwarp();
  const uint16_t* row = staged + ((lane / 8) % kMatrices) * 64 + (lane % 8) * 8;
  uint32_t r[kMatrices];
  if constexpr (kMatrices == 1) {
    kTransposed ? simt::ldmatrix_x1_trans(r, row) : simt::ldmatrix_x1(r, row);
  } else if constexpr (kMatrices == 2) {
    kTransposed ? simt::ldmatrix_x2_trans(r, row) : simt::ldmatrix_x2(r, row);
  } else {
    kTransposed ? simt::ldmatrix_x4_trans(r, row) : simt::ldmatrix_x4(r, row);
  }
  for (int i = 0; i < kMatrices; ++i) out[lane * kMatrices + i] = r[i];
}

// Shuffles and votes of in[lane]; out has 11 rows of 32 (see tests/test_simt.py for the meaning of each).
SIMT_GLOBAL void warp_ops_kernel(const int* in, int* out) {
  const int lane = threadIdx.x;
  const int v = in[lane];
  const unsigned all = 0xffffffffu;
  out[0 * 32 + lane] = __shfl_sync(all, v, (lane * 7 + 3) % 32);
  out[1 * 32 + lane] = __shfl_xor_sync(all, v, 5);
  out[2 * 32 + lane] = __shfl_down_sync(all, v, 3);
  out[3 * 32 + lane] = __shfl_up_sync(all, v, 2);
  out[4 * 32 + lane] = __shfl_sync(all, v, lane + 3, 8);
  out[5 * 32 + lane] = __shfl_xor_sync(all, v, 9, 8);
  out[6 * 32 + lane] = __shfl_down_sync(all, v, 5, 16);
  out[7 * 32 + lane] = __shfl_up_sync(all, v, 1, 4);
  out[8 * 32 + lane] = static_cast<int>(__ballot_sync(all, v % 3 == 0));
  out[9 * 32 + lane] = __any_sync(all, v == in[0] + lane);
  out[10 * 32 + lane] = __all_sync(all, v > -1000000);
}

// out = max.NaN(a, b) element by element, one 16-byte vector a lane (simt::max_nan_128, the pool's max).
template <class T>
SIMT_GLOBAL void max_nan_kernel(const T* a, const T* b, T* out) {
  constexpr int kVector = 16 / int(sizeof(T));
  const int lane = threadIdx.x;
  simt::store_128(out + lane * kVector, simt::max_nan_128<T>(simt::load_128(a + lane * kVector),
                                                             simt::load_128(b + lane * kVector)));
}

// ---- a tiled GEMM with the fused kernel's building blocks: cp.async, ldmatrix, mma ----------------------

// c[m][n] (float) = a[m][k] * b[k][n]; a, b row-major simt::half or simt::bfloat16; k and n multiples of 8.
struct GemmTile {
  static constexpr int kM = 64, kN = 64, kK = 32;
  static constexpr int kThreads = 128;  // 4 warps, 2 x 2, each 32 x 32
  static constexpr int kStages = 2;
  static constexpr int kAStride = kK + 8;  // +8 halves: rows stay 16-byte aligned, ldmatrix rows hit other banks
  static constexpr int kBStride = kN + 8;
  static constexpr int kSharedBytes = kStages * (kM * kAStride + kK * kBStride) * 2;
};

template <class T>
SIMT_DEVICE void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, simt::half>) {
    simt::mma_m16n8k16_f16(d, a, b, d);
  } else {
    simt::mma_m16n8k16_bf16(d, a, b, d);
  }
}

template <class T>
SIMT_GLOBAL void SIMT_LAUNCH_BOUNDS(GemmTile::kThreads, 1)
    gemm_kernel(const T* a, const T* b, float* c, int64_t m, int64_t n, int64_t k) {
  using Tile = GemmTile;
  T* a_shared = simt::dynamic_shared<T>();
  T* b_shared = a_shared + Tile::kStages * Tile::kM * Tile::kAStride;
  const int tid = threadIdx.x, warp = tid / simt::kWarpSize, lane = tid % simt::kWarpSize;
  const int64_t m0 = int64_t(blockIdx.y) * Tile::kM, n0 = int64_t(blockIdx.x) * Tile::kN;

  // 16-byte chunks; rows past the matrix are zero-filled (src_bytes = 0) so the mma needs no bounds checks.
  auto load_stage = [&](int stage, int64_t k0) {
    for (int i = tid; i < Tile::kM * Tile::kK / 8; i += Tile::kThreads) {
      const int row = i / (Tile::kK / 8), chunk = i % (Tile::kK / 8);
      const int64_t gm = m0 + row, gk = k0 + chunk * 8;
      const bool inside = gm < m && gk < k;
      simt::cp_async_16(a_shared + (stage * Tile::kM + row) * Tile::kAStride + chunk * 8,
                        inside ? a + gm * k + gk : a, inside ? 16 : 0);
    }
    for (int i = tid; i < Tile::kK * Tile::kN / 8; i += Tile::kThreads) {
      const int row = i / (Tile::kN / 8), chunk = i % (Tile::kN / 8);
      const int64_t gk = k0 + row, gn = n0 + chunk * 8;
      const bool inside = gk < k && gn < n;
      simt::cp_async_16(b_shared + (stage * Tile::kK + row) * Tile::kBStride + chunk * 8,
                        inside ? b + gk * n + gn : b, inside ? 16 : 0);
    }
  };

  const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * 32;
  float acc[2][4][4] = {};
  const int64_t k_tiles = (k + Tile::kK - 1) / Tile::kK;
  load_stage(0, 0);
  simt::cp_async_commit();
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    const int stage = int(kt % Tile::kStages);
    if (kt + 1 < k_tiles) load_stage(stage ^ 1, (kt + 1) * Tile::kK);
    simt::cp_async_commit();
    simt::cp_async_wait<1>();  // this stage has landed (the next may still be in flight)
    __syncthreads();
    const T* a_tile = a_shared + stage * Tile::kM * Tile::kAStride;
    const T* b_tile = b_shared + stage * Tile::kK * Tile::kBStride;
    for (int kk = 0; kk < Tile::kK; kk += 16) {
      uint32_t a_frag[2][4], b_frag[4][2];
      for (int mi = 0; mi < 2; ++mi) {  // matrices: rows 0-7 / 8-15 x k 0-7 / 8-15
        const int row = warp_m + mi * 16 + lane % 8 + 8 * ((lane / 8) % 2);
        simt::ldmatrix_x4(a_frag[mi], a_tile + row * Tile::kAStride + kk + 8 * (lane / 16));
      }
      for (int ni = 0; ni < 4; ++ni) {  // k-major rows, transposed into the "col" B fragment
        const int row = kk + lane % 8 + 8 * ((lane / 8) % 2);
        simt::ldmatrix_x2_trans(b_frag[ni], b_tile + row * Tile::kBStride + warp_n + ni * 8);
      }
      for (int mi = 0; mi < 2; ++mi) {
        for (int ni = 0; ni < 4; ++ni) mma_16x8x16<T>(acc[mi][ni], a_frag[mi], b_frag[ni]);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  for (int mi = 0; mi < 2; ++mi) {
    for (int ni = 0; ni < 4; ++ni) {
      for (int r = 0; r < 4; ++r) {
        const int64_t row = m0 + warp_m + mi * 16 + lane / 4 + 8 * (r / 2);
        const int64_t col = n0 + warp_n + ni * 8 + 2 * (lane % 4) + r % 2;
        if (row < m && col < n) c[row * n + col] = acc[mi][ni][r];
      }
    }
  }
}

// ---- thread-block clusters: distributed shared memory -----------------------------------------------------

// Launched in clusters with ClusterExchange::kThreads threads a block. Each block stores its slice of `in` in
// its own shared memory and, through mapa, twice over in the next block's (by rank, wrapping; only once every
// block has arrived at a first cluster barrier: on the GPU a block not yet started has no shared memory), then reads
// what the previous block stored in its own and what the next block holds in its. `out` has four rows of
// the grid's blocks x threads: the previous block's values doubled (a remote store), the next block's value of
// the next thread (a remote load), the block's rank and the cluster's size. The flags leave out either
// cluster barrier (ClusterExchangeBarriers): the first orders the stores before the loads, the last keeps
// each block (and its shared memory) alive until the others are done reading it; without either the output
// depends on the schedule.
struct ClusterExchange {
  static constexpr int kThreads = 64;
};

SIMT_GLOBAL void cluster_exchange_kernel(const float* in, float* out, int flags) {
  constexpr int n = ClusterExchange::kThreads;
  SIMT_SHARED_ARRAY(float, mine, n);
  float* inbox = simt::dynamic_shared<float>();  // n floats
  const int t = threadIdx.x;
  const unsigned rank = simt::cluster_rank(), size = simt::cluster_size(), next = (rank + 1) % size;
  const int64_t blocks = int64_t(gridDim.x) * gridDim.y * gridDim.z;
  const int64_t block = (int64_t(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t i = block * n + t, row = blocks * n;
  simt::cluster_arrive_relaxed();
  mine[t] = in[i];
  simt::cluster_wait();  // every block of the cluster has started
  simt::map_shared_rank(inbox, next)[t] = 2.0f * in[i];
  if (flags & ClusterExchangeBarriers::kFirst) simt::cluster_sync();
  out[i] = inbox[t];
  out[row + i] = simt::map_shared_rank(mine, next)[(t + 1) % n];
  out[2 * row + i] = float(rank);
  out[3 * row + i] = float(size);
  if (flags & ClusterExchangeBarriers::kLast) simt::cluster_sync();
}

// ---- planted bugs the emulator must catch ----------------------------------------------------------------

// Reads a neighbour's shared-memory slot; only correct with the barrier, which `with_barrier` can leave out.
SIMT_GLOBAL void neighbour_kernel(const float* in, float* out, int n, bool with_barrier) {
  float* slots = simt::dynamic_shared<float>();
  const int t = threadIdx.x;
  slots[t] = in[t] * 2.0f;
  if (with_barrier) __syncthreads();
  out[t] = slots[(t + 1) % n];
}

// Writes one element past the end of `out` (global) or of the block's dynamic shared memory (shared).
SIMT_GLOBAL void off_by_one_kernel(float* out, int n, bool in_shared) {
  const int t = threadIdx.x;
  if (in_shared) {
    float* slots = simt::dynamic_shared<float>();  // n floats
    slots[t + 1] = float(t);
  } else {
    out[t + 1] = float(t);
  }
}

}  // namespace test_kernels
}  // namespace SIMT_NS
}  // namespace fused_inception
