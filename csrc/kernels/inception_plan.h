// Host-side planning of a fused launch (inception_plan.cpp). Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/inception_params.h"

namespace fused_inception {

// The output channels per task: the widest spatial branch's in whole 128-channel output passes (one task per
// spatial branch: each recomputes its branch's reduction, so the fewer the better), one pass less at a time
// while that gives fewer than two CTAs per multiprocessor, down to one pass (a smaller chunk would shorten no
// CTA); grown past kMaxTasks tasks.
int64_t plan_channel_chunk(const InceptionShape& s, int64_t ctas_per_task, int sm_count);

// Shared memory of a launch: the A and B stages of the K chunks in flight, the recomputed reduction (its
// rows padded: reduced_row_stride) and the k x k GEMM's window table.
size_t fused_shared_bytes(const InceptionShape& s, int element_bytes);
int64_t reduced_elements(const InceptionShape& s, int element_bytes);

// Fills the fields of `p` that follow from the shape, pointers and strides (tiles, tasks, clusters, shared
// memory, how x and the weights are read); returns false, with the reason, for a case the fused kernel does not
// cover (the caller then runs the unfused path). `device_has_clusters`: the device launches thread-block
// clusters (compute capability 9.0; the emulator does).
bool plan_fused_launch(InceptionParams& p, int element_bytes, int sm_count, size_t shared_memory_limit,
                       bool device_has_clusters, std::string* why_not);

// CTAs of the planned launch's one-dimensional grid: every tile's tasks in groups of p.cluster_ctas (the last
// group padded to a whole cluster).
int64_t fused_grid_ctas(const InceptionParams& p);

}  // namespace fused_inception
