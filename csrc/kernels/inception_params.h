// The fused Inception kernel's launch parameters, tile plan and task order: one definition for the kernel
// (nvcc, NVRTC and the emulator) and the host code that plans a launch. Torch-free and NVRTC-clean (no
// standard headers); the host-side planning is declared in inception_plan.h.
#pragma once

#include "inception_shape.h"

namespace fused_inception {

// How the block's arithmetic runs. 16-bit inputs: tensor cores (mma m16n8k16), float accumulators.
// Float32 inputs: tensor cores in TF32 (mma m16n8k8) where PyTorch's convolutions may use TF32
// (torch.backends.cudnn.allow_tf32), otherwise exact float32 FMA.
enum class MathMode : int { kF16, kBF16, kTF32, kF32 };

// One CTA's job (a Task): the output channels [channel_begin, channel_begin + channel_count) of one
// branch, on an 8x8 tile of one image. A spatial branch's CTA first recomputes that branch's 1x1 reduction
// on the tile plus its halo (kept in shared memory, zero outside the image), then runs the k x k
// convolution from there.
enum class Branch : int32_t { k1x1 = 0, kSpatial3 = 1, kSpatial5 = 2, kPool = 3 };

struct Task {
  Branch branch;
  int32_t channel_begin;
  int32_t channel_count;
};

// Tasks in launch order (within a band of tiles, cta_of): the spatial branches first, so the longest CTAs are dispatched first,
// each branch's output channels in chunks of `chunk`. The host counts them, each CTA decodes its own.
FUSED_INCEPTION_HOST_DEVICE constexpr Branch branch_in_order(int order) {
  return order == 0 ? Branch::kSpatial3 : order == 1 ? Branch::kSpatial5 : order == 2 ? Branch::k1x1 : Branch::kPool;
}
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t branch_channels(const InceptionShape& s, Branch branch) {
  return branch == Branch::kSpatial3 ? s.ch3x3 : branch == Branch::kSpatial5 ? s.ch5x5
                                               : branch == Branch::k1x1      ? s.ch1x1
                                                                             : s.pool_proj;
}
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t count_tasks(const InceptionShape& s, int64_t chunk) {
  int64_t count = 0;
  for (int order = 0; order < 4; ++order) count += (branch_channels(s, branch_in_order(order)) + chunk - 1) / chunk;
  return count;
}
FUSED_INCEPTION_HOST_DEVICE constexpr Task task_of(const InceptionShape& s, int64_t chunk, int64_t index) {
  for (int order = 0; order < 3; ++order) {
    const Branch branch = branch_in_order(order);
    const int64_t channels = branch_channels(s, branch), tasks = (channels + chunk - 1) / chunk;
    if (index < tasks) {
      const int64_t begin = index * chunk, rest = channels - begin;
      return Task{branch, int32_t(begin), int32_t(rest < chunk ? rest : chunk)};
    }
    index -= tasks;
  }
  const int64_t begin = index * chunk, rest = s.pool_proj - begin;
  return Task{Branch::kPool, int32_t(begin), int32_t(rest < chunk ? rest : chunk)};
}

struct FusedPlan {
  static constexpr int kThreads = 256;
  // CTAs an SM must fit (__launch_bounds__). At 1 CTA (8 warps, 136 registers) the H200 run's fused kernel
  // issued on 26% of cycles, each warp stalled ~7.6 cycles an instruction with 2 warps a scheduler
  // (benchmarks/results/2026-11-28-h200): 2 CTAs (128 registers, no spills) give each scheduler 4. The 4-byte
  // modes stay at 1: their stages (118-156 KB) fit one CTA an SM anyway, and exact FP32 spills at 128.
  FUSED_INCEPTION_HOST_DEVICE static constexpr int min_ctas_per_sm(int element_bytes) {
    return element_bytes == 2 ? 2 : 1;
  }
  static constexpr int kWarpsM = 2, kWarpsN = 4;  // warps of a CTA, as a grid over the GEMM's M x N
  static constexpr int kTile = 8;                 // output tile: kTile x kTile pixels (the output GEMMs' M)
  static constexpr int kTilePixels = kTile * kTile;
  static constexpr int kMaxHaloPixels = (kTile + 4) * (kTile + 4);  // a 5x5 kernel's halo of 2
  static constexpr int kPoolHaloPixels = (kTile + 2) * (kTile + 2);  // the 3x3 max-pool's halo of 1
  // K elements staged in shared memory per step: 128 bytes of every row (64 16-bit elements, 32 floats). At 16
  // bits a step of 32 gave each warp 2 k16 slices (16 mma) between two CTA barriers, and the H200 run found
  // the mainloop latency-bound (tensor pipe 15-27% busy, stalls on barriers and ldmatrix): 4 slices a step
  // halve the barriers per mma and spread a step's fixed instructions over twice the tensor work. 32-bit
  // modes keep 32 (their stages would not fit: 118-156 KB for one CTA an SM already).
#ifdef FUSED_INCEPTION_K_CHUNK_16BIT
  static constexpr int kKChunk16 = FUSED_INCEPTION_K_CHUNK_16BIT;  // a build variant (scripts/device_ab.sh)
#else
  static constexpr int kKChunk16 = 64;
#endif
  static constexpr int kKChunk32 = 32;
  FUSED_INCEPTION_HOST_DEVICE static constexpr int k_chunk(int element_bytes) {
    return element_bytes == 2 ? kKChunk16 : kKChunk32;
  }
  // k16 slices of a step whose 16-bit fragments are loaded before their multiplies (Math16::multiply).
#ifdef FUSED_INCEPTION_SLICES_LOADED_AHEAD
  static constexpr int kSlicesLoadedAhead = FUSED_INCEPTION_SLICES_LOADED_AHEAD;
#else
  static constexpr int kSlicesLoadedAhead = 1;
#endif
  // CTA barriers a K step of run_gemm (besides the one after a landed stage is completed): 1 waits for the
  // chunk, synchronises, then issues the next (change 28); 2 issues the next first, then waits, synchronises,
  // and synchronises again after the multiply (the pipeline before change 28: its A/B, scripts/device_ab.sh).
#ifdef FUSED_INCEPTION_BARRIERS_PER_STEP
  static constexpr int kBarriersPerStep = FUSED_INCEPTION_BARRIERS_PER_STEP;
#else
  static constexpr int kBarriersPerStep = 1;
#endif
  static_assert(kBarriersPerStep == 1 || kBarriersPerStep == 2, "one or two barriers a K step");
  // Whether the output GEMMs' tensor cores compute C^T, a tile's frame rows 8 pixels at a time (a 7-row tile of
  // a 7x7 image: 56 rows, not 64; multiply_transposed). A build variant for a GPU A/B (change 37): it meets
  // issue 12's work multiplier for 5a and 5b, but the model, which finds the kernel latency-bound on its
  // busiest warp, predicts no time saved and 1-2% lost elsewhere to its longer loops and passes.
#ifdef FUSED_INCEPTION_OUTPUT_PIXELS_AS_N
  static constexpr bool kOutputPixelsAsN = FUSED_INCEPTION_OUTPUT_PIXELS_AS_N != 0;
#else
  static constexpr bool kOutputPixelsAsN = false;
#endif
  // Output GEMMs (M = 64 pixels): each warp 2 x 4 mma tiles (32 x 32), N = 128 channels per pass.
  static constexpr int kOutMI = 2, kOutNI = 4;
  // Reduction GEMMs over the tile and its halo (M <= 144 pixels): each warp 5 x 2 tiles, N = 64 per pass.
  static constexpr int kHaloMI = 5, kHaloNI = 2;
  static constexpr int kStageRows = kWarpsM * kHaloMI * 16;  // A stage rows: the largest M (160)
  static constexpr int kStageCols = kWarpsN * kOutNI * 8;    // B stage rows: the largest N (128)
  // A stage holds one GEMM's A rows, then its B rows: an output GEMM's 64 + 128 or a reduction's 160 + 64.
  static constexpr int kOutStageRows = kWarpsM * kOutMI * 16 + kWarpsN * kOutNI * 8;
  static constexpr int kHaloStageRows = kWarpsM * kHaloMI * 16 + kWarpsN * kHaloNI * 8;
  static constexpr int kRowsPerStage = kOutStageRows > kHaloStageRows ? kOutStageRows : kHaloStageRows;
  // Double buffering: the copies of K chunk i + 1 are in flight while chunk i is multiplied.
  static constexpr int kStages = 2;
  static constexpr int kMaxTasks = 65535;  // tasks per tile at most (the chunk grows past it)
  // The grid runs bands of tiles, each band's tasks in turn (longest first): a band's x, kBandBytes at most,
  // stays in L2 (a third of an H100's) while all its tasks read it.
  static constexpr int64_t kBandBytes = int64_t(16) << 20;
  // Element stride of a staged row: a K chunk plus one 16-byte vector, which puts the 8 rows of a fragment
  // load in distinct banks (a row of 144 bytes is 36 words: rows 4 words apart modulo 32).
  FUSED_INCEPTION_HOST_DEVICE static constexpr int stage_stride(int element_bytes) {
    return k_chunk(element_bytes) + 16 / element_bytes;
  }
};
static_assert(FusedPlan::kWarpsM * FusedPlan::kWarpsN * 32 == FusedPlan::kThreads);
static_assert(FusedPlan::kWarpsM * FusedPlan::kOutMI * 16 == FusedPlan::kTilePixels);
static_assert(FusedPlan::kStageRows >= FusedPlan::kMaxHaloPixels);
static_assert(FusedPlan::kStageCols >= FusedPlan::kWarpsN * FusedPlan::kHaloNI * 8);

// The grid: one dimension of batch x tiles x tasks CTAs in bands of `band_tiles` image tiles (the last band
// the rest); within a band, task-major: every tile's first task (the longest), then every tile's second, ...
// So each band's x is read from DRAM once and then from L2 by its other tasks, and the longest CTAs still
// start first. Tile index: image * tiles_h * tiles_w + tile.
struct GridCta {
  int64_t tile_index;
  int64_t task_index;
};
FUSED_INCEPTION_HOST_DEVICE constexpr GridCta cta_of(int64_t cta, int64_t tiles, int64_t tasks, int64_t band_tiles) {
  const int64_t band = cta / (band_tiles * tasks), first_tile = band * band_tiles;
  const int64_t in_band = cta - first_tile * tasks;
  const int64_t band_size = tiles - first_tile < band_tiles ? tiles - first_tile : band_tiles;
  return GridCta{first_tile + in_band % band_size, in_band / band_size};
}
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t plan_band_tiles(int64_t tiles, int64_t in_channels, int element_bytes) {
  const int64_t tile_bytes = int64_t(FusedPlan::kTilePixels) * in_channels * element_bytes;
  int64_t band = FusedPlan::kBandBytes / (tile_bytes > 0 ? tile_bytes : 1);
  band = band < 1 ? 1 : band;
  const int64_t bands = (tiles + band - 1) / band;  // then equal bands, so the last is not a sliver
  return bands > 0 ? (tiles + bands - 1) / bands : 1;
}

// The recomputed reduction in shared memory: one row of `reduced_row_stride` elements per halo pixel. A row is
// the channels rounded up to whole 16-byte vectors, plus one vector where that count is even: an odd number of
// vectors puts the 8 consecutive pixels of an ldmatrix (the k x k GEMM reads its A fragments straight from
// these rows) in 8 distinct 16-byte bank groups. The padding past the channels may hold anything (the odd
// channel of a pair store lands there, and the last vector of a slice share_slice copies): every reader stays
// below `channels` (window table, WindowLoader).
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t reduced_row_stride(int64_t channels, int element_bytes) {
  const int64_t vector = 16 / element_bytes, vectors = (channels + vector - 1) / vector;
  return (vectors % 2 == 0 ? vectors + 1 : vectors) * vector;
}
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t halo_pixels(int64_t kernel) {
  return (FusedPlan::kTile + kernel - 1) * (FusedPlan::kTile + kernel - 1);
}
// The k x k GEMM's K, in whole K chunks, as 16-byte groups: the entries of its window table (one element
// offset into the reduction per group of K, -1 past K), which lets it read A without staging.
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t window_groups(int64_t kernel, int64_t channels, int element_bytes) {
  const int64_t k = kernel * kernel * channels;
  const int64_t chunk = FusedPlan::k_chunk(element_bytes);
  return (k + chunk - 1) / chunk * chunk / (16 / element_bytes);
}

// Thread-block clusters (sm_90) share the 3x3 branch's reduction: where a tile's 3x3 output channels take
// 2 to 8 tasks, the launch runs clusters of that many CTAs, which the grid fills with consecutive tasks of one
// tile (the 3x3 ones first, task_of), and each 3x3 CTA computes one slice of the reduced channels for all of
// them. Clusters group the other tasks too (each computes on its own) and pad the last group with CTAs that
// do nothing. 1: no clusters (a device without them, or 3x3 channels in one task or over 8).
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t plan_cluster_ctas(const InceptionShape& s, int64_t chunk,
                                                                bool device_has_clusters) {
  const int64_t tasks = (s.ch3x3 + chunk - 1) / chunk;
  return device_has_clusters && tasks >= 2 && tasks <= 8 ? tasks : 1;
}
// The reduced channels each CTA of such a cluster computes: an equal share, in whole 16-channel warp columns of
// the reduction GEMM (kHaloNI tiles of 8); the last CTAs may have fewer, or none.
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t reduction_slice(int64_t channels, int64_t ctas) {
  constexpr int64_t kWarpColumns = FusedPlan::kHaloNI * 8;
  const int64_t share = (channels + ctas - 1) / ctas;
  return (share + kWarpColumns - 1) / kWarpColumns * kWarpColumns;
}

// The block's six convolutions, in schema order; InceptionParams::weights is indexed by these.
enum WeightIndex : int { kW1 = 0, kW3r = 1, kW3 = 2, kW5r = 3, kW5 = 4, kWp = 5, kNumWeights = 6 };

// K of a convolution's GEMM (input channels x taps): the length of one output channel's weight row.
FUSED_INCEPTION_HOST_DEVICE constexpr int64_t weight_row_length(const InceptionShape& s, int index) {
  return index == kW3 ? s.k3 * s.k3 * s.ch3x3red : index == kW5 ? s.k5 * s.k5 * s.ch5x5red : s.in_channels;
}

// One convolution's parameters, read where PyTorch keeps them: no packed copy exists, so the kernel can never
// compute with anything but the parameters' current values. The weight is a GEMM operand [out][K], each
// output channel's row of K elements contiguous and `row_stride` elements after the previous one. K runs
// over (channel, tap) for a contiguous (OIHW) k x k weight and over (tap, channel) for a channels_last
// (OHWI) one. Rows are streamed as 16-byte copies, so they must start 16-byte aligned and K be whole
// vectors (true of every GoogLeNet block); the host copies any other weight for the call into rows
// zero-padded to whole vectors.
struct WeightView {
  const void* weight;
  const void* bias;    // [out], contiguous
  int64_t row_stride;  // elements
  int32_t taps_outer;  // K = (tap, channel): a channels_last k x k weight
  int32_t padding;
};

// Everything a launch needs, passed by value as the kernel's one parameter. The CuPy path builds the same
// bytes in Python (fused_inception/launch.py): change both together (a test compares them).
struct InceptionParams {
  const void* x;  // (N, Cin, H, W) with any strides
  void* out;      // (N, Cout, H, W) with any strides
  WeightView weights[kNumWeights];
  int64_t batch, height, width;
  int64_t x_stride[4];  // in elements, for N, C, H, W
  int64_t out_stride[4];
  InceptionShape shape;
  int32_t tiles_h, tiles_w;
  int32_t x_vectorized;      // x is read in 16-byte cp.async copies (channels contiguous and aligned)
  int32_t reduced_elements;  // shared-memory elements for the recomputed reduction (rows padded) or the pool halo
  int32_t channel_chunk;     // output channels per task (task_of)
  int32_t num_tasks;         // tasks per tile
  int32_t band_tiles;        // tiles per band of the grid (the last band may have fewer): cta_of
  int32_t cluster_ctas;      // CTAs a thread-block cluster, 1: no clusters (plan_cluster_ctas)
};

}  // namespace fused_inception
