// The SIMT emulator's runtime: fibers, the block (cluster) scheduler, barriers (the cluster's too), warp
// collectives and their semantics (shuffles, votes, mma, ldmatrix), distributed shared memory, cp.async
// groups, and launches over host threads.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "simt/simt.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#if SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

// Entry of a new fiber (its argument is the fiber). Called from the assembly trampoline, hence C linkage;
// hidden so that no other library's symbol of the same name is called instead.
extern "C" [[noreturn]] __attribute__((used, visibility("hidden"))) void simt_fiber_main(void* fiber);
#if defined(__x86_64__)
extern "C" void simt_switch_stack(void** save_sp, void* load_sp);
extern "C" void simt_fiber_trampoline();
#endif

namespace simt {

// ---------------------------------------------------------------------------------------------------------
// 16-bit float conversions (round to nearest even, as the device's cvt.rn does).

uint16_t float_to_half_bits(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exponent = (x >> 23) & 0xffu;
  uint32_t mantissa = x & 0x7fffffu;
  if (exponent == 0xffu) return mantissa ? 0x7fffu : uint16_t(sign | 0x7c00u);  // NaN (canonical) or inf
  const int e = int(exponent) - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00u);
  if (e <= 0) {  // a half subnormal (or zero)
    if (e < -10) return uint16_t(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = sign | (uint32_t(e) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry may reach the exponent: still right
  return uint16_t(h);
}

float half_bits_to_float(uint16_t bits) {
  const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t x;
  if (exponent == 0x1fu) {
    x = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    x = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    x = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mantissa <<= 1;
    } while ((mantissa & 0x400u) == 0);
    x = sign | (uint32_t(127 - 15 - e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

uint16_t float_to_bfloat16_bits(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN (canonical)
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

float bfloat16_bits_to_float(uint16_t bits) {
  const uint32_t x = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

uint32_t to_tf32(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if ((x & 0x7f800000u) == 0x7f800000u) return x;  // inf and NaN stay
  return (x + 0x1000u) & 0xffffe000u;              // ties away from zero: add half an ulp, truncate
}

const char* to_string(FiberOrder order) {
  switch (order) {
    case FiberOrder::kForward:
      return "forward";
    case FiberOrder::kReverse:
      return "reverse";
    case FiberOrder::kShuffle:
      return "shuffle";
  }
  return "?";
}

const char* to_string(CopyLanding landing) { return landing == CopyLanding::kAtIssue ? "issue" : "wait"; }

std::string to_string(const Schedule& schedule) {
  std::string name = to_string(schedule.order);
  if (schedule.order == FiberOrder::kShuffle) name += ":" + std::to_string(schedule.seed);
  if (schedule.copies == CopyLanding::kAtIssue) name += "@issue";
  return name;
}

Schedule parse_schedule(const std::string& name, uint64_t default_seed) {
  auto bad = [&]() -> Error {
    return Error("simt: a schedule is forward, reverse, shuffle or shuffle:SEED, optionally followed by @issue "
                 "or @wait; got \"" + name + "\"");
  };
  Schedule schedule;
  std::string order = name;
  const size_t at = name.find('@');
  if (at != std::string::npos) {
    const std::string copies = name.substr(at + 1);
    if (copies == "issue") {
      schedule.copies = CopyLanding::kAtIssue;
    } else if (copies != "wait") {
      throw bad();
    }
    order = name.substr(0, at);
  }
  schedule.seed = default_seed;
  const size_t colon = order.find(':');
  if (colon != std::string::npos) {
    const std::string seed = order.substr(colon + 1);
    if (order.substr(0, colon) != "shuffle" || seed.empty() ||
        seed.find_first_not_of("0123456789") != std::string::npos || seed.size() > 19) {
      throw bad();
    }
    schedule.seed = std::stoull(seed);
    order = "shuffle";
  }
  if (order == "forward") {
    schedule.order = FiberOrder::kForward;
  } else if (order == "reverse") {
    schedule.order = FiberOrder::kReverse;
  } else if (order == "shuffle") {
    schedule.order = FiberOrder::kShuffle;
  } else {
    throw bad();
  }
  if (schedule.order != FiberOrder::kShuffle) schedule.seed = 0;
  return schedule;
}

LaunchOptions& default_launch_options() {
  static LaunchOptions options;
  return options;
}

namespace {

std::atomic<uint64_t> launches{0};

// ---------------------------------------------------------------------------------------------------------
// Context switching. x86-64: a minimal switch of the callee-saved state (ucontext's swapcontext makes a
// system call per switch, and a warp collective costs 64 switches). Elsewhere: ucontext.

#if defined(__x86_64__)
asm(R"(
  .text
  .globl simt_switch_stack
  .hidden simt_switch_stack
  .type simt_switch_stack,@function
simt_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_switch_stack,.-simt_switch_stack

  .globl simt_fiber_trampoline
  .hidden simt_fiber_trampoline
  .type simt_fiber_trampoline,@function
simt_fiber_trampoline:
  movq %r12, %rdi
  call simt_fiber_main
  ud2
  .size simt_fiber_trampoline,.-simt_fiber_trampoline
)");
#endif

enum class Status { kRunnable, kAtBarrier, kAtClusterBarrier, kAtCollective, kExited };

struct PendingCopy {
  void* dst;
  const void* src;
  int size;
  int src_bytes;
};

struct Fiber {
  uint3 thread_idx{};
  unsigned cta = 0;  // the fiber's block: its rank in the cluster the worker runs
  unsigned linear = 0, lane = 0, warp = 0;
  Status status = Status::kRunnable;
  const char* waiting_at = nullptr;
  char* stack_lo = nullptr;
  size_t stack_size = 0;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t context;
#endif
  void* asan_fake_stack = nullptr;
  bool cluster_arrival_pending = false;  // arrived at the cluster barrier, not yet waited
  bool past_cluster_barrier = false;     // a cluster barrier's wait has returned: every block has started
  uint64_t arrival_phase = 0;            // the cluster barrier's phase it arrived in
  std::vector<PendingCopy> open_group;
  std::deque<std::vector<PendingCopy>> committed_groups;
  std::exception_ptr error;
};

struct Rendezvous {
  int arrived = 0;
  const char* kind = nullptr;
  unsigned first_lane = 0;
  detail::CollectiveFn compute = nullptr;
  alignas(16) detail::CollectiveIn in;
  alignas(16) detail::CollectiveIn out;
};

struct FreeDeleter {
  void operator()(unsigned char* p) const { std::free(p); }
};

struct SharedAllocation {
  const void* site;  // nullptr: the dynamic allocation
  std::unique_ptr<unsigned char, FreeDeleter> data;
  size_t bytes;
};

#if SIMT_ASAN
constexpr size_t kGuardBytes = 0;  // ASan's redzone follows each shared allocation directly
#else
constexpr size_t kGuardBytes = 64;  // a canary after every shared allocation catches writes past its end
#endif
constexpr unsigned char kGuardByte = 0xA5;
constexpr uint64_t kMaxClusterSize = 8;  // the portable cluster size (16 needs a non-portable opt-in)
constexpr unsigned char kUninitializedShared = 0xFF;  // NaN in fp32, fp16 and bf16
#if SIMT_ASAN
constexpr size_t kStackBytes = 512 * 1024;  // ASan's redzones and fake frames need room
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

struct LaunchState {
  dim3 grid, block, cluster;
  unsigned cluster_size = 1;  // blocks a cluster
  size_t dynamic_bytes = 0;
  unsigned threads_per_block = 0;
  const std::function<void()>* kernel = nullptr;
  LaunchOptions options;
};

// One block of the cluster a worker runs: what __syncthreads, warp collectives and shared memory are per block.
struct Cta {
  uint3 block_idx{};
  unsigned barrier_arrived = 0;
  unsigned exited = 0;  // its fibers that have exited
  std::vector<Rendezvous> warps;
  std::vector<SharedAllocation> shared;
  size_t shared_bytes = 0;
};

// A host thread running blocks of one launch, one cluster at a time (a launch without clusters: clusters of
// one block). The fibers of a cluster's blocks run interleaved, as its blocks run at once on the GPU: a block
// may wait at a cluster barrier for the others, and read or write their shared memory.
struct Worker {
  const LaunchState* launch = nullptr;
  std::vector<Fiber> fibers;  // block r's threads are fibers [r * threads_per_block, (r + 1) * threads_per_block)
  char* stacks = nullptr;
  size_t stacks_bytes = 0;
  Fiber* current = nullptr;
  std::vector<Cta> ctas;  // by rank in the cluster
  unsigned cluster_arrived = 0;  // threads arrived in the cluster barrier's current phase
  uint64_t cluster_phase = 0;    // completed phases
#if defined(__x86_64__)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler_context;
#endif
  const void* scheduler_stack_lo = nullptr;
  size_t scheduler_stack_size = 0;
  void* scheduler_fake_stack = nullptr;

  explicit Worker(const LaunchState* state) : launch(state) {
    const unsigned n = state->threads_per_block * state->cluster_size;
    fibers.resize(n);
    ctas.resize(state->cluster_size);
    for (auto& cta : ctas) cta.warps.resize((state->threads_per_block + kWarpSize - 1) / kWarpSize);
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t per_fiber = kStackBytes + page;  // + a guard page below each stack
    stacks_bytes = per_fiber * n;
    void* memory = mmap(nullptr, stacks_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (memory == MAP_FAILED) throw Error("simt: cannot map fiber stacks");
    stacks = static_cast<char*>(memory);
    for (unsigned i = 0; i < n; ++i) {
      char* base = stacks + i * per_fiber;
      mprotect(base, page, PROT_NONE);
      fibers[i].stack_lo = base + page;
      fibers[i].stack_size = kStackBytes;
    }
  }
  ~Worker() { munmap(stacks, stacks_bytes); }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
};

thread_local Worker* tls_worker = nullptr;

Worker& worker() {
  if (tls_worker == nullptr || tls_worker->current == nullptr) {
    throw Error("simt: a device primitive was called outside a kernel launch");
  }
  return *tls_worker;
}

Cta& current_cta(Worker& w) { return w.ctas[w.current->cta]; }

#if !defined(__x86_64__)
void ucontext_entry(unsigned hi, unsigned lo) {
  simt_fiber_main(reinterpret_cast<void*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

void prepare_fiber_stack(Worker& w, Fiber& f) {
#if SIMT_ASAN
  // Frames of the stack's previous fiber (abandoned, or from an earlier mapping at this address) leave
  // redzones in the shadow memory.
  ASAN_UNPOISON_MEMORY_REGION(f.stack_lo, f.stack_size);
  f.asan_fake_stack = nullptr;
#endif
#if defined(__x86_64__)
  // The frame simt_switch_stack pops: mxcsr + x87 control word, r15..r12, rbx, rbp, return address.
  char* top = f.stack_lo + f.stack_size;
  top = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15));
  auto* frame = reinterpret_cast<uint64_t*>(top - 80);
  const uint32_t mxcsr = 0x1F80;
  const uint16_t x87_control = 0x037F;
  std::memset(frame, 0, 80);
  std::memcpy(reinterpret_cast<char*>(frame), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(frame) + 4, &x87_control, 2);
  frame[4] = reinterpret_cast<uint64_t>(&f);  // r12: the trampoline's argument
  frame[7] = reinterpret_cast<uint64_t>(&simt_fiber_trampoline);
  f.sp = frame;
  (void)w;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack_lo;
  f.context.uc_stack.ss_size = f.stack_size;
  f.context.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(&f);
  makecontext(&f.context, reinterpret_cast<void (*)()>(&ucontext_entry), 2, unsigned(p >> 32), unsigned(p));
  (void)w;
#endif
}

// Scheduler -> fiber.
void resume(Worker& w, Fiber& f) {
  w.current = &f;
#if SIMT_ASAN
  __sanitizer_start_switch_fiber(&w.scheduler_fake_stack, f.stack_lo, f.stack_size);
#endif
#if defined(__x86_64__)
  simt_switch_stack(&w.scheduler_sp, f.sp);
#else
  swapcontext(&w.scheduler_context, &f.context);
#endif
#if SIMT_ASAN
  __sanitizer_finish_switch_fiber(w.scheduler_fake_stack, nullptr, nullptr);
#endif
  w.current = nullptr;
}

// Fiber -> scheduler; returns when the scheduler resumes this fiber.
void yield(Worker& w, Fiber& f) {
#if SIMT_ASAN
  __sanitizer_start_switch_fiber(f.status == Status::kExited ? nullptr : &f.asan_fake_stack, w.scheduler_stack_lo,
                                 w.scheduler_stack_size);
#endif
#if defined(__x86_64__)
  simt_switch_stack(&f.sp, w.scheduler_sp);
#else
  swapcontext(&f.context, &w.scheduler_context);
#endif
#if SIMT_ASAN
  __sanitizer_finish_switch_fiber(f.asan_fake_stack, &w.scheduler_stack_lo, &w.scheduler_stack_size);
#endif
}

[[noreturn]] void run_fiber(Fiber* fiber) {
  Worker& w = *tls_worker;
#if SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &w.scheduler_stack_lo, &w.scheduler_stack_size);
#endif
  try {
    (*w.launch->kernel)();
  } catch (...) {
    fiber->error = std::current_exception();
  }
  fiber->status = Status::kExited;
  yield(w, *fiber);
  std::abort();  // an exited fiber is never resumed
}

std::string describe(const uint3& v) {
  std::ostringstream os;
  os << "(" << v.x << "," << v.y << "," << v.z << ")";
  return os.str();
}

// Why no fiber of the cluster can run: the first waiting point and who never reached it.
std::string describe_deadlock(const Worker& w) {
  std::ostringstream os;
  const unsigned n = w.launch->threads_per_block;
  for (unsigned rank = 0; rank < w.ctas.size(); ++rank) {
    const Cta& cta = w.ctas[rank];
    unsigned at_barrier = 0, at_cluster_barrier = 0, at_collective = 0, exited = 0;
    for (unsigned i = rank * n; i < (rank + 1) * n; ++i) {
      const Fiber& f = w.fibers[i];
      at_barrier += f.status == Status::kAtBarrier;
      at_cluster_barrier += f.status == Status::kAtClusterBarrier;
      at_collective += f.status == Status::kAtCollective;
      exited += f.status == Status::kExited;
    }
    if (at_barrier) {
      os << "simt: deadlock in block " << describe(cta.block_idx) << ": " << at_barrier
         << " thread(s) wait at __syncthreads, which " << (n - at_barrier) << " never reach (" << exited
         << " exited, " << at_collective << " wait at a warp collective, " << at_cluster_barrier
         << " at a cluster barrier)";
    }
    for (size_t warp = 0; warp < cta.warps.size(); ++warp) {
      const auto& r = cta.warps[warp];
      if (r.arrived == 0) continue;
      os << (at_barrier ? "; " : "simt: deadlock in block " + describe(cta.block_idx) + ": ") << "warp " << warp
         << ": " << r.arrived << " lane(s) wait at " << r.kind << ", which the other lanes never reach";
      break;
    }
    if (!os.str().empty()) return os.str();
  }
  unsigned exited = 0;
  for (const auto& f : w.fibers) exited += f.status == Status::kExited;
  os << "simt: deadlock in the cluster of block " << describe(w.ctas[0].block_idx) << ": " << w.cluster_arrived
     << " thread(s) wait at a cluster barrier, which " << (w.fibers.size() - w.cluster_arrived)
     << " never reach (" << exited << " exited)";
  return os.str();
}

void check_guards(const Cta& cta) {
  for (const auto& allocation : cta.shared) {
    for (size_t i = 0; i < kGuardBytes; ++i) {
      if (allocation.data.get()[allocation.bytes + i] != kGuardByte) {
        std::ostringstream os;
        os << "simt: block " << describe(cta.block_idx) << " wrote past the end of "
           << (allocation.site ? "a static shared array" : "dynamic shared memory") << " of " << allocation.bytes
           << " bytes (at byte " << allocation.bytes + i << ")";
        throw Error(os.str());
      }
    }
  }
}

// A block of a cluster has exited while others run: its shared memory is gone, and a read of it by another
// block (a missing cluster barrier before the exit) must not find the data. Under AddressSanitizer any access
// is reported; otherwise reads find 0xFF bytes (NaN) and the output shows it.
void retire_shared(Cta& cta) {
  for (auto& allocation : cta.shared) {
    std::memset(allocation.data.get(), kUninitializedShared, allocation.bytes);
#if SIMT_ASAN
    ASAN_POISON_MEMORY_REGION(allocation.data.get(), allocation.bytes);
#endif
  }
}

void release_shared(Cta& cta) {
#if SIMT_ASAN
  for (auto& allocation : cta.shared) ASAN_UNPOISON_MEMORY_REGION(allocation.data.get(), allocation.bytes);
#endif
  cta.shared.clear();
  cta.shared_bytes = 0;
}

unsigned char* allocate_shared(const Worker& w, Cta& cta, const void* site, size_t bytes) {
  cta.shared_bytes += bytes;
  if (cta.shared_bytes > w.launch->options.shared_memory_limit) {
    std::ostringstream os;
    os << "simt: block uses " << cta.shared_bytes << " bytes of shared memory, over the limit of "
       << w.launch->options.shared_memory_limit;
    throw Error(os.str());
  }
  void* memory = nullptr;
  if (posix_memalign(&memory, 16, std::max<size_t>(bytes + kGuardBytes, 1)) != 0) {
    throw Error("simt: out of memory for shared memory");
  }
  SharedAllocation allocation{site, std::unique_ptr<unsigned char, FreeDeleter>(static_cast<unsigned char*>(memory)),
                              bytes};
  std::memset(allocation.data.get(), kUninitializedShared, bytes);
  std::memset(allocation.data.get() + bytes, kGuardByte, kGuardBytes);
  cta.shared.push_back(std::move(allocation));
  return cta.shared.back().data.get();
}

// Runs the cluster whose first block is `origin` (a launch without clusters: the block `origin`).
void run_cluster(Worker& w, const uint3& origin, uint64_t cluster_seed) {
  const LaunchState& launch = *w.launch;
  const unsigned n = launch.threads_per_block;
  w.cluster_arrived = 0;
  w.cluster_phase = 0;
  for (unsigned rank = 0; rank < w.ctas.size(); ++rank) {
    Cta& cta = w.ctas[rank];
    const dim3& c = launch.cluster;
    cta.block_idx = {origin.x + rank % c.x, origin.y + (rank / c.x) % c.y, origin.z + rank / (c.x * c.y)};
    cta.barrier_arrived = 0;
    cta.exited = 0;
    for (auto& r : cta.warps) r = Rendezvous{};
    release_shared(cta);
    allocate_shared(w, cta, nullptr, launch.dynamic_bytes);
  }
  for (unsigned i = 0; i < w.fibers.size(); ++i) {
    Fiber& f = w.fibers[i];
    const unsigned t = i % n;
    f.cta = i / n;
    f.linear = t;
    f.thread_idx = {t % launch.block.x, (t / launch.block.x) % launch.block.y, t / (launch.block.x * launch.block.y)};
    f.lane = t % kWarpSize;
    f.warp = t / kWarpSize;
    f.status = Status::kRunnable;
    f.waiting_at = nullptr;
    f.error = nullptr;
    f.cluster_arrival_pending = false;
    f.past_cluster_barrier = false;
    f.arrival_phase = 0;
    f.open_group.clear();
    f.committed_groups.clear();
    prepare_fiber_stack(w, f);
  }
  const unsigned fiber_count = unsigned(w.fibers.size());
  std::vector<unsigned> order(fiber_count);
  std::iota(order.begin(), order.end(), 0u);
  if (launch.options.order == FiberOrder::kReverse) std::reverse(order.begin(), order.end());
  const bool shuffled = launch.options.order == FiberOrder::kShuffle;
  // In reverse order each warp runs ahead to its next barrier (or exit) before the next warp starts: its
  // warp collectives complete within its own turn. Otherwise warps advance one collective per round, in
  // step, and a warp that overwrites shared memory another warp has yet to read (a missing barrier between
  // a multiply and the refill of its stage) would go unseen whenever both issue as many mma as each other.
  const bool warps_run_ahead = launch.options.order == FiberOrder::kReverse;
  std::mt19937_64 rng(cluster_seed);
  unsigned ctas_running = unsigned(w.ctas.size());
  auto run = [&](Fiber& f) {
    resume(w, f);
    if (f.error) {
      try {
        std::rethrow_exception(f.error);
      } catch (const std::exception& e) {
        throw Error(std::string(e.what()) + " [block " + describe(w.ctas[f.cta].block_idx) + ", thread " +
                    describe(f.thread_idx) + "]");
      }
    }
    if (f.status == Status::kExited) {
      Cta& cta = w.ctas[f.cta];
      if (++cta.exited == n) {
        check_guards(cta);
        if (--ctas_running > 0) retire_shared(cta);
      }
    }
  };
  for (;;) {
    // A fresh order for every round (each stretch between synchronisation points): races between any two
    // threads, not only the pairs that forward and reverse put in opposite orders, can show.
    if (shuffled) std::shuffle(order.begin(), order.end(), rng);
    bool ran = false, all_exited = true;
    for (unsigned i : order) {
      Fiber& f = w.fibers[i];
      if (f.status == Status::kRunnable) {
        ran = true;
        run(f);
        // f completed its warp's collective: the whole warp goes on, lanes in reverse, until every lane waits
        // at a barrier or has exited (a barrier's release is left to the next round, as in other orders).
        auto past_collective = [](const Fiber& g) {
          return g.status == Status::kRunnable && g.waiting_at != nullptr &&
                 std::strcmp(g.waiting_at, "__syncthreads") != 0 && std::strcmp(g.waiting_at, "barrier.cluster") != 0;
        };
        const unsigned warp_first = f.cta * n + f.warp * kWarpSize, warp_end = std::min(warp_first + kWarpSize,
                                                                                        (f.cta + 1) * n);
        for (bool progressed = warps_run_ahead && past_collective(f); progressed;) {
          progressed = false;
          for (unsigned lane = warp_end; lane-- > warp_first;) {
            if (past_collective(w.fibers[lane])) {
              run(w.fibers[lane]);
              progressed = true;
            }
          }
        }
      }
      all_exited = all_exited && f.status == Status::kExited;
    }
    if (all_exited) break;
    if (!ran) throw Error(describe_deadlock(w));
  }
}

int default_host_threads() {
  if (const char* env = std::getenv("SIMT_HOST_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

uint64_t launch_count() { return launches.load(); }

void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& kernel,
            const LaunchOptions& options, dim3 cluster) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  const uint64_t cluster_size = uint64_t(cluster.x) * cluster.y * cluster.z;
  if (threads == 0 || threads > 1024) throw Error("simt: a block must have 1 to 1024 threads");
  if (grid.y > 65535 || grid.z > 65535) throw Error("simt: grid.y and grid.z must be at most 65535");
  if (cluster_size == 0 || cluster_size > kMaxClusterSize) {
    throw Error("simt: a cluster must have 1 to 8 blocks (the portable limit), got " + describe({cluster.x, cluster.y,
                                                                                               cluster.z}));
  }
  if (grid.x % cluster.x || grid.y % cluster.y || grid.z % cluster.z) {
    throw Error("simt: the grid " + describe({grid.x, grid.y, grid.z}) + " is not a whole number of clusters " +
                describe({cluster.x, cluster.y, cluster.z}));
  }
  if (tls_worker != nullptr) throw Error("simt: launch from inside a kernel");
  launches.fetch_add(1);
  const dim3 clusters{grid.x / cluster.x, grid.y / cluster.y, grid.z / cluster.z};
  const uint64_t blocks = uint64_t(clusters.x) * clusters.y * clusters.z;  // from here on: clusters
  if (blocks == 0) return;
  LaunchState state;
  state.grid = grid;
  state.block = block;
  state.cluster = cluster;
  state.cluster_size = unsigned(cluster_size);
  state.dynamic_bytes = dynamic_shared_bytes;
  state.threads_per_block = unsigned(threads);
  state.kernel = &kernel;
  state.options = options;

  std::vector<uint64_t> block_order(blocks);
  std::iota(block_order.begin(), block_order.end(), uint64_t{0});
  if (options.order == FiberOrder::kReverse) std::reverse(block_order.begin(), block_order.end());
  if (options.order == FiberOrder::kShuffle) {
    std::mt19937_64 rng(options.seed);
    std::shuffle(block_order.begin(), block_order.end(), rng);
  }
  const int host_threads = int(std::min<uint64_t>(
      blocks, uint64_t(options.host_threads > 0 ? options.host_threads : default_host_threads())));
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  uint64_t error_position = UINT64_MAX;
  std::exception_ptr error;

  auto work = [&] {
    try {
      Worker w(&state);
      tls_worker = &w;
      for (uint64_t position; !failed.load() && (position = next.fetch_add(1)) < blocks;) {
        const uint64_t linear = block_order[position];
        const uint3 origin{unsigned(linear % clusters.x) * cluster.x, unsigned((linear / clusters.x) % clusters.y) * cluster.y,
                           unsigned(linear / (uint64_t(clusters.x) * clusters.y)) * cluster.z};
        try {
          run_cluster(w, origin, options.seed * 0x9E3779B97F4A7C15ull + linear);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (position < error_position) {  // report the first failing cluster in launch order
            error_position = position;
            error = std::current_exception();
          }
          failed.store(true);
        }
      }
      tls_worker = nullptr;
    } catch (...) {
      tls_worker = nullptr;
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed.store(true);
    }
  };
  if (host_threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int i = 0; i < host_threads; ++i) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  if (error) std::rethrow_exception(error);
}

void run_schedules(const std::function<void(const LaunchOptions&)>& launch_once,
                   const std::vector<OutputSpan>& outputs, const std::vector<Schedule>& schedules) {
  std::vector<std::vector<unsigned char>> first;
  for (size_t i = 0; i < schedules.size(); ++i) {
    LaunchOptions options = default_launch_options();
    options.order = schedules[i].order;
    options.seed = schedules[i].seed;
    options.copies = schedules[i].copies;
    launch_once(options);
    for (size_t k = 0; k < outputs.size(); ++k) {
      const auto* bytes = static_cast<const unsigned char*>(outputs[k].data);
      if (i == 0) {
        first.emplace_back(bytes, bytes + outputs[k].bytes);
        continue;
      }
      size_t differing = 0, first_difference = 0;
      for (size_t b = 0; b < outputs[k].bytes; ++b) {
        if (bytes[b] != first[k][b] && differing++ == 0) first_difference = b;
      }
      if (differing) {
        std::ostringstream os;
        os << "simt racecheck: output " << k << " differs between fiber orders " << to_string(schedules[0])
           << " and " << to_string(schedules[i]) << " in " << differing << " of " << outputs[k].bytes
           << " bytes (first at byte " << first_difference
           << "): a missing barrier or wait, or a read of memory another thread writes";
        throw Error(os.str());
      }
    }
  }
}

void run_in_orders(const std::function<void(const LaunchOptions&)>& launch_once,
                   const std::vector<OutputSpan>& outputs, const std::vector<FiberOrder>& orders, uint64_t seed) {
  std::vector<Schedule> schedules;
  for (FiberOrder order : orders) schedules.push_back({order, CopyLanding::kAtWait, seed});
  run_schedules(launch_once, outputs, schedules);
}

namespace {
std::mutex checked_mutex;
std::vector<Schedule> checked{Schedule{}};
}  // namespace

void set_checked_schedules(const std::vector<Schedule>& schedules) {
  if (schedules.empty()) throw Error("simt: at least one schedule is needed");
  std::lock_guard<std::mutex> lock(checked_mutex);
  checked = schedules;
}

std::vector<Schedule> checked_schedules() {
  std::lock_guard<std::mutex> lock(checked_mutex);
  return checked;
}

void run_checked(const std::function<void(const LaunchOptions&)>& launch_once, const std::vector<OutputSpan>& outputs) {
  run_schedules(launch_once, outputs, checked_schedules());
}

namespace detail {

const uint3& thread_idx() { return worker().current->thread_idx; }
const uint3& block_idx() {
  Worker& w = worker();
  return current_cta(w).block_idx;
}
const dim3& block_dim() { return worker().launch->block; }
const dim3& grid_dim() { return worker().launch->grid; }

void* dynamic_shared() {
  Worker& w = worker();
  return current_cta(w).shared.front().data.get();
}

namespace {
unsigned char* static_shared_of(const Worker& w, Cta& cta, const void* site, size_t bytes) {
  for (const auto& allocation : cta.shared) {
    if (allocation.site == site) return allocation.data.get();
  }
  return allocate_shared(w, cta, site, bytes);
}
}  // namespace

void* block_static_shared(const void* site, size_t bytes, size_t alignment) {
  Worker& w = worker();
  if (alignment > 16) throw Error("simt: static shared arrays are aligned to at most 16 bytes");
  return static_shared_of(w, current_cta(w), site, bytes);
}

void check_shared(const void* address, size_t bytes, const char* what) {
  const auto* p = static_cast<const unsigned char*>(address);
  Worker& w = worker();
  for (const auto& allocation : current_cta(w).shared) {
    const unsigned char* begin = allocation.data.get();
    if (p >= begin && p + bytes <= begin + allocation.bytes) return;
  }
  std::ostringstream os;
  os << what << ": address " << address << " (" << bytes << " bytes) is not inside the block's shared memory";
  throw Error(os.str());
}

void barrier() {
  Worker& w = worker();
  Fiber& f = *w.current;
  Cta& cta = current_cta(w);
  f.status = Status::kAtBarrier;
  f.waiting_at = "__syncthreads";
  const unsigned n = w.launch->threads_per_block;
  if (++cta.barrier_arrived == n) {
    cta.barrier_arrived = 0;
    for (unsigned i = f.cta * n; i < (f.cta + 1) * n; ++i) w.fibers[i].status = Status::kRunnable;
  }
  yield(w, f);
}

unsigned cluster_rank() { return worker().current->cta; }
unsigned cluster_size() { return worker().launch->cluster_size; }

// barrier.cluster.arrive: counts the thread in the current phase; the phase completes when every thread of
// the cluster has arrived, and releases the threads waiting in it.
void cluster_arrive() {
  Worker& w = worker();
  Fiber& f = *w.current;
  if (f.cluster_arrival_pending) throw Error("barrier.cluster.arrive: a second arrive before the wait of the first");
  f.cluster_arrival_pending = true;
  f.arrival_phase = w.cluster_phase;
  if (++w.cluster_arrived == w.fibers.size()) {
    w.cluster_arrived = 0;
    ++w.cluster_phase;
    for (auto& other : w.fibers) {
      if (other.status == Status::kAtClusterBarrier) other.status = Status::kRunnable;
    }
  }
}

// barrier.cluster.wait: returns once the phase of the thread's arrival has completed.
void cluster_wait() {
  Worker& w = worker();
  Fiber& f = *w.current;
  if (!f.cluster_arrival_pending) throw Error("barrier.cluster.wait: no arrive before it");
  f.cluster_arrival_pending = false;
  f.past_cluster_barrier = true;  // (once it returns: every thread of the cluster has arrived)
  if (w.cluster_phase > f.arrival_phase) return;
  f.status = Status::kAtClusterBarrier;
  f.waiting_at = "barrier.cluster";
  yield(w, f);
}

void* map_shared_rank(const void* address, unsigned rank) {
  Worker& w = worker();
  if (rank >= w.ctas.size()) {
    std::ostringstream os;
    os << "mapa: rank " << rank << " is not a block of the cluster (" << w.ctas.size() << " blocks)";
    throw Error(os.str());
  }
  const auto* p = static_cast<const unsigned char*>(address);
  for (const auto& allocation : current_cta(w).shared) {
    const unsigned char* begin = allocation.data.get();
    if (p < begin || p >= begin + allocation.bytes) continue;
    // On the GPU a block's shared memory exists once it runs, which only a cluster barrier every block has
    // arrived at tells: the emulator requires one before another block's memory is mapped (every block's
    // exists from the start here, so an access before would otherwise pass).
    if (rank != w.current->cta && !w.current->past_cluster_barrier) {
      std::ostringstream os;
      os << "mapa: block rank " << rank << "'s shared memory mapped before this thread passed a cluster barrier: "
         << "on the GPU that block may not have started";
      throw Error(os.str());
    }
    Cta& target = w.ctas[rank];
    // The same allocation in the target block: its dynamic shared memory, or the static array of this site
    // (allocated there now if its threads have not reached its declaration yet; on the GPU it exists already).
    unsigned char* base = allocation.site ? static_shared_of(w, target, allocation.site, allocation.bytes)
                                          : target.shared.front().data.get();
    return base + (p - begin);
  }
  std::ostringstream os;
  os << "mapa: address " << address << " is not inside the block's shared memory";
  throw Error(os.str());
}

void require_full_mask(unsigned mask, const char* what) {
  if (mask != 0xffffffffu) {
    throw Error(std::string(what) + ": the emulator supports full-warp masks (0xffffffff) only");
  }
}

void warp_collective(const char* kind, const void* in, size_t in_bytes, void* out, size_t out_bytes,
                     CollectiveFn compute) {
  Worker& w = worker();
  Fiber& f = *w.current;
  if (w.launch->threads_per_block % kWarpSize != 0) {
    throw Error(std::string(kind) + ": warp collectives need a block size that is a multiple of 32");
  }
  Rendezvous& r = current_cta(w).warps[f.warp];
  if (r.arrived == 0) {
    r.kind = kind;
    r.first_lane = f.lane;
    r.compute = compute;
  } else if (std::strcmp(r.kind, kind) != 0) {
    std::ostringstream os;
    os << "simt: divergent warp collectives in warp " << f.warp << ": lane " << f.lane << " calls " << kind
       << " while lane " << r.first_lane << " called " << r.kind;
    throw Error(os.str());
  }
  if (in_bytes) std::memcpy(r.in[f.lane], in, in_bytes);
  f.status = Status::kAtCollective;
  f.waiting_at = kind;
  if (++r.arrived == kWarpSize) {
    r.compute(r.in, r.out);
    r.arrived = 0;
    const unsigned first = f.cta * w.launch->threads_per_block + f.warp * kWarpSize;
    for (unsigned lane = 0; lane < kWarpSize; ++lane) w.fibers[first + lane].status = Status::kRunnable;
  }
  yield(w, f);
  if (out_bytes) std::memcpy(out, r.out[f.lane], out_bytes);
}

void shuffle_compute(const CollectiveIn& in, CollectiveIn& out) {
  for (int lane = 0; lane < kWarpSize; ++lane) {
    ShuffleIn s;
    std::memcpy(&s, in[lane], sizeof(s));
    if (s.width <= 0 || s.width > kWarpSize || (s.width & (s.width - 1)) != 0) {
      throw Error("shuffle: width must be a power of two between 1 and 32");
    }
    const int segment = lane & ~(s.width - 1);
    int source = lane;
    switch (s.mode) {
      case ShuffleMode::kIndex:
        source = segment + (s.operand & (s.width - 1));
        break;
      case ShuffleMode::kUp:
        if (lane - s.operand >= segment) source = lane - s.operand;
        break;
      case ShuffleMode::kDown:
        if (lane + s.operand < segment + s.width) source = lane + s.operand;
        break;
      case ShuffleMode::kXor:
        // A source in a later segment returns the caller's own value (CUDA's documented behaviour).
        if (((lane ^ s.operand) & ~(s.width - 1)) <= segment) source = (lane ^ s.operand) & (kWarpSize - 1);
        break;
    }
    std::memcpy(out[lane], reinterpret_cast<const ShuffleIn*>(in[source])->value, 8);
  }
}

void vote_compute(const CollectiveIn& in, CollectiveIn& out) {
  unsigned bits = 0;
  for (int lane = 0; lane < kWarpSize; ++lane) bits |= unsigned(in[lane][0] != 0) << lane;
  for (int lane = 0; lane < kWarpSize; ++lane) std::memcpy(out[lane], &bits, sizeof(bits));
}

unsigned ballot(unsigned mask, bool predicate, const char* kind) {
  require_full_mask(mask, kind);
  const unsigned char in = predicate;
  unsigned result = 0;
  warp_collective(kind, &in, 1, &result, sizeof(result), &vote_compute);
  return result;
}

namespace {

struct MmaIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

float tf32_value(uint32_t bits) {
  bits &= 0xffffe000u;  // the tensor core reads 19 bits of a .tf32 operand
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

// D = A * B + C for one m16n8k{16,8} mma, from the lanes' fragments (PTX ISA fragment layouts; g = lane / 4,
// t = lane % 4). Products are exact and summed in double, then rounded once to float: the tensor core's own
// internal rounding is not modelled.
template <int K, class Element>
void mma_compute(const CollectiveIn& in, CollectiveIn& out, Element element) {
  double a[16][K], b[K][8], c[16][8];
  for (int lane = 0; lane < kWarpSize; ++lane) {
    MmaIn m;
    std::memcpy(&m, in[lane], sizeof(m));
    const int g = lane / 4, t = lane % 4;
    if constexpr (K == 16) {
      for (int r = 0; r < 4; ++r) {  // a[r] holds rows g / g+8 and columns 2t, 2t+1 (+8 for r >= 2)
        const int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
        a[row][col] = element(m.a[r] & 0xffffu);
        a[row][col + 1] = element(m.a[r] >> 16);
      }
      for (int r = 0; r < 2; ++r) {  // b[r] holds rows 2t, 2t+1 (+8 for r = 1) of column g
        b[2 * t + 8 * r][g] = element(m.b[r] & 0xffffu);
        b[2 * t + 8 * r + 1][g] = element(m.b[r] >> 16);
      }
    } else {
      for (int r = 0; r < 4; ++r) a[g + 8 * (r & 1)][t + 4 * (r >> 1)] = element(m.a[r]);
      for (int r = 0; r < 2; ++r) b[t + 4 * r][g] = element(m.b[r]);
    }
    for (int r = 0; r < 4; ++r) c[g + 8 * (r >> 1)][2 * t + (r & 1)] = m.c[r];
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const int g = lane / 4, t = lane % 4;
    float d[4];
    for (int r = 0; r < 4; ++r) {
      const int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
      double sum = 0;
      for (int k = 0; k < K; ++k) sum += a[row][k] * b[k][col];
      d[r] = float(sum + c[row][col]);
    }
    std::memcpy(out[lane], d, sizeof(d));
  }
}

}  // namespace

void mma_f16_compute(const CollectiveIn& in, CollectiveIn& out) {
  mma_compute<16>(in, out, [](uint32_t bits) { return double(half_bits_to_float(uint16_t(bits))); });
}
void mma_bf16_compute(const CollectiveIn& in, CollectiveIn& out) {
  mma_compute<16>(in, out, [](uint32_t bits) { return double(bfloat16_bits_to_float(uint16_t(bits))); });
}
void mma_tf32_compute(const CollectiveIn& in, CollectiveIn& out) {
  mma_compute<8>(in, out, [](uint32_t bits) { return double(tf32_value(bits)); });
}

void mma(const char* kind, CollectiveFn compute, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
         const float (&c)[4]) {
  MmaIn m;
  std::memcpy(m.a, a, sizeof(m.a));
  std::memcpy(m.b, b, sizeof(m.b));
  std::memcpy(m.c, c, sizeof(m.c));
  warp_collective(kind, &m, sizeof(m), d, sizeof(d), compute);
}

// ldmatrix: lane 8*i + r addresses row r (8 x 16-bit) of matrix i. Without .trans lane l receives row l/4,
// columns 2(l%4) and 2(l%4)+1 of each matrix; with .trans, rows 2(l%4) and 2(l%4)+1 of column l/4.
template <int matrices, bool transposed>
void ldmatrix_compute(const CollectiveIn& in, CollectiveIn& out) {
  uint16_t m[matrices][8][8];
  for (int i = 0; i < matrices; ++i) {
    for (int r = 0; r < 8; ++r) {
      const void* row;
      std::memcpy(&row, in[8 * i + r], sizeof(row));
      if (reinterpret_cast<uintptr_t>(row) % 16 != 0) throw Error("ldmatrix: row address not 16-byte aligned");
      check_shared(row, 16, "ldmatrix");
      std::memcpy(m[i][r], row, 16);
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    uint32_t words[matrices];
    for (int i = 0; i < matrices; ++i) {
      const int outer = lane / 4, inner = 2 * (lane % 4);
      const uint16_t lo = transposed ? m[i][inner][outer] : m[i][outer][inner];
      const uint16_t hi = transposed ? m[i][inner + 1][outer] : m[i][outer][inner + 1];
      words[i] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
    std::memcpy(out[lane], words, sizeof(words));
  }
}
template void ldmatrix_compute<1, false>(const CollectiveIn&, CollectiveIn&);
template void ldmatrix_compute<2, false>(const CollectiveIn&, CollectiveIn&);
template void ldmatrix_compute<4, false>(const CollectiveIn&, CollectiveIn&);
template void ldmatrix_compute<1, true>(const CollectiveIn&, CollectiveIn&);
template void ldmatrix_compute<2, true>(const CollectiveIn&, CollectiveIn&);
template void ldmatrix_compute<4, true>(const CollectiveIn&, CollectiveIn&);

namespace {
void land(const PendingCopy& copy) {
  auto* dst = static_cast<unsigned char*>(copy.dst);
  if (copy.src_bytes > 0) std::memcpy(dst, copy.src, size_t(copy.src_bytes));
  std::memset(dst + copy.src_bytes, 0, size_t(copy.size - copy.src_bytes));
}
}  // namespace

void cp_async(void* shared_dst, const void* global_src, int size, int src_bytes) {
  Worker& w = worker();
  if (src_bytes < 0 || src_bytes > size) throw Error("cp.async: src_bytes must be between 0 and the copy size");
  if (reinterpret_cast<uintptr_t>(shared_dst) % size != 0 ||
      (src_bytes > 0 && reinterpret_cast<uintptr_t>(global_src) % size != 0)) {
    throw Error("cp.async: addresses must be aligned to the copy size");
  }
  check_shared(shared_dst, size, "cp.async destination");
  const PendingCopy copy{shared_dst, global_src, size, src_bytes};
  if (w.launch->options.copies == CopyLanding::kAtIssue) {
    land(copy);
  } else {
    w.current->open_group.push_back(copy);
  }
}

void cp_async_commit() {
  Fiber& f = *worker().current;
  f.committed_groups.push_back(std::move(f.open_group));
  f.open_group.clear();
}

// With CopyLanding::kAtWait the copies land here, the latest legal moment: a read of the destination before
// the wait sees stale bytes. (With kAtIssue they have landed already; their groups are empty.)
void cp_async_wait(int pending) {
  Fiber& f = *worker().current;
  while (f.committed_groups.size() > size_t(std::max(pending, 0))) {
    for (const auto& copy : f.committed_groups.front()) land(copy);
    f.committed_groups.pop_front();
  }
}

}  // namespace detail
}  // namespace simt

extern "C" void simt_fiber_main(void* fiber) { simt::run_fiber(static_cast<simt::Fiber*>(fiber)); }
