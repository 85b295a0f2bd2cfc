// Host-side API of the Inception op: argument checks and the unfused ATen composition.
// Shared by the per-backend registrations (cpu: inception_unfused.cpp, cuda/inception_cuda.cpp).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "inception_shape.h"

namespace fused_inception {

// The twelve parameters of a block, in schema order.
struct InceptionWeights {
  at::Tensor w1, b1;    // 1x1
  at::Tensor w3r, b3r;  // 1x1 reduce for branch 2
  at::Tensor w3, b3;    // k3 x k3
  at::Tensor w5r, b5r;  // 1x1 reduce for branch 3
  at::Tensor w5, b5;    // k5 x k5
  at::Tensor wp, bp;    // pool projection (1x1)
};

// Test aid: while set, the forward fills its output with NaN before computing it, so an element that no
// kernel writes shows up in the comparison. Returns the previous setting.
bool set_poison_outputs(bool enabled);
bool poison_outputs();

// Checks the weights' shapes among themselves, their dtype and device against `reference` (x, or w1 when
// there is no x), and returns the block's shape.
InceptionShape check_weights(const char* op, const InceptionWeights& w, const at::Tensor& reference,
                             const char* reference_name);
// Checks x and the weights against each other and returns the block's shape.
InceptionShape check_inception_args(const char* op, const at::Tensor& x, const InceptionWeights& w);

// The block as a composition of ATen ops, the same calls eager PyTorch makes (so the same numerics), each
// branch written into its channel slice of one preallocated output instead of a torch.cat. Runs on any
// device ATen supports: the CPU implementation, and the unfused baseline on CUDA.
at::Tensor inception_forward_unfused(const at::Tensor& x, const InceptionWeights& w);

// Gradients of (x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp), in that order. The reductions and
// the pooled input are recomputed from x; the ReLU masks of the four branches come from `out`.
std::vector<at::Tensor> inception_backward_unfused(const at::Tensor& grad_out, const at::Tensor& x,
                                                   const at::Tensor& out, const InceptionWeights& w);

}  // namespace fused_inception

// The op's argument list after x, as the schema spells it; keeps the registrations in one form.
#define FUSED_INCEPTION_WEIGHT_PARAMS                                                              \
  const at::Tensor &w1, const at::Tensor &b1, const at::Tensor &w3r, const at::Tensor &b3r,        \
      const at::Tensor &w3, const at::Tensor &b3, const at::Tensor &w5r, const at::Tensor &b5r,    \
      const at::Tensor &w5, const at::Tensor &b5, const at::Tensor &wp, const at::Tensor &bp
#define FUSED_INCEPTION_WEIGHT_ARGS w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp
#define FUSED_INCEPTION_WEIGHTS_STRUCT \
  ::fused_inception::InceptionWeights { FUSED_INCEPTION_WEIGHT_ARGS }
