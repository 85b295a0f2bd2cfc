// The shape of one Inception block and the layout of its packed weights.
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
  // The 1x1 convolutions that read x directly, stacked: branch 1, the two reductions, the pool projection.
  FUSED_INCEPTION_HOST_DEVICE constexpr int64_t rows_1x1() const { return ch1x1 + ch3x3red + ch5x5red + pool_proj; }
};

// Packed weights: one flat buffer in the weights' dtype, built once per weight version, in the layout the
// fused kernel reads. Every weight matrix is [output channel][K] with K contiguous and each row padded with
// zeros to a multiple of kPackRowAlign elements, so rows start 16-byte aligned (cp.async, vector loads).
//   w_1x1   [rows_1x1][row_1x1]    rows: w1, w3r, w5r, wp; K = in_channels
//   w3      [ch3x3][row_w3]        K = (k3, k3, ch3x3red) flattened, "OHWI": the reduction's channels innermost
//   w5      [ch5x5][row_w5]        K = (k5, k5, ch5x5red)
//   b_1x1   [rows_1x1]             b1, b3r, b5r, bp
//   b3      [ch3x3]
//   b5      [ch5x5]
// Element offsets into the buffer; `total` is its length.
constexpr int64_t kPackRowAlign = 8;

FUSED_INCEPTION_HOST_DEVICE constexpr int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

struct PackedLayout {
  int64_t row_1x1, row_w3, row_w5;  // padded row lengths
  int64_t w_1x1, w3, w5, b_1x1, b3, b5, total;
};

FUSED_INCEPTION_HOST_DEVICE constexpr PackedLayout packed_layout(const InceptionShape& s) {
  PackedLayout l{};
  l.row_1x1 = round_up(s.in_channels, kPackRowAlign);
  l.row_w3 = round_up(s.k3 * s.k3 * s.ch3x3red, kPackRowAlign);
  l.row_w5 = round_up(s.k5 * s.k5 * s.ch5x5red, kPackRowAlign);
  l.w_1x1 = 0;
  l.w3 = l.w_1x1 + s.rows_1x1() * l.row_1x1;
  l.w5 = l.w3 + s.ch3x3 * l.row_w3;
  l.b_1x1 = l.w5 + s.ch5x5 * l.row_w5;
  l.b3 = l.b_1x1 + s.rows_1x1();
  l.b5 = l.b3 + s.ch3x3;
  l.total = l.b5 + s.ch5x5;
  return l;
}

}  // namespace fused_inception
