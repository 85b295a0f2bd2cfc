// CUDA registration of the emulator test-kernel op: the same kernels, compiled by nvcc, on the GPU.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "simt_test_call.h"

namespace fused_inception {
namespace {

at::Tensor simt_test_cuda(const std::string& kernel, at::TensorList inputs) {
  const TestCall call = prepare_test_call(kernel, inputs.vec());
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  FUSED_INCEPTION_RUN_TEST_CALL(gpu::test_kernels, call, c10::cuda::getCurrentCUDAStream().stream());
  return call.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fused_inception, CUDA, m) { m.impl("_simt_test", &simt_test_cuda); }

}  // namespace fused_inception
