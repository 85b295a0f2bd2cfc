// Defines one fused-kernel launcher: FUSED_INCEPTION_FORWARD for the math mode FUSED_INCEPTION_MODE.
// Included by exactly one translation unit per (backend, mode), so that each kernel instantiation
// compiles on its own (and in parallel).
#include "kernels/inception_api.h"
#include "kernels/inception_kernel.h"

namespace fused_inception {
namespace SIMT_NS {
namespace inception {

void FUSED_INCEPTION_FORWARD(const InceptionParams& params, simt::LaunchContext context) {
  constexpr MathMode kMode = MathMode::FUSED_INCEPTION_MODE;
  const size_t shared_bytes =
      fused_shared_bytes(params.shape, int(sizeof(typename Math<kMode>::Element)));
  // Every (tile, task), in bands (cta_of), in clusters where planned: fits grid.x, plan_fused_launch checked it.
  const int64_t blocks = fused_grid_ctas(params);
  if (blocks <= 0) return;  // nothing to compute: no launch
  simt::allow_shared_memory(inception_kernel<kMode>, shared_bytes);
  const simt::dim3 grid{static_cast<unsigned>(blocks), 1u};
  // Planned clusters run as such where the kernel's image has real cluster primitives; elsewhere its CTAs
  // see clusters of one and recompute the reduction, so a plain launch of the same grid is right.
  if (params.cluster_ctas > 1 && simt::compiled_for_clusters(inception_kernel<kMode>)) {
    SIMT_LAUNCH_CLUSTER(inception_kernel<kMode>, grid, simt::dim3(unsigned(params.cluster_ctas)), FusedPlan::kThreads,
                        shared_bytes, context, params);
  } else {
    SIMT_LAUNCH(inception_kernel<kMode>, grid, FusedPlan::kThreads, shared_bytes, context, params);
  }
}

}  // namespace inception
}  // namespace SIMT_NS
}  // namespace fused_inception
