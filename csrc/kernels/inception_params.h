// The fused Inception kernel's launch parameters and tile plan: one definition for the kernel (nvcc and the
// emulator) and the host code that plans a launch. Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "inception_shape.h"

namespace fused_inception {

// How the block's arithmetic runs. 16-bit inputs: tensor cores (mma m16n8k16), float accumulators.
// Float32 inputs: tensor cores in TF32 (mma m16n8k8) where PyTorch's convolutions may use TF32
// (torch.backends.cudnn.allow_tf32), otherwise exact float32 FMA.
enum class MathMode : int { kF16, kBF16, kTF32, kF32 };

// One CTA's job: the output channels [channel_begin, channel_begin + channel_count) of one branch, on an
// 8x8 tile of one image. A spatial branch's CTA first recomputes that branch's 1x1 reduction on the tile
// plus its halo (kept in shared memory, zero outside the image), then runs the k x k convolution from there.
enum class Branch : int32_t { k1x1 = 0, kSpatial3 = 1, kSpatial5 = 2, kPool = 3 };

struct Task {
  int32_t branch;  // Branch
  int32_t channel_begin;
  int32_t channel_count;
};

struct FusedPlan {
  static constexpr int kThreads = 256;
  static constexpr int kWarpsM = 2, kWarpsN = 4;  // warps of a CTA, as a grid over the GEMM's M x N
  static constexpr int kTile = 8;                 // output tile: kTile x kTile pixels (the output GEMMs' M)
  static constexpr int kTilePixels = kTile * kTile;
  static constexpr int kMaxHaloPixels = (kTile + 4) * (kTile + 4);  // a 5x5 kernel's halo of 2
  static constexpr int kKChunk = 32;  // K elements staged in shared memory per step
  // Output GEMMs (M = 64 pixels): each warp 2 x 4 mma tiles (32 x 32), N = 128 channels per pass.
  static constexpr int kOutMI = 2, kOutNI = 4;
  // Reduction GEMMs over the tile and its halo (M <= 144 pixels): each warp 5 x 2 tiles, N = 64 per pass.
  static constexpr int kHaloMI = 5, kHaloNI = 2;
  static constexpr int kStageRows = kWarpsM * kHaloMI * 16;  // A stage rows: the largest M (160)
  static constexpr int kStageCols = kWarpsN * kOutNI * 8;    // B stage rows: the largest N (128)
  // Double buffering: the copies of K chunk i + 1 are in flight while chunk i is multiplied.
  static constexpr int kStages = 2;
  static constexpr int kMaxTasks = 64;
  // Element stride of a staged row: kKChunk plus padding that puts the 8 rows of a fragment load in
  // distinct banks (a 16-bit row of 40 elements is 20 words; a 32-bit row of 36 is 36 words: 4 apart).
  FUSED_INCEPTION_HOST_DEVICE static constexpr int stage_stride(int element_bytes) {
    return element_bytes == 2 ? kKChunk + 8 : kKChunk + 4;
  }
};
static_assert(FusedPlan::kWarpsM * FusedPlan::kWarpsN * 32 == FusedPlan::kThreads);
static_assert(FusedPlan::kWarpsM * FusedPlan::kOutMI * 16 == FusedPlan::kTilePixels);
static_assert(FusedPlan::kStageRows >= FusedPlan::kMaxHaloPixels);
static_assert(FusedPlan::kStageCols >= FusedPlan::kWarpsN * FusedPlan::kHaloNI * 8);

// Everything a launch needs, passed by value as the kernel's one parameter.
struct InceptionParams {
  const void* x;       // (N, Cin, H, W) with any strides
  void* out;           // (N, Cout, H, W) with any strides
  const void* packed;  // pack_weights(...), 16-byte aligned
  int64_t batch, height, width;
  int64_t x_stride[4];  // in elements, for N, C, H, W
  int64_t out_stride[4];
  InceptionShape shape;
  PackedLayout layout;
  int32_t tiles_h, tiles_w;
  int32_t x_vectorized;      // x is read in 16-byte cp.async copies (channels contiguous and aligned)
  int32_t reduced_elements;  // shared-memory elements for the recomputed reduction
  int32_t num_tasks;
  Task tasks[FusedPlan::kMaxTasks];
};

// Splits each branch's output channels into tasks so that the grid fills `sm_count` multiprocessors twice
// where it can: large chunks (no reduction recomputed) at large batch, 64-channel chunks at small batch.
// Spatial branches come first, so the longest CTAs start first. Returns the number of tasks.
int plan_tasks(const InceptionShape& s, int64_t ctas_per_task, int sm_count, Task* tasks);

// Shared memory of a launch: the A and B stages of one K chunk and the recomputed reduction.
size_t fused_shared_bytes(const InceptionShape& s, int element_bytes);
int32_t reduced_elements(const InceptionShape& s);

// Fills the fields of `p` that follow from the shape, pointers and strides (tiles, tasks, shared memory,
// how x is read); returns false, with the reason, for a case the fused kernel does not cover (the caller
// then runs the unfused path).
bool plan_fused_launch(InceptionParams& p, int element_bytes, int sm_count, size_t shared_memory_limit,
                       std::string* why_not);

}  // namespace fused_inception
