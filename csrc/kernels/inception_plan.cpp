// Host-side planning of a fused launch: task split, shared memory, limits. Torch-free.
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kernels/inception_plan.h"

namespace fused_inception {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Tests only: FUSED_INCEPTION_TEST_CHANNEL_CHUNK forces the chunk (the planned one is at least 128, so small
// test shapes would never split a branch into several tasks with a non-zero channel_begin). 0: no override.
int64_t test_channel_chunk() {
  const char* env = std::getenv("FUSED_INCEPTION_TEST_CHANNEL_CHUNK");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const long long chunk = std::strtoll(env, &end, 10);
  if (*end != '\0' || chunk < 0 || chunk > (1 << 20)) {
    throw std::invalid_argument(std::string("FUSED_INCEPTION_TEST_CHANNEL_CHUNK must be a channel count, got ") + env);
  }
  return chunk;
}

// Tests only: FUSED_INCEPTION_TEST_CLUSTERS=0 plans launches without clusters on any device (the same case
// computed both ways must give the same bits).
bool test_clusters_disabled() {
  const char* env = std::getenv("FUSED_INCEPTION_TEST_CLUSTERS");
  if (env == nullptr || *env == '\0') return false;
  if (std::string(env) != "0" && std::string(env) != "1") {
    throw std::invalid_argument(std::string("FUSED_INCEPTION_TEST_CLUSTERS must be 0 or 1, got ") + env);
  }
  return std::string(env) == "0";
}

}  // namespace

int64_t plan_channel_chunk(const InceptionShape& s, int64_t ctas_per_task, int sm_count) {
  if (const int64_t forced = test_channel_chunk(); forced > 0 && count_tasks(s, forced) <= FusedPlan::kMaxTasks) {
    return forced;
  }
  // Never below one output pass (kStageCols = 128 channels): a smaller chunk shortens no CTA (the busiest
  // warp still runs every K step of the pass, the reduction is recomputed whole), it only adds CTAs and work.
  constexpr int64_t kPass = FusedPlan::kStageCols;
  // The widest spatial branch: a 1x1 or pool task recomputes nothing, so those split into chunks for free.
  const int64_t widest = std::max(s.ch3x3, s.ch5x5);
  int64_t chunk = std::max(kPass, ceil_div(widest, kPass) * kPass);
  while (chunk > kPass && count_tasks(s, chunk) * ctas_per_task < 2 * int64_t(sm_count)) chunk -= kPass;
  while (count_tasks(s, chunk) > FusedPlan::kMaxTasks) chunk *= 2;
  return chunk;
}

int64_t reduced_elements(const InceptionShape& s, int element_bytes) {
  // A pool task keeps its halo stages of x there instead (PoolStream): 2 x 10 x 10 pixels x a K chunk, rows
  // padded to the stage stride when they are staged element by element.
  const int64_t pool_halo = int64_t(FusedPlan::kStages) * FusedPlan::kPoolHaloPixels * FusedPlan::stage_stride(element_bytes);
  return std::max({halo_pixels(s.k3) * reduced_row_stride(s.ch3x3red, element_bytes),
                   halo_pixels(s.k5) * reduced_row_stride(s.ch5x5red, element_bytes), pool_halo});
}

size_t fused_shared_bytes(const InceptionShape& s, int element_bytes) {
  const size_t stage = size_t(FusedPlan::kStages) * size_t(FusedPlan::kRowsPerStage) *
                       size_t(FusedPlan::stage_stride(element_bytes));
  // The reduction follows the stages at a 16-byte boundary (its rows are whole vectors), then one zero vector
  // and the window table (int32 entries) that the k x k GEMM reads A through.
  const size_t stage_bytes = (stage * size_t(element_bytes) + 15) / 16 * 16;
  const int64_t groups = std::max(window_groups(s.k3, s.ch3x3red, element_bytes),
                                  window_groups(s.k5, s.ch5x5red, element_bytes));
  return stage_bytes + size_t(reduced_elements(s, element_bytes)) * size_t(element_bytes) + 16 +
         size_t(groups) * sizeof(int32_t);
}

int64_t fused_grid_ctas(const InceptionParams& p) {
  const int64_t clusters = (int64_t(p.num_tasks) + p.cluster_ctas - 1) / p.cluster_ctas;
  return p.batch * int64_t(p.tiles_h) * p.tiles_w * clusters * p.cluster_ctas;
}

bool plan_fused_launch(InceptionParams& p, int element_bytes, int sm_count, size_t shared_memory_limit,
                       bool device_has_clusters, std::string* why_not) {
  auto refuse = [&](const std::string& reason) {
    if (why_not) *why_not = reason;
    return false;
  };
  const auto& s = p.shape;
  if (!(s.k3 == 3 || s.k3 == 5) || !(s.k5 == 3 || s.k5 == 5)) return refuse("kernel sizes other than 3 and 5");
  if (p.height > std::numeric_limits<int32_t>::max() / 2 || p.width > std::numeric_limits<int32_t>::max() / 2) {
    return refuse("an image side over 2^30 pixels");
  }
  const size_t shared_bytes = fused_shared_bytes(s, element_bytes);
  if (shared_bytes > shared_memory_limit) {
    std::ostringstream os;
    os << "the recomputed reduction needs " << shared_bytes << " bytes of shared memory, over the device's "
       << shared_memory_limit;
    return refuse(os.str());
  }
  // The kernel counts K (a GEMM's input channels x taps) and its chunks in int32.
  for (int index = 0; index < kNumWeights; ++index) {
    if (weight_row_length(s, index) > std::numeric_limits<int32_t>::max() - FusedPlan::k_chunk(element_bytes)) {
      return refuse("a convolution with over 2^31 - 1 - a K chunk input channels x taps");
    }
  }
  p.tiles_h = int32_t(ceil_div(p.height, FusedPlan::kTile));
  p.tiles_w = int32_t(ceil_div(p.width, FusedPlan::kTile));
  const int64_t ctas_per_task = p.batch * int64_t(p.tiles_h) * p.tiles_w;
  if (ctas_per_task > std::numeric_limits<int32_t>::max()) return refuse("more than 2^31 - 1 image tiles");
  const int64_t chunk = plan_channel_chunk(s, ctas_per_task, sm_count);
  if (chunk > std::numeric_limits<int32_t>::max()) return refuse("too many output channels for one launch");
  p.channel_chunk = int32_t(chunk);
  p.num_tasks = int32_t(count_tasks(s, chunk));
  p.cluster_ctas = int32_t(plan_cluster_ctas(s, chunk, device_has_clusters && !test_clusters_disabled()));
  if (fused_grid_ctas(p) > std::numeric_limits<int32_t>::max()) {
    return refuse("more than 2^31 - 1 CTAs (image tiles x tasks)");  // the grid is one-dimensional
  }
  p.band_tiles = int32_t(plan_band_tiles(ctas_per_task, s.in_channels, element_bytes));
  p.reduced_elements = int32_t(reduced_elements(s, element_bytes));  // fits: the shared-memory check above bounds it
  // 16-byte copies of x need whole vectors of channels at aligned addresses: channels contiguous, every
  // other stride and the channel count multiples of a vector, an aligned base.
  const int64_t vector = 16 / element_bytes;
  p.x_vectorized = p.x_stride[1] == 1 && s.in_channels % vector == 0 && p.x_stride[0] % vector == 0 &&
                   p.x_stride[2] % vector == 0 && p.x_stride[3] % vector == 0 &&
                   reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  // Weight rows are always 16-byte copies: aligned rows (the host pads the others into a copy).
  for (int index = 0; index < kNumWeights; ++index) {
    const auto& view = p.weights[index];
    if (view.row_stride % vector != 0 || reinterpret_cast<uintptr_t>(view.weight) % 16 != 0) {
      return refuse("weight rows that do not start 16-byte aligned");
    }
  }
  return true;
}

}  // namespace fused_inception
