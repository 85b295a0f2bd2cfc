// Host entry points of the fused Inception kernel, for both backends. Torch-free. One translation unit per
// (backend, math mode) defines each function: kernels/inception_emu_*.cpp and cuda/inception_gpu_*.cu.
#pragma once

#include <stdexcept>

#include "kernels/inception_plan.h"

struct CUstream_st;
namespace simt {
struct LaunchOptions;
}

namespace fused_inception {

#define FUSED_INCEPTION_DECLARE_FORWARDS(Context)                   \
  void forward_f16(const InceptionParams& params, Context context);  \
  void forward_bf16(const InceptionParams& params, Context context); \
  void forward_tf32(const InceptionParams& params, Context context); \
  void forward_f32(const InceptionParams& params, Context context);  \
  inline void forward(MathMode mode, const InceptionParams& params, Context context) {      \
    switch (mode) {                                                                         \
      case MathMode::kF16:                                                                  \
        return forward_f16(params, context);                                                \
      case MathMode::kBF16:                                                                 \
        return forward_bf16(params, context);                                               \
      case MathMode::kTF32:                                                                 \
        return forward_tf32(params, context);                                               \
      case MathMode::kF32:                                                                  \
        return forward_f32(params, context);                                                \
    }                                                                                       \
    throw std::invalid_argument("fused_inception: unknown math mode");                      \
  }

namespace emu {
namespace inception {
FUSED_INCEPTION_DECLARE_FORWARDS(const simt::LaunchOptions&)
}  // namespace inception
}  // namespace emu

namespace gpu {
namespace inception {
FUSED_INCEPTION_DECLARE_FORWARDS(CUstream_st*)
}  // namespace inception
}  // namespace gpu

#undef FUSED_INCEPTION_DECLARE_FORWARDS

}  // namespace fused_inception
