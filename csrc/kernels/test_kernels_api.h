// Host entry points of the emulator test kernels (test_kernels.h), for both backends. Torch-free: included by
// the torch bindings, by the standalone AddressSanitizer self-test, and by the two launcher TUs.
#pragma once

#include <cstdint>

struct CUstream_st;
namespace simt {
struct LaunchOptions;
}

namespace fused_inception {

enum class TestDtype { kHalf, kBFloat16, kFloat32 };

// cluster_exchange's barriers (test_kernels.h), each of which a planted bug leaves out.
struct ClusterExchangeBarriers {
  static constexpr int kFirst = 1;  // the stores into other blocks before the loads
  static constexpr int kLast = 2;   // every block's loads before any block exits
  static constexpr int kBoth = kFirst | kLast;
};

#define FUSED_INCEPTION_TEST_KERNEL_LAUNCHERS(Context)                                                     \
  /* d[16][8] = a * b + c through one mma; a, b of `dtype` (float: TF32) */                                \
  void mma(TestDtype dtype, const void* a, const void* b, const float* c, float* d, Context context);     \
  /* matrices: `count` 8x8 16-bit matrices; out: 32 x count registers */                                   \
  void ldmatrix(int count, bool transposed, const uint16_t* matrices, uint32_t* out, Context context);      \
  /* out = max.NaN(a, b) element-wise; 32 x 16 bytes of `dtype` each */                                   \
  void max_nan(TestDtype dtype, const void* a, const void* b, void* out, Context context);                 \
  /* in: 32 ints; out: 11 x 32 ints */                                                                     \
  void warp_ops(const int* in, int* out, Context context);                                                 \
  /* c[m][n] = a[m][k] * b[k][n]; half or bfloat16 inputs, float output; k and n multiples of 8 */         \
  void gemm(TestDtype dtype, const void* a, const void* b, float* c, int64_t m, int64_t n, int64_t k,      \
            Context context);                                                                              \
  /* out[t] = 2 * in[(t + 1) % n] through shared memory, n threads; racy without the barrier */            \
  void neighbour(const float* in, float* out, int n, bool with_barrier, Context context);                  \
  /* n threads write one element past `out` (global) or past n floats of dynamic shared memory */          \
  void off_by_one(float* out, int n, bool in_shared, Context context);                                     \
  /* in: grid_y x grid_x blocks x 64 floats; out: 4 such rows (test_kernels.h); flags: ClusterExchange's */ \
  void cluster_exchange(const float* in, float* out, unsigned grid_x, unsigned grid_y, unsigned cluster_x, \
                        unsigned cluster_y, int flags, Context context);

namespace emu {
namespace test_kernels {
FUSED_INCEPTION_TEST_KERNEL_LAUNCHERS(const simt::LaunchOptions&)
}  // namespace test_kernels
}  // namespace emu

namespace gpu {
namespace test_kernels {
FUSED_INCEPTION_TEST_KERNEL_LAUNCHERS(CUstream_st*)
}  // namespace test_kernels
}  // namespace gpu

#undef FUSED_INCEPTION_TEST_KERNEL_LAUNCHERS

}  // namespace fused_inception
