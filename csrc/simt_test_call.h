// The emulator test kernels as one torch op, `fused_inception::_simt_test(str kernel, Tensor[] inputs)`:
// argument checks and output allocation shared by the CPU (emulated) and CUDA (real) registrations.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "kernels/test_kernels_api.h"

namespace fused_inception {

enum class TestKind { kMma, kLdmatrix, kMaxNan, kWarpOps, kGemm, kNeighbour, kSharedOffByOne, kClusterExchange };

struct TestCall {
  TestKind kind;
  std::vector<at::Tensor> in;
  at::Tensor out;
  TestDtype dtype = TestDtype::kFloat32;
  int count = 0;      // ldmatrix: matrices
  bool flag = false;  // ldmatrix: transposed; neighbour: with barrier
  unsigned cluster_x = 1, cluster_y = 1;  // cluster_exchange: the cluster's blocks
  int flags = 0;                          // cluster_exchange: its barriers (ClusterExchange)
};

// Checks `inputs` for `kernel` and allocates its output on their device.
TestCall prepare_test_call(const std::string& kernel, const std::vector<at::Tensor>& inputs);

}  // namespace fused_inception

// Calls the launcher of `call` from the namespace `launchers` (emu:: or gpu::test_kernels).
#define FUSED_INCEPTION_RUN_TEST_CALL(launchers, call, context)                                                  \
  do {                                                                                                          \
    const auto& c = (call);                                                                                     \
    switch (c.kind) {                                                                                           \
      case ::fused_inception::TestKind::kMma:                                                                   \
        launchers::mma(c.dtype, c.in[0].data_ptr(), c.in[1].data_ptr(), c.in[2].data_ptr<float>(),              \
                       c.out.data_ptr<float>(), context);                                                        \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kLdmatrix:                                                              \
        launchers::ldmatrix(c.count, c.flag, static_cast<const uint16_t*>(c.in[0].data_ptr()),                  \
                            static_cast<uint32_t*>(c.out.data_ptr()), context);                                  \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kMaxNan:                                                                \
        launchers::max_nan(c.dtype, c.in[0].data_ptr(), c.in[1].data_ptr(), c.out.data_ptr(), context);         \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kWarpOps:                                                               \
        launchers::warp_ops(c.in[0].data_ptr<int>(), c.out.data_ptr<int>(), context);                          \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kGemm:                                                                  \
        launchers::gemm(c.dtype, c.in[0].data_ptr(), c.in[1].data_ptr(), c.out.data_ptr<float>(),              \
                        c.in[0].size(0), c.in[1].size(1), c.in[0].size(1), context);                            \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kNeighbour:                                                             \
        launchers::neighbour(c.in[0].data_ptr<float>(), c.out.data_ptr<float>(), int(c.in[0].numel()), c.flag, \
                             context);                                                                          \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kSharedOffByOne:                                                        \
        launchers::off_by_one(c.out.data_ptr<float>(), int(c.out.numel()), true, context);                      \
        break;                                                                                                  \
      case ::fused_inception::TestKind::kClusterExchange:                                                       \
        launchers::cluster_exchange(c.in[0].data_ptr<float>(), c.out.data_ptr<float>(),                         \
                                    unsigned(c.in[0].size(1)), unsigned(c.in[0].size(0)), c.cluster_x,          \
                                    c.cluster_y, c.flags, context);                                             \
        break;                                                                                                  \
    }                                                                                                           \
  } while (0)
