// The portability header: the only way kernels reach device-specific primitives.
//
// Under nvcc (__CUDACC__) and NVRTC (__CUDACC_RTC__) every primitive is the real thing (CUDA built-ins,
// inline PTX); this header and the kernels' own headers include no host-only header on that path. Under a host
// compiler the same kernel source runs on the SIMT emulator (emulator.h): threads are fibers, warp
// collectives are rendezvous with the PTX ISA's documented semantics. Kernel code therefore:
//   - wraps itself in `namespace SIMT_NS` (`gpu` or `emu`), so both builds link into one library;
//   - uses threadIdx/blockIdx/blockDim/gridDim, __syncthreads, __syncwarp and the *_sync shuffles and votes
//     with their CUDA spelling, and the simt:: functions below for everything else (shared memory, mma,
//     ldmatrix, cp.async, 16-byte accesses, half/bf16/tf32 conversions);
//   - contains no inline asm and no other CUDA header.
// docs/simt-emulator.md says more, including what the emulator cannot tell.
#pragma once

#include "simt/integers.h"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#if !defined(__CUDACC_RTC__)  // host code: launches and their checks (NVRTC compiles device code only)
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

// Every CUDA call and launch is checked; a failure becomes an exception naming the call.
#define SIMT_CUDA_CHECK(expr)                                                                          \
  do {                                                                                                 \
    const cudaError_t simt_status = (expr);                                                            \
    if (simt_status != cudaSuccess) {                                                                  \
      throw std::runtime_error(std::string(#expr " failed: ") + cudaGetErrorString(simt_status));     \
    }                                                                                                  \
  } while (0)
// Launches `kernel` on the stream `context` and checks the launch.
#define SIMT_LAUNCH(kernel, grid, block, shared_bytes, context, ...) \
  do {                                                               \
    kernel<<<grid, block, shared_bytes, context>>>(__VA_ARGS__);     \
    SIMT_CUDA_CHECK(cudaGetLastError());                             \
  } while (0)
// The same in thread-block clusters of `cluster` blocks (sm_90; the grid a whole number of clusters).
#define SIMT_LAUNCH_CLUSTER(kernel, grid, cluster, block, shared_bytes, context, ...)          \
  do {                                                                                      \
    const ::dim3 simt_cluster = (cluster);                                                  \
    cudaLaunchAttribute simt_attribute{};                                                   \
    simt_attribute.id = cudaLaunchAttributeClusterDimension;                                \
    simt_attribute.val.clusterDim.x = simt_cluster.x;                                       \
    simt_attribute.val.clusterDim.y = simt_cluster.y;                                       \
    simt_attribute.val.clusterDim.z = simt_cluster.z;                                       \
    cudaLaunchConfig_t simt_config{};                                                       \
    simt_config.gridDim = (grid);                                                           \
    simt_config.blockDim = (block);                                                         \
    simt_config.dynamicSmemBytes = (shared_bytes);                                          \
    simt_config.stream = (context);                                                         \
    simt_config.attrs = &simt_attribute;                                                    \
    simt_config.numAttrs = 1;                                                               \
    SIMT_CUDA_CHECK(cudaLaunchKernelEx(&simt_config, kernel, __VA_ARGS__));                 \
  } while (0)
#endif

#define SIMT_NS gpu
#define SIMT_GLOBAL __global__
#define SIMT_DEVICE __device__ __forceinline__
#define SIMT_HOST_DEVICE __host__ __device__ __forceinline__
#define SIMT_LAUNCH_BOUNDS(threads, min_blocks) __launch_bounds__(threads, min_blocks)
// Fully unrolls a loop with a compile-time trip count, so register arrays it indexes stay in registers.
#define SIMT_UNROLL _Pragma("unroll")
// A statically sized shared-memory array, one per block.
#define SIMT_SHARED_ARRAY(type, name, count) __shared__ __align__(16) type name[count]
// Tells the compiler a condition holds (what the launch guarantees, such as the block size), so that it can
// fold the tests that follow from it.
#define SIMT_ASSUME(condition) __builtin_assume(condition)

namespace simt {

using half = __half;
using bfloat16 = __nv_bfloat16;
using u32x4 = uint4;
using dim3 = ::dim3;
#if !defined(__CUDACC_RTC__)
using LaunchContext = cudaStream_t;  // what a launcher receives: the stream

// Allows `kernel` at least `bytes` of dynamic shared memory on the current device (past the default 48 KB).
// The attribute only ever grows, and is set under a lock: lowering it per launch would let one host thread
// shrink it between another's set and launch.
template <class Kernel>
inline void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> allowed;  // (kernel, device) -> bytes allowed
  int device = 0;
  SIMT_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  size_t& current = allowed[{reinterpret_cast<const void*>(kernel), device}];
  if (bytes > current) {
    SIMT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    current = bytes;
  }
}

// Whether `kernel`'s image for the current device was compiled for sm_90 or later, so that its cluster
// primitives are real: an image JIT-compiled from compute_80 PTX sees clusters of one block (cluster_size()
// is 1), and a cluster launch would only constrain where its CTAs run. Read once per kernel and device.
template <class Kernel>
inline bool compiled_for_clusters(Kernel kernel) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, bool> known;  // (kernel, device) -> compiled for clusters
  int device = 0;
  SIMT_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), device);
  const auto found = known.find(key);
  if (found != known.end()) return found->second;
  cudaFuncAttributes attributes{};
  SIMT_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  return known[key] = attributes.ptxVersion >= 90;
}
#endif

// Dynamic shared memory of the launch, 16-byte aligned.
template <class T>
SIMT_DEVICE T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char simt_dynamic_shared_memory[];
  return reinterpret_cast<T*>(simt_dynamic_shared_memory);
}

SIMT_HOST_DEVICE float to_float(half x) { return __half2float(x); }
SIMT_HOST_DEVICE float to_float(bfloat16 x) { return __bfloat162float(x); }
SIMT_HOST_DEVICE float to_float(float x) { return x; }
template <class T>
SIMT_HOST_DEVICE T from_float(float x);
template <>
SIMT_HOST_DEVICE half from_float<half>(float x) { return __float2half_rn(x); }
template <>
SIMT_HOST_DEVICE bfloat16 from_float<bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
SIMT_HOST_DEVICE float from_float<float>(float x) { return x; }

// Two 16-bit values in one 32-bit register, `lo` in the low half (the mma/ldmatrix fragment order).
SIMT_DEVICE uint32_t pack2(half lo, half hi) {
  return uint32_t(__half_as_ushort(lo)) | (uint32_t(__half_as_ushort(hi)) << 16);
}
SIMT_DEVICE uint32_t pack2(bfloat16 lo, bfloat16 hi) {
  return uint32_t(__bfloat16_as_ushort(lo)) | (uint32_t(__bfloat16_as_ushort(hi)) << 16);
}

// cvt.rna.tf32.f32: round to nearest (ties away from zero) to TF32, returned in a 32-bit register.
SIMT_DEVICE uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
// A float as a TF32 mma operand, rounded to nearest (ties away from zero) like cvt.rna.tf32.f32 but without
// its final clearing of the 13 low bits, which the tensor core ignores: half a TF32 ulp added to a finite
// value (two instructions, FSETP and IADD, where cvt.rna takes three). nvcc compiles cvt.rna feeding an
// HMMA.1688 the same way (it drops the clearing LOP3). Inf and NaN stay as they are.
SIMT_DEVICE uint32_t round_tf32_operand_bits(uint32_t bits) {
  return fabsf(__uint_as_float(bits)) < __int_as_float(0x7f800000) ? bits + 0x1000u : bits;
}
SIMT_DEVICE float round_tf32_operand(float x) { return __uint_as_float(round_tf32_operand_bits(__float_as_uint(x))); }

// Thread-block clusters (sm_90): the block's rank in its cluster, the cluster's block count, the generic
// address in block `rank`'s shared memory of what `p` addresses in this block's (mapa: distributed shared
// memory, read and written through the pointer), and the cluster barrier over every thread of the cluster,
// which also orders their memory accesses: cluster_arrive (release; _relaxed: no ordering) and cluster_wait
// (acquire) split it, cluster_sync is both. All threads of a warp call them together (.aligned). A block's
// shared memory exists only while it runs: no other block may touch it before a cluster barrier that block
// arrived at (it may not have started) or after it exits (a cluster barrier before the exit). Built for an
// earlier architecture, every launch is a cluster of one block.
SIMT_DEVICE unsigned cluster_rank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned rank;
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
#else
  return 0;
#endif
}
SIMT_DEVICE unsigned cluster_size() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned size;
  asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(size));
  return size;
#else
  return 1;
#endif
}
template <class T>
SIMT_DEVICE T* map_shared_rank(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t mapped;
  asm("mapa.u64 %0, %1, %2;" : "=l"(mapped) : "l"(reinterpret_cast<uint64_t>(p)), "r"(rank));
  return reinterpret_cast<T*>(mapped);
#else
  if (rank != 0) __trap();
  return p;
#endif
}
SIMT_DEVICE void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
SIMT_DEVICE void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
SIMT_DEVICE void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
  __syncthreads();
#endif
}
SIMT_DEVICE void cluster_sync() {
  cluster_arrive();
  cluster_wait();
}

SIMT_DEVICE float negative_infinity() { return __int_as_float(int(0xff800000u)); }
// x, in a register of its own: nvcc cannot see that two such copies are equal, so it keeps them in two
// registers rather than sharing one and copying it apart later (the accumulators that start at one bias:
// sharing put 60-70 moves around the predicated mma of each pass's last K step).
SIMT_DEVICE float distinct_copy(float x) {
  float r;
  asm volatile("mov.b32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}
SIMT_DEVICE u32x4 load_128(const void* p) { return *reinterpret_cast<const uint4*>(p); }
SIMT_DEVICE void store_128(void* p, u32x4 v) { *reinterpret_cast<uint4*>(p) = v; }
// max.NaN.{f16x2,bf16x2,f32} (sm_80) over the four 32-bit words of a 16-byte vector of T: the larger of each
// pair of elements, a canonical NaN where either is NaN (PyTorch's max-pool lets a NaN win).
SIMT_DEVICE uint32_t max_nan_word(uint32_t a, uint32_t b, half) {
  uint32_t d;
  asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
SIMT_DEVICE uint32_t max_nan_word(uint32_t a, uint32_t b, bfloat16) {
  uint32_t d;
  asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
SIMT_DEVICE uint32_t max_nan_word(uint32_t a, uint32_t b, float) {
  float d;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(d) : "f"(__uint_as_float(a)), "f"(__uint_as_float(b)));
  return __float_as_uint(d);
}
template <class T>
SIMT_DEVICE u32x4 max_nan_128(u32x4 a, u32x4 b) {
  return make_uint4(max_nan_word(a.x, b.x, T{}), max_nan_word(a.y, b.y, T{}), max_nan_word(a.z, b.z, T{}),
                    max_nan_word(a.w, b.w, T{}));
}
// A 16-byte vector of T's -infinity.
SIMT_DEVICE uint32_t negative_infinity_word(half) { return 0xfc00fc00u; }
SIMT_DEVICE uint32_t negative_infinity_word(bfloat16) { return 0xff80ff80u; }
SIMT_DEVICE uint32_t negative_infinity_word(float) { return 0xff800000u; }
template <class T>
SIMT_DEVICE u32x4 negative_infinity_128() {
  const uint32_t w = negative_infinity_word(T{});
  return make_uint4(w, w, w, w);
}

// Two adjacent elements in one store (4 bytes of 16-bit elements, 8 of floats), aligned to the pair's size.
SIMT_DEVICE void store_pair(half* p, float first, float second) {
  *reinterpret_cast<uint32_t*>(p) = pack2(__float2half_rn(first), __float2half_rn(second));
}
SIMT_DEVICE void store_pair(bfloat16* p, float first, float second) {
  *reinterpret_cast<uint32_t*>(p) = pack2(__float2bfloat16_rn(first), __float2bfloat16_rn(second));
}
SIMT_DEVICE void store_pair(float* p, float first, float second) {
  *reinterpret_cast<float2*>(p) = make_float2(first, second);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32: d = a * b + c for a warp.
SIMT_DEVICE void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}
SIMT_DEVICE void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                   const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
SIMT_DEVICE void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16: lane 8*i + r gives the address of row r of
// matrix i (16 bytes, 16-byte aligned, in shared memory).
SIMT_DEVICE uint32_t smem_address(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
SIMT_DEVICE void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(smem_address(row)));
}
SIMT_DEVICE void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(row)));
}
SIMT_DEVICE void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}
SIMT_DEVICE void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];"
               : "=r"(r[0])
               : "r"(smem_address(row)));
}
SIMT_DEVICE void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(row)));
}
SIMT_DEVICE void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(row)));
}

// cp.async.cg.shared.global [dst], [src], 16, src_bytes: copies src_bytes (0..16) and zero-fills the rest
// of the 16 bytes; both addresses 16-byte aligned. Completes at a later cp_async_wait.
SIMT_DEVICE void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_address(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
// cp.async.ca.shared.global [dst], [src], 4, src_bytes: the 4-byte form (for unaligned channel counts).
SIMT_DEVICE void cp_async_4(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_address(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
// "memory" clobbers: the compiler must not move shared-memory accesses across the asynchronous copies.
SIMT_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most `pending` committed groups of this thread are still in flight.
template <int pending>
SIMT_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory");
}

}  // namespace simt

#else  // the SIMT emulator

#include "simt/emulator.h"

namespace simt {
using LaunchContext = const LaunchOptions&;  // what a launcher receives: the emulator's launch options
template <class Kernel>
inline void allow_shared_memory(Kernel, size_t) {}  // the emulator's limit is LaunchOptions::shared_memory_limit
template <class Kernel>
inline bool compiled_for_clusters(Kernel) {
  return true;  // the emulator runs every kernel's cluster primitives
}
}  // namespace simt

#define SIMT_LAUNCH(kernel, grid, block, shared_bytes, context, ...) \
  ::simt::launch(grid, block, shared_bytes, [&] { kernel(__VA_ARGS__); }, context)
#define SIMT_LAUNCH_CLUSTER(kernel, grid, cluster, block, shared_bytes, context, ...) \
  ::simt::launch(grid, block, shared_bytes, [&] { kernel(__VA_ARGS__); }, context, cluster)
#define SIMT_NS emu
#define SIMT_GLOBAL
#define SIMT_DEVICE inline
#define SIMT_HOST_DEVICE inline
#define SIMT_LAUNCH_BOUNDS(threads, min_blocks)
#define SIMT_UNROLL
// The emulator checks what the GPU build assumes.
#define SIMT_ASSUME(condition) \
  ((condition) ? void(0) : throw ::simt::Error("SIMT_ASSUME failed: " #condition))
#define SIMT_SHARED_ARRAY(type, name, count)                                          \
  static const char name##_simt_site = 0;                                             \
  type* const name = static_cast<type*>(::simt::detail::block_static_shared(          \
      &name##_simt_site, sizeof(type) * static_cast<size_t>(count), alignof(type) < 16 ? 16 : alignof(type)))

#endif

namespace simt {
constexpr int kWarpSize = 32;
}  // namespace simt
