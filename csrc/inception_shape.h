// The shape of one Inception block.
// Torch-free on purpose: kernels (nvcc, NVRTC, the CPU emulator) and host code share this one definition.
#pragma once

#include "simt/integers.h"

// Shape arithmetic is used by kernels too.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FUSED_INCEPTION_HOST_DEVICE __host__ __device__
#else
#define FUSED_INCEPTION_HOST_DEVICE
#endif

namespace fused_inception {

#if !defined(__CUDACC_RTC__)
// Kernel sizes a block's spatial branches may use: (3, 5) in the paper, (3, 3) in torchvision's GoogLeNet.
// Python reads this list through fused_inception._C.build_info().
constexpr int64_t kSupportedKernelSizes[] = {3, 5};
constexpr bool is_supported_kernel_size(int64_t k) {
  for (int64_t supported : kSupportedKernelSizes) {
    if (k == supported) return true;
  }
  return false;
}
#endif

// Channel counts and kernel sizes of one block. Output channels are concatenated in branch order:
// [1x1 | 1x1 reduce -> k3 x k3 | 1x1 reduce -> k5 x k5 | 3x3 max-pool -> 1x1 projection].
struct InceptionShape {
  int64_t in_channels = 0;
  int64_t ch1x1 = 0;
  int64_t ch3x3red = 0;
  int64_t ch3x3 = 0;
  int64_t ch5x5red = 0;
  int64_t ch5x5 = 0;
  int64_t pool_proj = 0;
  int64_t k3 = 3;  // kernel of branch 2
  int64_t k5 = 5;  // kernel of branch 3: 5 in the paper, 3 in torchvision's GoogLeNet

  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t out_channels() const { return ch1x1 + ch3x3 + ch5x5 + pool_proj; }
  // First output channel of each branch.
  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t out_offset_branch1() const { return 0; }
  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t out_offset_branch2() const { return ch1x1; }
  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t out_offset_branch3() const { return ch1x1 + ch3x3; }
  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t out_offset_branch4() const { return ch1x1 + ch3x3 + ch5x5; }
};

}  // namespace fused_inception
