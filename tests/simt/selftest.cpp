// Self-test of the SIMT emulator, torch-free, built with AddressSanitizer by tests/test_simt.py:
//   selftest clean             every check that must pass (conversions, primitives, GEMM, error reports, and
//                              the racecheck: racy kernels that only copies landing at issue, or only
//                              shuffled fiber orders, expose)
//   selftest global_overrun    a planted off-by-one in global memory: AddressSanitizer must abort
//   selftest shared_overrun    the same in dynamic shared memory
//   selftest cluster_exit      a block reads another's shared memory after that block exited (no cluster
//                              barrier before the exit): AddressSanitizer must abort
// Prints one line per check; exit code 0 when all pass.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/test_kernels_api.h"
#include "simt/simt.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Runs `body` and reports whether it threw a simt::Error whose message contains `expected`.
void expect_error(const std::function<void()>& body, const std::string& expected, const std::string& what) {
  try {
    body();
    check(false, what + " (no error raised)");
  } catch (const simt::Error& e) {
    const bool ok = std::string(e.what()).find(expected) != std::string::npos;
    check(ok, what + (ok ? "" : std::string(" (message: ") + e.what() + ")"));
  }
}

namespace fi = fused_inception::emu::test_kernels;
using simt::LaunchOptions;

void test_conversions() {
  // Half: every bit pattern through float and back, and random floats against the compiler's _Float16.
  bool half_ok = true;
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float f = simt::half_bits_to_float(uint16_t(bits));
    _Float16 h;
    const uint16_t b16 = uint16_t(bits);
    std::memcpy(&h, &b16, 2);
    if (!std::isnan(f) && (f != float(h) || simt::float_to_half_bits(f) != bits)) half_ok = false;
    if (std::isnan(f) != std::isnan(float(h))) half_ok = false;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::ldexp(unit(rng), int(rng() % 50) - 30);
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t expected;
    std::memcpy(&expected, &h, 2);
    if (simt::float_to_half_bits(f) != expected) half_ok = false;
  }
  check(half_ok, "half conversions match _Float16 (all 65536 patterns; 200000 random floats incl. subnormals)");
  // bfloat16: ties go to even, NaN stays NaN.
  auto bf = [](uint32_t x) {
    float f;
    std::memcpy(&f, &x, 4);
    return simt::float_to_bfloat16_bits(f);
  };
  check(bf(0x3f808000u) == 0x3f80 && bf(0x3f818000u) == 0x3f82 && bf(0x3f808001u) == 0x3f81 &&
            bf(0x7f7fffffu) == 0x7f80 && bf(0x7fc00001u) == 0x7fff,
        "bfloat16 rounds to nearest even, overflows to inf, keeps NaN");
  auto tf32 = [](uint32_t x) {
    float f;
    std::memcpy(&f, &x, 4);
    return simt::to_tf32(f);
  };
  check(tf32(0x3f801000u) == 0x3f802000u && tf32(0x3f800fffu) == 0x3f800000u && tf32(0xbf801000u) == 0xbf802000u,
        "tf32 rounds to nearest, ties away from zero");
}

template <class T>
void test_mma(fused_inception::TestDtype dtype, int k, const char* name) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(-2.0f, 2.0f);
  std::vector<T> a(16 * k), b(k * 8);
  std::vector<double> a_value(16 * k), b_value(k * 8);
  auto fill = [&](std::vector<T>& v, std::vector<double>& value) {
    for (size_t i = 0; i < v.size(); ++i) {
      if constexpr (std::is_same_v<T, float>) {
        uint32_t bits = simt::to_tf32(unit(rng));
        std::memcpy(&v[i], &bits, 4);
        value[i] = v[i];
      } else {
        v[i] = simt::from_float<T>(unit(rng));
        value[i] = simt::to_float(v[i]);
      }
    }
  };
  fill(a, a_value);
  fill(b, b_value);
  std::vector<float> c(16 * 8), d(16 * 8, NAN);
  for (auto& x : c) x = unit(rng);
  fi::mma(dtype, a.data(), b.data(), c.data(), d.data(), LaunchOptions{});
  bool ok = true;
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double sum = 0;
      for (int kk = 0; kk < k; ++kk) sum += a_value[i * k + kk] * b_value[kk * 8 + j];
      ok = ok && d[i * 8 + j] == float(sum + c[i * 8 + j]);
    }
  }
  check(ok, std::string(name) + " equals a triple loop (fragments built from the PTX layouts)");
}

void test_ldmatrix() {
  std::vector<uint16_t> m(4 * 64);
  for (size_t i = 0; i < m.size(); ++i) m[i] = uint16_t(i * 37 + 11);
  bool ok = true;
  for (int count : {1, 2, 4}) {
    for (bool transposed : {false, true}) {
      std::vector<uint32_t> out(32 * count);
      fi::ldmatrix(count, transposed, m.data(), out.data(), LaunchOptions{});
      for (int lane = 0; lane < 32; ++lane) {
        for (int i = 0; i < count; ++i) {
          const int outer = lane / 4, inner = 2 * (lane % 4);
          auto at = [&](int r, int c) { return uint32_t(m[i * 64 + r * 8 + c]); };
          const uint32_t expected = transposed ? at(inner, outer) | at(inner + 1, outer) << 16
                                               : at(outer, inner) | at(outer, inner + 1) << 16;
          ok = ok && out[lane * count + i] == expected;
        }
      }
    }
  }
  check(ok, "ldmatrix x1/x2/x4 (and .trans) follow the fragment layout");
}

void test_gemm() {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const int64_t m = 70, n = 72, k = 40;
  std::vector<simt::half> a(m * k), b(k * n);
  for (auto& x : a) x = simt::from_float<simt::half>(unit(rng));
  for (auto& x : b) x = simt::from_float<simt::half>(unit(rng));
  std::vector<float> c(m * n, NAN);
  fi::gemm(fused_inception::TestDtype::kHalf, a.data(), b.data(), c.data(), m, n, k, LaunchOptions{});
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t kk = 0; kk < k; ++kk) sum += double(simt::to_float(a[i * k + kk])) * simt::to_float(b[kk * n + j]);
      worst = std::max(worst, std::fabs(sum - c[i * n + j]));
    }
  }
  check(worst < 1e-5, "cp.async + ldmatrix + mma GEMM 70x72x40 matches a scalar loop (max error " +
                          std::to_string(worst) + ")");
}

// Emulator-only kernels for its error reports.
namespace emu_only {
void early_exit_kernel() {
  if (threadIdx.x == 3) return;  // never reaches the barrier the others wait at
  __syncthreads();
}
void divergent_kernel() {
  if (threadIdx.x % 2) {
    (void)__shfl_sync(0xffffffffu, 1, 0);
  } else {
    (void)__ballot_sync(0xffffffffu, 1);
  }
}
void partial_collective_kernel() {
  if (threadIdx.x < 16) (void)__shfl_xor_sync(0xffffffffu, 1, 1);
}
void misaligned_kernel(float* p) { simt::store_128(p + 1, simt::u32x4{}); }
// Block 1 of a cluster of 2 skips the cluster barrier block 0 waits at.
void cluster_early_exit_kernel() {
  if (simt::cluster_rank() == 1) return;
  simt::cluster_sync();
}
void map_rank_kernel(unsigned rank) {
  float* slots = simt::dynamic_shared<float>();
  (void)simt::map_shared_rank(slots, rank);
}
void map_global_kernel(float* global) { (void)simt::map_shared_rank(global, 0); }
// Stores into the other block of its cluster before any cluster barrier: that block may not have started.
void store_before_start_kernel() {
  float* slots = simt::dynamic_shared<float>();
  simt::map_shared_rank(slots, 1 - simt::cluster_rank())[threadIdx.x] = 1.0f;
  simt::cluster_sync();
}
// Block 1 of a cluster of 2 waits at the cluster barrier while block 0 passes a __syncthreads of its own, then
// stores into block 1's shared memory (both arrived at a first cluster barrier: block 1 has started): block
// 0's barrier must not release block 1 early.
void cluster_and_block_barriers_kernel(float* out) {
  float* slots = simt::dynamic_shared<float>();
  const int t = threadIdx.x, n = int(blockDim.x);
  simt::cluster_arrive_relaxed();
  if (simt::cluster_rank() == 0) {
    slots[t] = float(t);
    __syncthreads();
    simt::cluster_wait();
    simt::map_shared_rank(slots, 1)[t] = slots[(t + 1) % n];
  } else {
    simt::cluster_wait();
  }
  simt::cluster_sync();
  if (simt::cluster_rank() == 1) out[t] = slots[t];
}

// Refills its own shared slot with cp.async while a neighbour may still read it: the barrier that should
// separate the neighbour's read from the refill (`with_barrier`) is missing. Every read precedes every wait,
// so copies landing at the wait hide the race in every fiber order; copies landing at issue expose it.
void refill_kernel(const float* in, const float* next, float* out, int n, bool with_barrier) {
  float* slots = simt::dynamic_shared<float>();
  const int t = threadIdx.x;
  slots[t] = in[t];
  __syncthreads();
  const float neighbour = slots[(t + 1) % n];
  if (with_barrier) __syncthreads();
  simt::cp_async_4(slots + t, next + t, 4);
  simt::cp_async_commit();
  __syncthreads();
  simt::cp_async_wait<0>();
  out[t] = neighbour + slots[t];
}

// Thread 3i + 1 reads the slots of threads 3i and 3i + 2 without the barrier after their writes
// (`with_barrier`). Forward and reverse order both run exactly one of the two writers first, so they agree;
// only other orders (shuffles) expose the race.
void middle_kernel(float* out, bool with_barrier) {
  float* slots = simt::dynamic_shared<float>();
  const int t = threadIdx.x;
  slots[t] = 0.0f;
  __syncthreads();
  if (t % 3 != 1) slots[t] = 1.0f;
  if (with_barrier) __syncthreads();
  out[t] = t % 3 == 1 ? slots[t - 1] + slots[t + 1] : 0.0f;
}
// The cluster barrier split: each block stores its slot, arrives, then waits and reads the next block's slot;
// the last cluster_sync keeps every block alive until the others have read it.
void split_cluster_barrier_kernel(float* out) {
  float* slots = simt::dynamic_shared<float>();
  const int t = threadIdx.x;
  const unsigned rank = simt::cluster_rank(), next = (rank + 1) % simt::cluster_size();
  slots[t] = float(100 * rank + t);
  simt::cluster_arrive();
  const float local = slots[t] * 2.0f;  // work between the arrive and the wait
  simt::cluster_wait();
  out[rank * blockDim.x + t] = simt::map_shared_rank(slots, next)[t] + local;
  simt::cluster_sync();
}
void double_arrive_kernel() {
  simt::cluster_arrive();
  simt::cluster_arrive();
}
void wait_without_arrive_kernel() { simt::cluster_wait(); }
}  // namespace emu_only

void test_error_reports() {
  expect_error([] { simt::launch(1, 64, 0, [] { emu_only::early_exit_kernel(); }); },
               "wait at __syncthreads, which 1 never reach", "a barrier one thread never reaches is reported");
  expect_error([] { simt::launch(1, 32, 0, [] { emu_only::divergent_kernel(); }); }, "divergent warp collectives",
               "lanes calling different collectives are reported");
  expect_error([] { simt::launch(1, 32, 0, [] { emu_only::partial_collective_kernel(); }); },
               "lane(s) wait at __shfl_xor_sync, which the other lanes never reach",
               "a collective half the warp never reaches is reported");
  std::vector<float> buffer(16);
  expect_error([&] { simt::launch(1, 32, 0, [&] { emu_only::misaligned_kernel(buffer.data()); }); },
               "misaligned 16-byte access", "a misaligned 16-byte store is reported");
  LaunchOptions small;
  small.shared_memory_limit = 128;  // the kernel asks for 64 floats
  std::vector<float> in(64, 1.0f), out(64);
  expect_error([&] { fi::neighbour(in.data(), out.data(), 64, true, small); }, "bytes of shared memory, over the limit",
               "shared memory over the limit is reported");
}

using simt::CopyLanding;
using simt::dim3;
using simt::FiberOrder;
using simt::Schedule;

// Clusters: the exchange through distributed shared memory in every order and in 1-D and 2-D clusters, each
// of its two cluster barriers left out in turn (caught by the racecheck), and the emulator's error reports.
void test_clusters() {
  constexpr int n = 64;  // ClusterExchange::kThreads
  for (const auto& shape : std::vector<std::pair<dim3, dim3>>{{{4, 2}, {2, 2}}, {{8, 1}, {4, 1}}, {{3, 1}, {1, 1}}}) {
    const dim3 grid = shape.first, cluster = shape.second;
    const int blocks = int(grid.x * grid.y), size = int(cluster.x * cluster.y);
    std::vector<float> in(size_t(blocks) * n), out(4 * in.size(), NAN);
    for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 1000) * 0.5f - 7.0f;
    const std::vector<simt::OutputSpan> outputs{{out.data(), out.size() * sizeof(float)}};
    auto run = [&](int flags) {
      return [&, flags](const LaunchOptions& o) {
        fi::cluster_exchange(in.data(), out.data(), grid.x, grid.y, cluster.x, cluster.y, flags, o);
      };
    };
    const std::string name = "a " + std::to_string(cluster.x) + "x" + std::to_string(cluster.y) + " cluster";
    simt::run_in_orders(run(fused_inception::ClusterExchangeBarriers::kBoth), outputs,
                        {FiberOrder::kForward, FiberOrder::kReverse, FiberOrder::kShuffle});
    bool ok = true;
    for (int by = 0; by < int(grid.y); ++by) {
      for (int bx = 0; bx < int(grid.x); ++bx) {
        // rank: the block's position in its cluster, x fastest; the blocks of the previous and next rank
        const int rx = bx % int(cluster.x), ry = by % int(cluster.y), rank = rx + ry * int(cluster.x);
        auto block_of = [&](int r) {
          return (by - ry + r / int(cluster.x)) * int(grid.x) + bx - rx + r % int(cluster.x);
        };
        const int block = by * int(grid.x) + bx, previous = block_of((rank + size - 1) % size),
                  next = block_of((rank + 1) % size);
        for (int t = 0; t < n; ++t) {
          const size_t i = size_t(block) * n + t, row = in.size();
          ok = ok && out[i] == 2.0f * in[size_t(previous) * n + t] && out[row + i] == in[size_t(next) * n + (t + 1) % n] &&
               out[2 * row + i] == float(rank) && out[3 * row + i] == float(size);
        }
      }
    }
    check(ok, name + ": remote stores and loads through mapa, ranks and size, identical in three orders");
    if (size == 1) continue;
    expect_error([&] { simt::run_in_orders(run(fused_inception::ClusterExchangeBarriers::kLast), outputs,
                                           {FiberOrder::kForward, FiberOrder::kReverse}); },
                 "differs between fiber orders", name + ": loads before the barrier after remote stores are caught");
#if !defined(__SANITIZE_ADDRESS__)  // under AddressSanitizer the read aborts the program: mode cluster_exit
    expect_error([&] { simt::run_in_orders(run(fused_inception::ClusterExchangeBarriers::kFirst), outputs,
                                           {FiberOrder::kForward, FiberOrder::kReverse}); },
                 "differs between fiber orders",
                 name + ": a block exiting while another still reads its shared memory is caught");
#endif
  }
  expect_error([] { simt::launch(3, 32, 0, [] {}, LaunchOptions{}, dim3(2)); },
               "the grid (3,1,1) is not a whole number of clusters (2,1,1)", "a grid of partial clusters is refused");
  expect_error([] { simt::launch(16, 32, 0, [] {}, LaunchOptions{}, dim3(16)); }, "a cluster must have 1 to 8 blocks",
               "a cluster over the portable size is refused");
  expect_error([] { simt::launch(2, 64, 0, [] { emu_only::cluster_early_exit_kernel(); }, LaunchOptions{}, dim3(2)); },
               "wait at a cluster barrier, which 64 never reach", "a cluster barrier one block never reaches is reported");
  expect_error([] { simt::launch(2, 32, 16, [] { emu_only::map_rank_kernel(2); }, LaunchOptions{}, dim3(2)); },
               "mapa: rank 2 is not a block of the cluster (2 blocks)", "mapa to a rank outside the cluster is reported");
  std::vector<float> barrier_out(64, NAN);
  simt::run_in_orders(
      [&](const LaunchOptions& o) {
        simt::launch(2, 64, 64 * sizeof(float), [&] { emu_only::cluster_and_block_barriers_kernel(barrier_out.data()); },
                     o, dim3(2));
      },
      {{barrier_out.data(), barrier_out.size() * sizeof(float)}}, {FiberOrder::kForward, FiberOrder::kReverse});
  bool barrier_ok = true;
  for (int t = 0; t < 64; ++t) barrier_ok = barrier_ok && barrier_out[t] == float((t + 1) % 64);
  check(barrier_ok, "a block's __syncthreads does not release another block of its cluster");
  std::vector<float> split_out(3 * 32, NAN);
  simt::run_in_orders(
      [&](const LaunchOptions& o) {
        simt::launch(3, 32, 32 * sizeof(float), [&] { emu_only::split_cluster_barrier_kernel(split_out.data()); }, o,
                     dim3(3));
      },
      {{split_out.data(), split_out.size() * sizeof(float)}},
      {FiberOrder::kForward, FiberOrder::kReverse, FiberOrder::kShuffle});
  bool split_ok = true;
  for (int rank = 0; rank < 3; ++rank) {
    for (int t = 0; t < 32; ++t) {
      split_ok = split_ok && split_out[rank * 32 + t] == float(100 * ((rank + 1) % 3) + t) + 2.0f * float(100 * rank + t);
    }
  }
  check(split_ok, "a cluster barrier split into arrive and wait orders the stores before the arrive");
  expect_error([] { simt::launch(2, 32, 0, [] { emu_only::double_arrive_kernel(); }, LaunchOptions{}, dim3(2)); },
               "a second arrive before the wait", "two cluster arrives without a wait are reported");
  expect_error([] { simt::launch(2, 32, 0, [] { emu_only::wait_without_arrive_kernel(); }, LaunchOptions{}, dim3(2)); },
               "no arrive before it", "a cluster wait without an arrive is reported");
  expect_error([] { simt::launch(2, 32, 128, [] { emu_only::store_before_start_kernel(); }, LaunchOptions{}, dim3(2)); },
               "mapped before this thread passed a cluster barrier",
               "a store into another block before a cluster barrier (it may not have started) is reported");
  std::vector<float> global(4);
  expect_error([&] { simt::launch(1, 32, 16, [&] { emu_only::map_global_kernel(global.data()); }); },
               "mapa: address", "mapa of an address outside shared memory is reported");
}

void test_copy_landing() {
  constexpr int n = 64;
  std::vector<float> in(n), next(n), out(n, NAN);
  for (int i = 0; i < n; ++i) in[i] = float(i), next[i] = float(1000 + i);
  const std::vector<simt::OutputSpan> outputs{{out.data(), out.size() * sizeof(float)}};
  auto run = [&](bool with_barrier) {
    return [&, with_barrier](const LaunchOptions& o) {
      simt::launch(
          1, n, n * sizeof(float),
          [&] { emu_only::refill_kernel(in.data(), next.data(), out.data(), n, with_barrier); }, o);
    };
  };
  const Schedule forward{FiberOrder::kForward, CopyLanding::kAtWait, 0},
      reverse{FiberOrder::kReverse, CopyLanding::kAtWait, 0}, shuffle{FiberOrder::kShuffle, CopyLanding::kAtWait, 3},
      forward_issue{FiberOrder::kForward, CopyLanding::kAtIssue, 0},
      reverse_issue{FiberOrder::kReverse, CopyLanding::kAtIssue, 0};
  bool hidden = true;
  try {
    simt::run_schedules(run(false), outputs, {forward, reverse, shuffle});
  } catch (const simt::Error&) {
    hidden = false;
  }
  check(hidden, "a refill without its barrier passes every fiber order while copies land at the wait");
  expect_error([&] { simt::run_schedules(run(false), outputs, {forward, reverse_issue}); },
               "differs between fiber orders forward and reverse@issue",
               "a refill without its barrier is caught with copies landing at issue (forward vs reverse@issue)");
  expect_error([&] { simt::run_schedules(run(false), outputs, {forward, forward_issue}); }, "forward@issue",
               "a refill without its barrier is caught with copies landing at issue (forward vs forward@issue)");
  simt::run_schedules(run(true), outputs, {forward, reverse_issue, forward_issue, shuffle});
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && out[i] == in[(i + 1) % n] + next[i];
  check(ok, "with the barrier: identical with copies landing at issue and at the wait, and correct");
  check(simt::to_string(simt::parse_schedule("reverse@issue", 0)) == "reverse@issue" &&
            simt::to_string(simt::parse_schedule("shuffle@wait", 9)) == "shuffle:9" &&
            simt::to_string(simt::parse_schedule("shuffle:12@issue", 9)) == "shuffle:12@issue",
        "schedule names round-trip");
  expect_error([] { simt::parse_schedule("forward@later", 0); }, "a schedule is forward, reverse, shuffle",
               "a bad schedule name is reported");
}

void test_shuffled_orders() {
  constexpr int n = 96;
  std::vector<float> out(n, NAN);
  const std::vector<simt::OutputSpan> outputs{{out.data(), out.size() * sizeof(float)}};
  auto run = [&](bool with_barrier) {
    return [&, with_barrier](const LaunchOptions& o) {
      simt::launch(1, n, n * sizeof(float), [&] { emu_only::middle_kernel(out.data(), with_barrier); }, o);
    };
  };
  const Schedule forward{FiberOrder::kForward, CopyLanding::kAtWait, 0},
      reverse{FiberOrder::kReverse, CopyLanding::kAtIssue, 0};
  bool hidden = true;
  try {
    simt::run_schedules(run(false), outputs, {forward, reverse});
  } catch (const simt::Error&) {
    hidden = false;
  }
  check(hidden, "a race among three threads passes forward and reverse order");
  const Schedule shuffle{FiberOrder::kShuffle, CopyLanding::kAtWait, 1};
  expect_error([&] { simt::run_schedules(run(false), outputs, {forward, shuffle}); },
               "differs between fiber orders forward and shuffle:1",
               "a race among three threads is caught by a shuffle");
  std::vector<Schedule> shuffles{forward};
  for (uint64_t seed = 0; seed < 4; ++seed) shuffles.push_back({FiberOrder::kShuffle, CopyLanding::kAtWait, seed});
  simt::run_schedules(run(true), outputs, shuffles);
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && out[i] == (i % 3 == 1 ? 2.0f : 0.0f);
  check(ok, "with the barrier: identical in four shuffles, and correct");
}

void test_racecheck() {
  std::vector<float> in(64), out(64, NAN);
  for (int i = 0; i < 64; ++i) in[i] = float(i);
  const std::vector<simt::OutputSpan> outputs{{out.data(), out.size() * sizeof(float)}};
  auto run = [&](bool with_barrier) {
    return [&, with_barrier](const LaunchOptions& o) { fi::neighbour(in.data(), out.data(), 64, with_barrier, o); };
  };
  for (auto order : {simt::FiberOrder::kReverse, simt::FiberOrder::kShuffle}) {
    expect_error([&] { simt::run_in_orders(run(false), outputs, {simt::FiberOrder::kForward, order}); },
                 "differs between fiber orders", std::string("the missing barrier is caught (forward vs ") +
                                                      simt::to_string(order) + ")");
  }
  simt::run_in_orders(run(true), outputs, {simt::FiberOrder::kForward, simt::FiberOrder::kReverse,
                                           simt::FiberOrder::kShuffle});
  bool ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && out[i] == 2.0f * float((i + 1) % 64);
  check(ok, "with the barrier: identical in three orders, and correct");
  test_copy_landing();
  test_shuffled_orders();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "clean";
  if (mode == "clean") {
    test_conversions();
    test_mma<simt::half>(fused_inception::TestDtype::kHalf, 16, "mma.m16n8k16.f16");
    test_mma<simt::bfloat16>(fused_inception::TestDtype::kBFloat16, 16, "mma.m16n8k16.bf16");
    test_mma<float>(fused_inception::TestDtype::kFloat32, 8, "mma.m16n8k8.tf32");
    test_ldmatrix();
    test_gemm();
    test_error_reports();
    test_racecheck();
    test_clusters();
  } else if (mode == "global_overrun" || mode == "shared_overrun") {
    std::vector<float> out(64);
    try {
      fi::off_by_one(out.data(), 64, mode == "shared_overrun", LaunchOptions{});
    } catch (const simt::Error& e) {
      std::printf("simt::Error: %s\n", e.what());
      return 3;
    }
    std::printf("overrun not detected\n");
    return 0;
  } else if (mode == "cluster_exit") {
    // Without the last barrier, some block reads the next one's shared memory after it exited.
    std::vector<float> in(8 * 64, 1.0f), out(4 * in.size());
    fi::cluster_exchange(in.data(), out.data(), 8, 1, 4, 1, fused_inception::ClusterExchangeBarriers::kFirst,
                         LaunchOptions{});
    std::printf("read after exit not detected\n");
    return 0;
  } else {
    std::printf("unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
