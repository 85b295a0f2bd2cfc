// Host glue of the fused kernel: which backend runs the op per device, and the forward that runs the fused
// kernel where it covers the case and the unfused composition otherwise.
#pragma once

#include <functional>
#include <string>

#include "inception.h"
#include "kernels/inception_plan.h"

namespace fused_inception {

// What runs the forward on a device type: "fused" (the one-launch kernel: on CUDA the GPU, on CPU the
// same source under the SIMT emulator) or "unfused" (the ATen composition). Defaults: CUDA fused, CPU
// unfused (the emulator is test infrastructure). A setting is per thread, like torch.autocast's: a switch
// in one thread never changes what another computes.
enum class Backend { kFused, kUnfused };
Backend backend_for(c10::DeviceType device_type);
void set_backend_for(c10::DeviceType device_type, Backend backend);

// How a device launches the fused kernel.
struct FusedLauncher {
  int sm_count;
  size_t shared_memory_limit;
  bool has_clusters;  // thread-block clusters (compute capability 9.0; the emulator)
  std::function<void(MathMode, const InceptionParams&, const at::Tensor& out)> launch;
};

MathMode math_mode_for(at::ScalarType dtype);

// Where a forward goes. kUnfused where x's device has the unfused backend or a dtype the kernel lacks. Else,
// from the GPU's measurements (docs/performance.md, change 21): kKernel, the fused kernel on x as it is;
// kKernelOnChannelsLastCopy, the kernel on a channels_last copy of a dense NCHW x, the output copied back to
// NCHW (the kernel's NCHW loads cost more than the two copies); kUnfused, the unfused composition (cuDNN),
// where the kernel measured slower (TF32 on large inputs). Routing is on by default and per thread; with it
// off (set_routing(false)) every call the kernel covers runs it on x as it is.
enum class Route { kKernel, kKernelOnChannelsLastCopy, kUnfused };
Route route_for(const at::Tensor& x);
// The rule itself, for a case: batch x height x width pixels, x's math mode, whether x is dense NCHW, and the
// bytes of one pixel's channels.
Route route_for_case(int64_t pixels, MathMode mode, bool dense_nchw, int64_t pixel_bytes);
const char* route_name(Route route);
// Whether the kernel reads OIHW k x k weights through channels_last copies made for the call (never kept):
// on every route to the kernel from the size the NCHW copy starts at (kChannelsLastCopyMinPixels), with
// routing on, in the tensor-core modes. As a model converted to channels_last holds them, K ordered (tap,
// channel), the kernel reads the k x k GEMM's windows in place (DirectWindows: 4.1 SASS instructions per mma
// at 16 bits) instead of staging them window by window (6.2); modeled 7-14% off the block at batch 256
// (docs/performance.md, changes 27 and 29). A weight already channels_last is used as it is.
bool window_weights_copied(const at::Tensor& x);
// The same for a case (routing on): batch x height x width pixels and x's math mode.
bool window_weights_copied_case(int64_t pixels, MathMode mode);
// Whether a k x k convolution over `reduced_channels` is read in place from channels_last weights (whole
// 16-byte vectors of reduced channels): the weights with_window_weights_in_place copies.
bool reads_windows_in_place(int64_t reduced_channels, int64_t element_bytes);
InceptionWeights with_window_weights_in_place(const InceptionWeights& w, int64_t element_bytes);
bool routing_enabled();
void set_routing(bool enabled);

// The forward on one device: checks, the output in x's memory format, then the fused kernel when the
// device's backend is fused and the kernel covers the case (float16, bfloat16, float32; shared memory
// within the device's limit), else the unfused composition.
at::Tensor inception_forward_dispatch(const at::Tensor& x, const InceptionWeights& w,
                                      const FusedLauncher& launcher);

}  // namespace fused_inception
