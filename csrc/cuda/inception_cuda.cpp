// CUDA implementations of the Inception ops: the forward is the fused one-launch kernel where it covers
// the case (inception_forward_dispatch), the unfused composition (cuDNN) otherwise; the backward is unfused.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <mutex>
#include <unordered_map>

#include "device_support.h"
#include "inception_fused.h"
#include "kernels/inception_api.h"

namespace fused_inception {
namespace {

// Multiprocessor count, opt-in shared memory per block and whether the fused kernel has an image for the
// device, read once per device.
struct DeviceLimits {
  int sm_count = 0;
  size_t shared_memory = 0;
  bool clusters = false;  // launches thread-block clusters (compute capability 9.0)
  FusedKernelSupport fused_kernel;
};

DeviceLimits limits_of(int device) {
  static std::mutex mutex;
  static std::unordered_map<int, DeviceLimits> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(device);
  if (found != cache.end()) return found->second;
  DeviceLimits limits;
  int shared_memory = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&limits.sm_count, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&shared_memory, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  limits.shared_memory = size_t(shared_memory);
  int major = 0, minor = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  limits.fused_kernel = fused_kernel_support(major, minor, FUSED_INCEPTION_CUDA_ARCH_LIST);
  int cluster_launch = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&cluster_launch, cudaDevAttrClusterLaunch, device));
  limits.clusters = cluster_launch != 0;
  return cache.emplace(device, limits).first->second;
}

at::Tensor inception_forward_cuda(const at::Tensor& x, FUSED_INCEPTION_WEIGHT_PARAMS) {
  // The checks in inception_forward_dispatch name any tensor on the wrong device; until then, x's.
  const int device = x.is_cuda() ? x.get_device() : c10::cuda::current_device();
  const DeviceLimits limits = limits_of(device);
  if (!limits.fused_kernel.runs && backend_for(c10::DeviceType::CUDA) == Backend::kFused) {
    // Never launch a kernel with no image for the device: the composition is correct everywhere.
    TORCH_WARN_ONCE("fused_inception: ", limits.fused_kernel.why,
                    "; the op runs the unfused composition (cuDNN) on this device");
    return inception_forward_unfused(x, FUSED_INCEPTION_WEIGHTS_STRUCT);
  }
  const FusedLauncher launcher{
      limits.sm_count, limits.shared_memory, limits.clusters,
      [](MathMode mode, const InceptionParams& p, const at::Tensor& out) {
        gpu::inception::forward(mode, p, c10::cuda::getCurrentCUDAStream(out.get_device()).stream());
      }};
  return inception_forward_dispatch(x, FUSED_INCEPTION_WEIGHTS_STRUCT, launcher);
}

std::vector<at::Tensor> inception_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                const at::Tensor& out, FUSED_INCEPTION_WEIGHT_PARAMS) {
  return inception_backward_unfused(grad_out, x, out, FUSED_INCEPTION_WEIGHTS_STRUCT);
}

}  // namespace

TORCH_LIBRARY_IMPL(fused_inception, CUDA, m) {
  m.impl("inception_forward", &inception_forward_cuda);
  m.impl("inception_backward", &inception_backward_cuda);
}

}  // namespace fused_inception
