// Launchers of the test kernels. Included by exactly one TU per backend: test_kernels_emu.cpp (the
// emulator) and cuda/test_kernels_gpu.cu (nvcc); SIMT_NS and SIMT_LAUNCH make the difference.
#pragma once

#include <stdexcept>

#include "kernels/test_kernels.h"
#include "kernels/test_kernels_api.h"

namespace fused_inception {
namespace SIMT_NS {
namespace test_kernels {

void mma(TestDtype dtype, const void* a, const void* b, const float* c, float* d, simt::LaunchContext context) {
  switch (dtype) {
    case TestDtype::kHalf:
      SIMT_LAUNCH(mma_kernel<simt::half>, 1, 32, 0, context, static_cast<const simt::half*>(a),
                  static_cast<const simt::half*>(b), c, d);
      break;
    case TestDtype::kBFloat16:
      SIMT_LAUNCH(mma_kernel<simt::bfloat16>, 1, 32, 0, context, static_cast<const simt::bfloat16*>(a),
                  static_cast<const simt::bfloat16*>(b), c, d);
      break;
    case TestDtype::kFloat32:
      SIMT_LAUNCH(mma_kernel<float>, 1, 32, 0, context, static_cast<const float*>(a), static_cast<const float*>(b),
                  c, d);
      break;
  }
}

void ldmatrix(int count, bool transposed, const uint16_t* matrices, uint32_t* out, simt::LaunchContext context) {
  auto* kernel = &ldmatrix_kernel<1, false>;
  if (count == 1) kernel = transposed ? &ldmatrix_kernel<1, true> : &ldmatrix_kernel<1, false>;
  else if (count == 2) kernel = transposed ? &ldmatrix_kernel<2, true> : &ldmatrix_kernel<2, false>;
  else if (count == 4) kernel = transposed ? &ldmatrix_kernel<4, true> : &ldmatrix_kernel<4, false>;
  else throw std::invalid_argument("ldmatrix: count must be 1, 2 or 4");
  SIMT_LAUNCH(kernel, 1, 32, 0, context, matrices, out);
}

void max_nan(TestDtype dtype, const void* a, const void* b, void* out, simt::LaunchContext context) {
  switch (dtype) {
    case TestDtype::kHalf:
      SIMT_LAUNCH(max_nan_kernel<simt::half>, 1, 32, 0, context, static_cast<const simt::half*>(a),
                  static_cast<const simt::half*>(b), static_cast<simt::half*>(out));
      break;
    case TestDtype::kBFloat16:
      SIMT_LAUNCH(max_nan_kernel<simt::bfloat16>, 1, 32, 0, context, static_cast<const simt::bfloat16*>(a),
                  static_cast<const simt::bfloat16*>(b), static_cast<simt::bfloat16*>(out));
      break;
    case TestDtype::kFloat32:
      SIMT_LAUNCH(max_nan_kernel<float>, 1, 32, 0, context, static_cast<const float*>(a),
                  static_cast<const float*>(b), static_cast<float*>(out));
      break;
  }
}

void warp_ops(const int* in, int* out, simt::LaunchContext context) {
  SIMT_LAUNCH(warp_ops_kernel, 1, 32, 0, context, in, out);
}

void gemm(TestDtype dtype, const void* a, const void* b, float* c, int64_t m, int64_t n, int64_t k,
          simt::LaunchContext context) {
  if (m <= 0 || n <= 0 || k <= 0 || n % 8 != 0 || k % 8 != 0) {
    throw std::invalid_argument("gemm: m, n, k must be positive, and n and k multiples of 8");
  }
  const int64_t grid_x = (n + GemmTile::kN - 1) / GemmTile::kN, grid_y = (m + GemmTile::kM - 1) / GemmTile::kM;
  if (grid_y > 65535) throw std::invalid_argument("gemm: m too large for the grid");
  const simt::dim3 grid{static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)};
  if (dtype == TestDtype::kHalf) {
    simt::allow_shared_memory(gemm_kernel<simt::half>, GemmTile::kSharedBytes);
    SIMT_LAUNCH(gemm_kernel<simt::half>, grid, GemmTile::kThreads, GemmTile::kSharedBytes, context,
                static_cast<const simt::half*>(a), static_cast<const simt::half*>(b), c, m, n, k);
  } else if (dtype == TestDtype::kBFloat16) {
    simt::allow_shared_memory(gemm_kernel<simt::bfloat16>, GemmTile::kSharedBytes);
    SIMT_LAUNCH(gemm_kernel<simt::bfloat16>, grid, GemmTile::kThreads, GemmTile::kSharedBytes, context,
                static_cast<const simt::bfloat16*>(a), static_cast<const simt::bfloat16*>(b), c, m, n, k);
  } else {
    throw std::invalid_argument("gemm: half or bfloat16 inputs only");
  }
}

void neighbour(const float* in, float* out, int n, bool with_barrier, simt::LaunchContext context) {
  SIMT_LAUNCH(neighbour_kernel, 1, unsigned(n), size_t(n) * sizeof(float), context, in, out, n, with_barrier);
}

void cluster_exchange(const float* in, float* out, unsigned grid_x, unsigned grid_y, unsigned cluster_x,
                      unsigned cluster_y, int flags, simt::LaunchContext context) {
  if (grid_x == 0 || grid_y == 0 || cluster_x == 0 || cluster_y == 0 || grid_x % cluster_x || grid_y % cluster_y) {
    throw std::invalid_argument("cluster_exchange: the grid must be a whole, nonzero number of clusters");
  }
  constexpr int n = ClusterExchange::kThreads;
  SIMT_LAUNCH_CLUSTER(cluster_exchange_kernel, simt::dim3(grid_x, grid_y), simt::dim3(cluster_x, cluster_y),
                      simt::dim3(n), n * sizeof(float), context, in, out, flags);
}

void off_by_one(float* out, int n, bool in_shared, simt::LaunchContext context) {
  SIMT_LAUNCH(off_by_one_kernel, 1, unsigned(n), size_t(n) * sizeof(float), context, out, n, in_shared);
}

}  // namespace test_kernels
}  // namespace SIMT_NS
}  // namespace fused_inception
