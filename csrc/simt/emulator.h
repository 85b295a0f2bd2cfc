// The SIMT emulator: runs kernel source written against simt.h on the CPU, for tests.
//
// A launch runs its blocks on a few host threads; the threads of a block (of all blocks of a thread-block
// cluster, which run together) are fibers that switch only at barriers and warp collectives, in an order the
// launch chooses (forward, reverse, seeded shuffle). Between
// two such points a fiber runs alone, so a missing barrier shows up as output that depends on the order:
// run a launch in two orders and compare the bits (run_in_orders). Shared memory is a heap allocation per
// block, filled with 0xFF bytes (NaN in every float format) at block start; AddressSanitizer builds catch
// overruns of it and of global memory. Errors (a barrier some threads never reach, a collective some lanes
// never reach or reach with another operation, misaligned or non-shared addresses) throw simt::Error on
// the launching thread instead of hanging.
//
// Include simt.h, not this file.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace simt {

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct u32x4 {
  uint32_t x, y, z, w;
};

// 16-bit floats as bit patterns, converted like the device does (round to nearest even).
struct half {
  uint16_t bits;
};
struct bfloat16 {
  uint16_t bits;
};
uint16_t float_to_half_bits(float x);
float half_bits_to_float(uint16_t bits);
uint16_t float_to_bfloat16_bits(float x);
float bfloat16_bits_to_float(uint16_t bits);

inline float to_float(half x) { return half_bits_to_float(x.bits); }
inline float to_float(bfloat16 x) { return bfloat16_bits_to_float(x.bits); }
inline float to_float(float x) { return x; }
template <class T>
T from_float(float x);
template <>
inline half from_float<half>(float x) { return half{float_to_half_bits(x)}; }
template <>
inline bfloat16 from_float<bfloat16>(float x) { return bfloat16{float_to_bfloat16_bits(x)}; }
template <>
inline float from_float<float>(float x) { return x; }
inline uint32_t pack2(half lo, half hi) { return uint32_t(lo.bits) | (uint32_t(hi.bits) << 16); }
inline uint32_t pack2(bfloat16 lo, bfloat16 hi) { return uint32_t(lo.bits) | (uint32_t(hi.bits) << 16); }
// cvt.rna.tf32.f32: round to nearest, ties away from zero, keeping 10 mantissa bits.
uint32_t to_tf32(float x);
// A float as a TF32 mma operand: cvt.rna.tf32.f32's rounding without clearing the 13 low bits, which the
// tensor core ignores (mma's tf32_value drops them): half a TF32 ulp added to a finite value.
inline uint32_t round_tf32_operand_bits(uint32_t bits) {
  return (bits & 0x7f800000u) != 0x7f800000u ? bits + 0x1000u : bits;  // inf and NaN stay
}
// simt.h's distinct_copy: x (on the GPU, a register nvcc cannot merge with another copy).
inline float distinct_copy(float x) { return x; }
inline float round_tf32_operand(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  bits = round_tf32_operand_bits(bits);
  float rounded;
  std::memcpy(&rounded, &bits, 4);
  return rounded;
}

// An error the emulator detected in a kernel (or in its launch).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class FiberOrder { kForward, kReverse, kShuffle };
const char* to_string(FiberOrder order);

// When cp.async copies land in shared memory. The hardware may complete a copy at any moment between its
// issue and the cp_async_wait that retires its group; the emulator takes the two extremes. At the wait, a
// read of the destination before the wait sees stale bytes (a missing or too weak wait shows); at issue,
// a copy overwrites a buffer other threads may still be reading (a missing barrier before a refill shows).
enum class CopyLanding { kAtWait, kAtIssue };
const char* to_string(CopyLanding landing);

struct LaunchOptions {
  FiberOrder order = FiberOrder::kForward;  // order of the fibers of a block, and of the blocks
  uint64_t seed = 0;                        // for kShuffle
  CopyLanding copies = CopyLanding::kAtWait;
  int host_threads = 0;                     // 0: SIMT_HOST_THREADS, else the CPU count
  size_t shared_memory_limit = 227 * 1024;  // per block, static + dynamic (an H100's opt-in maximum)
};

// The options launches use when given none; tests set the order through it.
LaunchOptions& default_launch_options();
// Launches since the process started (a forward must be exactly one).
uint64_t launch_count();

// Runs `kernel` (a call of the kernel function with its arguments) over the grid, in thread-block clusters of
// `cluster` blocks (the grid a whole number of them; at most 8 blocks a cluster). A cluster's blocks run at
// once, their threads fibers of one host thread, so that each can wait for the others at cluster_sync and
// read and write their shared memory.
void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& kernel,
            const LaunchOptions& options = default_launch_options(), dim3 cluster = dim3{1, 1, 1});

// One way to schedule a launch: the fiber (and block) order, its seed for kShuffle, and when copies land.
// Named "forward", "reverse" or "shuffle:SEED", with "@issue" appended when copies land at issue
// ("reverse@issue"); parse_schedule also takes "shuffle" alone (then the seed is `default_seed`) and "@wait".
struct Schedule {
  FiberOrder order = FiberOrder::kForward;
  CopyLanding copies = CopyLanding::kAtWait;
  uint64_t seed = 0;
};
std::string to_string(const Schedule& schedule);
Schedule parse_schedule(const std::string& name, uint64_t default_seed);

// Racecheck: calls `launch_once` once per schedule and requires `outputs` to hold the same bits after each.
struct OutputSpan {
  const void* data;
  size_t bytes;
};
void run_schedules(const std::function<void(const LaunchOptions&)>& launch_once,
                   const std::vector<OutputSpan>& outputs, const std::vector<Schedule>& schedules);
// The same over fiber orders, copies landing at the wait, every shuffle seeded with `seed`.
void run_in_orders(const std::function<void(const LaunchOptions&)>& launch_once,
                   const std::vector<OutputSpan>& outputs, const std::vector<FiberOrder>& orders,
                   uint64_t seed = 0x5eed);

// Checked launches: `run_checked` runs a launch once per configured schedule and, with two or more, requires
// the same output bits from each (racecheck). One schedule (forward, copies at the wait) is the default.
void set_checked_schedules(const std::vector<Schedule>& schedules);
std::vector<Schedule> checked_schedules();
void run_checked(const std::function<void(const LaunchOptions&)>& launch_once, const std::vector<OutputSpan>& outputs);

namespace detail {

const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void* dynamic_shared();
void* block_static_shared(const void* site, size_t bytes, size_t alignment);
void check_shared(const void* address, size_t bytes, const char* what);
void barrier();
unsigned cluster_rank();
unsigned cluster_size();
void cluster_arrive();
void cluster_wait();
void* map_shared_rank(const void* address, unsigned rank);

// A warp collective: each lane deposits up to 64 bytes, the last lane to arrive runs `compute` over all
// 32 lanes' inputs, and every lane gets its output (up to 64 bytes). All lanes must call the same `kind`.
constexpr size_t kCollectiveBytes = 64;
using CollectiveIn = unsigned char[32][kCollectiveBytes];
using CollectiveFn = void (*)(const CollectiveIn& in, CollectiveIn& out);
void warp_collective(const char* kind, const void* in, size_t in_bytes, void* out, size_t out_bytes,
                     CollectiveFn compute);
void require_full_mask(unsigned mask, const char* what);

void cp_async(void* shared_dst, const void* global_src, int size, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending);

template <class T>
void check_shuffle_type() {
  static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 4 || sizeof(T) == 8),
                "shuffles move 4- or 8-byte trivially copyable values");
}

enum class ShuffleMode : int { kIndex, kUp, kDown, kXor };
struct ShuffleIn {
  unsigned char value[8];
  int operand;  // source lane, delta or xor mask
  int width;
  ShuffleMode mode;
};
void shuffle_compute(const CollectiveIn& in, CollectiveIn& out);

template <class T>
T shuffle(unsigned mask, T value, int operand, int width, ShuffleMode mode, const char* kind) {
  check_shuffle_type<T>();
  require_full_mask(mask, kind);
  ShuffleIn in{};
  std::memcpy(in.value, &value, sizeof(T));
  in.operand = operand;
  in.width = width;
  in.mode = mode;
  unsigned char out[8];
  warp_collective(kind, &in, sizeof(in), out, sizeof(out), &shuffle_compute);
  T result;
  std::memcpy(&result, out, sizeof(T));
  return result;
}

void vote_compute(const CollectiveIn& in, CollectiveIn& out);
unsigned ballot(unsigned mask, bool predicate, const char* kind);

void mma_f16_compute(const CollectiveIn& in, CollectiveIn& out);
void mma_bf16_compute(const CollectiveIn& in, CollectiveIn& out);
void mma_tf32_compute(const CollectiveIn& in, CollectiveIn& out);
void mma(const char* kind, CollectiveFn compute, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
         const float (&c)[4]);

template <int matrices, bool transposed>
void ldmatrix_compute(const CollectiveIn& in, CollectiveIn& out);
template <int matrices, bool transposed>
void ldmatrix(uint32_t (&r)[matrices], const void* row, const char* kind) {
  warp_collective(kind, &row, sizeof(row), r, sizeof(r), &ldmatrix_compute<matrices, transposed>);
}

}  // namespace detail

template <class T>
T* dynamic_shared() {
  return static_cast<T*>(detail::dynamic_shared());
}

// Thread-block clusters (sm_90), as simt.h's GPU versions: the block's rank in its cluster (%cluster_ctarank,
// the block's position in the cluster with x fastest), the cluster's block count (%cluster_nctarank), the
// address in block `rank`'s shared memory of what `p` addresses in this block's (mapa: distributed shared
// memory, read and written through the pointer), and the cluster barrier over every thread of the cluster:
// cluster_arrive (barrier.cluster.arrive.release; _relaxed: no ordering of this thread's accesses, the
// emulator runs both alike) and cluster_wait (barrier.cluster.wait.acquire) split it, cluster_sync is both.
// A block's shared memory exists only while it runs: no other block may touch it before a cluster barrier
// that block arrived at (it may not have started) or after it exits (a cluster barrier before the exit).
// The emulator reports the first at the mapping (a thread must have passed a cluster barrier to map another
// block's memory) and catches the second through the output (retire_shared).
inline unsigned cluster_rank() { return detail::cluster_rank(); }
inline unsigned cluster_size() { return detail::cluster_size(); }
template <class T>
T* map_shared_rank(T* p, unsigned rank) {
  return static_cast<T*>(detail::map_shared_rank(p, rank));
}
inline void cluster_arrive() { detail::cluster_arrive(); }
inline void cluster_arrive_relaxed() { detail::cluster_arrive(); }
inline void cluster_wait() { detail::cluster_wait(); }
inline void cluster_sync() {
  detail::cluster_arrive();
  detail::cluster_wait();
}

inline float negative_infinity() { return -HUGE_VALF; }
inline u32x4 load_128(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) throw Error("load_128: misaligned 16-byte access");
  u32x4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_128(void* p, u32x4 v) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) throw Error("store_128: misaligned 16-byte access");
  std::memcpy(p, &v, sizeof(v));
}
// max.NaN.{f16x2,bf16x2,f32} over the elements of a 16-byte vector of T: the larger of each pair, the
// canonical NaN (all mantissa bits set) where either is NaN. Of +0 and -0 either may come back (the tests
// do not rely on it).
template <class T>
inline u32x4 max_nan_128(u32x4 a, u32x4 b) {
  constexpr int kCount = 16 / int(sizeof(T));
  T x[kCount], y[kCount], r[kCount];
  std::memcpy(x, &a, 16);
  std::memcpy(y, &b, 16);
  for (int i = 0; i < kCount; ++i) {
    const float fx = to_float(x[i]), fy = to_float(y[i]);
    if (fx != fx || fy != fy) {
      const uint32_t nan = sizeof(T) == 2 ? 0x7fffu : 0x7fffffffu;
      std::memcpy(&r[i], &nan, sizeof(T));
    } else {
      r[i] = fx >= fy ? x[i] : y[i];
    }
  }
  u32x4 d;
  std::memcpy(&d, r, 16);
  return d;
}
template <class T>
inline u32x4 negative_infinity_128() {
  constexpr int kCount = 16 / int(sizeof(T));
  T v[kCount];
  for (int i = 0; i < kCount; ++i) v[i] = from_float<T>(-HUGE_VALF);
  u32x4 d;
  std::memcpy(&d, v, 16);
  return d;
}

// Two adjacent elements in one store (st.b32 of a packed pair, st.v2.f32), which must be aligned to its size.
template <class T>
inline void store_pair(T* p, float first, float second) {
  if (reinterpret_cast<uintptr_t>(p) % (2 * sizeof(T)) != 0) throw Error("store_pair: misaligned pair store");
  const T pair[2] = {from_float<T>(first), from_float<T>(second)};
  std::memcpy(p, pair, sizeof(pair));
}

inline void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  detail::mma("mma.m16n8k16.f16", &detail::mma_f16_compute, d, a, b, c);
}
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                              const float (&c)[4]) {
  detail::mma("mma.m16n8k16.bf16", &detail::mma_bf16_compute, d, a, b, c);
}
inline void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  detail::mma("mma.m16n8k8.tf32", &detail::mma_tf32_compute, d, a, b, c);
}

inline void ldmatrix_x1(uint32_t (&r)[1], const void* row) { detail::ldmatrix<1, false>(r, row, "ldmatrix.x1"); }
inline void ldmatrix_x2(uint32_t (&r)[2], const void* row) { detail::ldmatrix<2, false>(r, row, "ldmatrix.x2"); }
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { detail::ldmatrix<4, false>(r, row, "ldmatrix.x4"); }
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  detail::ldmatrix<1, true>(r, row, "ldmatrix.x1.trans");
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  detail::ldmatrix<2, true>(r, row, "ldmatrix.x2.trans");
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  detail::ldmatrix<4, true>(r, row, "ldmatrix.x4.trans");
}

inline void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  detail::cp_async(smem_dst, gmem_src, 16, src_bytes);
}
inline void cp_async_4(void* smem_dst, const void* gmem_src, int src_bytes) {
  detail::cp_async(smem_dst, gmem_src, 4, src_bytes);
}
inline void cp_async_commit() { detail::cp_async_commit(); }
template <int pending>
void cp_async_wait() {
  detail::cp_async_wait(pending);
}

}  // namespace simt

// CUDA's spellings, for kernel code.
#define threadIdx (::simt::detail::thread_idx())
#define blockIdx (::simt::detail::block_idx())
#define blockDim (::simt::detail::block_dim())
#define gridDim (::simt::detail::grid_dim())

inline void __syncthreads() { ::simt::detail::barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::simt::detail::require_full_mask(mask, "__syncwarp");
  ::simt::detail::warp_collective("__syncwarp", nullptr, 0, nullptr, 0,
                                  [](const ::simt::detail::CollectiveIn&, ::simt::detail::CollectiveIn&) {});
}
template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  return ::simt::detail::shuffle(mask, value, src_lane, width, ::simt::detail::ShuffleMode::kIndex, "__shfl_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  return ::simt::detail::shuffle(mask, value, int(delta), width, ::simt::detail::ShuffleMode::kUp, "__shfl_up_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  return ::simt::detail::shuffle(mask, value, int(delta), width, ::simt::detail::ShuffleMode::kDown,
                                 "__shfl_down_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  return ::simt::detail::shuffle(mask, value, lane_mask, width, ::simt::detail::ShuffleMode::kXor,
                                 "__shfl_xor_sync");
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::simt::detail::ballot(mask, predicate != 0, "__ballot_sync");
}
inline int __any_sync(unsigned mask, int predicate) {
  return ::simt::detail::ballot(mask, predicate != 0, "__any_sync") != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return ::simt::detail::ballot(mask, predicate != 0, "__all_sync") == 0xffffffffu;
}
