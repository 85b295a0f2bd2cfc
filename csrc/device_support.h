// Which CUDA devices the fused kernel runs on. Its instructions (bf16 mma.sync, cp.async) need compute
// capability 8.0, and the device needs an image of it in the extension: SASS compiled for its architecture
// family, or PTX the driver compiles for it. Devices without either run the unfused composition.
#pragma once

#include <string>
#include <vector>

namespace fused_inception {

// The images a TORCH_CUDA_ARCH_LIST-style list ("8.0;9.0+PTX", separated by ';', ',' or spaces) compiles:
// "sm_80" (SASS), "compute_90" (PTX). Entries it cannot read (e.g. architecture names) are skipped.
std::vector<std::string> cuda_images(const std::string& arch_list);

struct FusedKernelSupport {
  bool runs;
  std::string why;  // which image runs, or why none can
};

// Whether the fused kernel built for `arch_list` runs on a device of compute capability major.minor.
FusedKernelSupport fused_kernel_support(int major, int minor, const std::string& arch_list);

}  // namespace fused_inception
