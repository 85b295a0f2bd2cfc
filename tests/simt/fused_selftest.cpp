// The fused Inception kernel under the SIMT emulator, torch-free: odd shapes and strides in both layouts and
// every math mode, against a scalar float64 reference of the block, with the project's numerics rule (the
// error at most 2x that of the unfused block computed in the same precision; fused_inception/testing.py),
// every launch under the racecheck's schedules (FUSED_INCEPTION_RACECHECK of them, default 2). The cases
// split every branch into several tasks (FUSED_INCEPTION_TEST_CHANNEL_CHUNK), end in partial tiles on both
// edges, read x both element-wise and in 16-byte copies, and have K long enough for a stage to be refilled.
// Built with AddressSanitizer by tests/test_simt.py (the kernel's CPU memcheck) and without it by
// scripts/mutation_check.py (a planted bug must fail a case). One line per case; exit code 0 when all pass.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "kernels/inception_api.h"
#include "simt/simt.h"

namespace {

using fused_inception::InceptionParams;
using fused_inception::InceptionShape;
using fused_inception::MathMode;

int failures = 0;

struct Block {
  InceptionShape s;
  // Convolution weights [out][in][k][k] and biases, float64 (exactly representable in every mode's dtype).
  std::vector<double> w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp;
};

// Multiples of 1/16, exact in fp16, bf16 and tf32; or (off_tf32_grid) +-(1 + 7/8 ulp) x 2^e, an eighth of a
// TF32 ulp (2^-10 at 1) short of the next TF32 value: the TF32 cases' operands. Rounded to nearest, a product
// errs by about 1/4 ulp; with either operand truncated (left to the tensor core) by 3/4 or more, which fails
// the rule's 2x.
std::vector<double> random_values(std::mt19937& rng, size_t count, double scale, bool off_tf32_grid = false) {
  std::uniform_int_distribution<int> small(-8, 8), sign(0, 1), exponent(-3, 0);
  std::vector<double> v(count);
  for (auto& x : v) {
    x = off_tf32_grid ? (sign(rng) ? 1 : -1) * std::ldexp(1 + 7 * 0x1p-13, exponent(rng)) * scale
                      : small(rng) / 16.0 * scale;
  }
  return v;
}

Block random_block(std::mt19937& rng, InceptionShape s, bool off_tf32_grid) {
  Block b{s};
  const int64_t cin = s.in_channels;
  b.w1 = random_values(rng, s.ch1x1 * cin, 1.0 / 4, off_tf32_grid);
  b.w3r = random_values(rng, s.ch3x3red * cin, 1.0 / 4, off_tf32_grid);
  b.w5r = random_values(rng, s.ch5x5red * cin, 1.0 / 4, off_tf32_grid);
  b.wp = random_values(rng, s.pool_proj * cin, 1.0 / 4, off_tf32_grid);
  b.w3 = random_values(rng, s.ch3x3 * s.ch3x3red * s.k3 * s.k3, 1.0 / 8, off_tf32_grid);
  b.w5 = random_values(rng, s.ch5x5 * s.ch5x5red * s.k5 * s.k5, 1.0 / 8, off_tf32_grid);
  for (auto [bias, count] : {std::pair{&b.b1, s.ch1x1}, {&b.b3r, s.ch3x3red}, {&b.b3, s.ch3x3}, {&b.b5r, s.ch5x5red},
                             {&b.b5, s.ch5x5}, {&b.bp, s.pool_proj}}) {
    *bias = random_values(rng, size_t(count), 1.0 / 2, off_tf32_grid);
  }
  return b;
}

// How unfused PyTorch computes in a math mode, for the baseline of the numerics rule: convolution operands
// as the mode reads them (TF32 rounds them), sums in float (TF32: exact sums rounded to float, as
// fused_inception.testing.unfused_tf32), and every convolution's output rounded to the element type.
// Float64 (the reference itself) when `mode` is null.
struct Precision {
  MathMode mode;
  double operand(double v) const {
    if (mode != MathMode::kTF32) return v;
    const uint32_t bits = simt::to_tf32(float(v));
    float rounded;
    std::memcpy(&rounded, &bits, 4);
    return rounded;
  }
  double store(double v) const {
    switch (mode) {
      case MathMode::kF16:
        return simt::to_float(simt::from_float<simt::half>(float(v)));
      case MathMode::kBF16:
        return simt::to_float(simt::from_float<simt::bfloat16>(float(v)));
      default:
        return float(v);
    }
  }
  bool float_sums() const { return mode != MathMode::kTF32; }
};

// The block on a contiguous NCHW input, in float64 (precision null) or as unfused PyTorch in a math mode.
std::vector<double> reference(const Block& b, const std::vector<double>& x, int64_t n, int64_t h, int64_t w,
                              const Precision* precision = nullptr) {
  const auto& s = b.s;
  const int64_t cin = s.in_channels, cout = s.out_channels();
  std::vector<double> out(n * cout * h * w);
  auto at = [&](const std::vector<double>& t, int64_t c_count, int64_t i, int64_t c, int64_t y, int64_t xx) {
    return (y < 0 || y >= h || xx < 0 || xx >= w) ? 0.0 : t[((i * c_count + c) * h + y) * w + xx];
  };
  auto conv = [&](const std::vector<double>& in, int64_t c_in, const std::vector<double>& wt,
                  const std::vector<double>& bias, int64_t c_out, int64_t k) {
    std::vector<double> r(n * c_out * h * w);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < c_out; ++o)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t xx = 0; xx < w; ++xx) {
            double sum = 0;
            float float_sum = 0;
            for (int64_t c = 0; c < c_in; ++c)
              for (int64_t dy = 0; dy < k; ++dy)
                for (int64_t dx = 0; dx < k; ++dx) {
                  double weight = wt[((o * c_in + c) * k + dy) * k + dx];
                  double input = at(in, c_in, i, c, y + dy - k / 2, xx + dx - k / 2);
                  if (precision) weight = precision->operand(weight), input = precision->operand(input);
                  sum += weight * input;
                  float_sum = std::fmaf(float(weight), float(input), float_sum);
                }
            if (precision && precision->float_sums()) sum = float_sum;
            if (precision) sum = float(sum);
            sum += bias[o];
            if (precision) sum = float(sum);
            sum = sum > 0 ? sum : 0;
            r[((i * c_out + o) * h + y) * w + xx] = precision ? precision->store(sum) : sum;
          }
    return r;
  };
  std::vector<double> pooled(x.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < cin; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          double m = -INFINITY;
          for (int64_t dy = -1; dy <= 1; ++dy)
            for (int64_t dx = -1; dx <= 1; ++dx)
              if (y + dy >= 0 && y + dy < h && xx + dx >= 0 && xx + dx < w) m = std::max(m, at(x, cin, i, c, y + dy, xx + dx));
          pooled[((i * cin + c) * h + y) * w + xx] = m;
        }
  const std::vector<double> branches[] = {
      conv(x, cin, b.w1, b.b1, s.ch1x1, 1),
      conv(conv(x, cin, b.w3r, b.b3r, s.ch3x3red, 1), s.ch3x3red, b.w3, b.b3, s.ch3x3, s.k3),
      conv(conv(x, cin, b.w5r, b.b5r, s.ch5x5red, 1), s.ch5x5red, b.w5, b.b5, s.ch5x5, s.k5),
      conv(pooled, cin, b.wp, b.bp, s.pool_proj, 1)};
  const int64_t channels[] = {s.ch1x1, s.ch3x3, s.ch5x5, s.pool_proj};
  int64_t offset = 0;
  for (int branch = 0; branch < 4; ++branch) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < channels[branch]; ++c)
        for (int64_t p = 0; p < h * w; ++p) out[(i * cout + offset + c) * h * w + p] = branches[branch][(i * channels[branch] + c) * h * w + p];
    offset += channels[branch];
  }
  return out;
}

template <class T>
T to_element(double v) {
  return simt::from_float<T>(float(v));
}

// The weights as the kernel reads them (one place to change when the kernel's weight inputs change): weight
// rows OIHW, or, with `taps_outer`, the k x k weights in channels_last order (OHWI), each row zero-padded to
// whole 16-byte vectors (as the host's per-call copy pads rows that are not); p.weights points into `storage`.
template <class T>
struct KernelWeights {
  std::vector<T> storage[2 * fused_inception::kNumWeights];

  KernelWeights(const Block& b, bool taps_outer, InceptionParams& p) {
    const auto& s = b.s;
    const std::vector<double>* weights[] = {&b.w1, &b.w3r, &b.w3, &b.w5r, &b.w5, &b.wp};
    const std::vector<double>* biases[] = {&b.b1, &b.b3r, &b.b3, &b.b5r, &b.b5, &b.bp};
    const int64_t in[] = {s.in_channels, s.in_channels, s.ch3x3red, s.in_channels, s.ch5x5red, s.in_channels};
    const int64_t kernel[] = {1, 1, s.k3, 1, s.k5, 1};
    for (int i = 0; i < fused_inception::kNumWeights; ++i) {
      const auto& w = *weights[i];
      const int64_t k = kernel[i], taps = k * k, row = in[i] * taps, out = int64_t(w.size()) / row;
      constexpr int64_t kVector = 16 / int64_t(sizeof(T));
      const int64_t padded = (row + kVector - 1) / kVector * kVector;
      auto& rows = storage[2 * i];
      rows.assign(out * padded, to_element<T>(0.0));
      for (int64_t o = 0; o < out; ++o)
        for (int64_t c = 0; c < in[i]; ++c)
          for (int64_t tap = 0; tap < taps; ++tap)
            rows[o * padded + (taps_outer ? tap * in[i] + c : c * taps + tap)] = to_element<T>(w[(o * in[i] + c) * taps + tap]);
      auto& bias = storage[2 * i + 1];
      for (double v : *biases[i]) bias.push_back(to_element<T>(v));
      p.weights[i] = fused_inception::WeightView{rows.data(), bias.data(), padded, int32_t(taps_outer && k > 1), 0};
    }
  }
};

struct Case {
  const char* mode_name;
  InceptionShape s;
  int64_t n, h, w;
  bool channels_last;
  bool aligned;         // x's channels padded to a multiple of 8 elements (16-byte copies of x where possible)
  int64_t chunk;        // output channels per task (0: the planner's choice)
  unsigned seed;
  bool oihw_weights = false;  // NHWC x with the k x k weights as PyTorch makes them (a model not converted)
  bool clusters = true;       // a device with thread-block clusters (the 3x3 branch's tasks share its reduction)
};

std::vector<simt::Schedule> racecheck_schedules() {
  // The first schedules of fused_inception.testing.racecheck_schedules(), in the same order.
  static const char* const names[] = {"forward", "reverse@issue", "shuffle:1@issue", "shuffle:2", "reverse",
                                      "forward@issue"};
  int count = 2;
  if (const char* env = std::getenv("FUSED_INCEPTION_RACECHECK"); env && *env) count = std::atoi(env);
  count = std::max(1, count);
  std::vector<simt::Schedule> schedules;
  for (int i = 0; i < count; ++i) {
    const int seed = i - 3;  // past the fixed ones: shuffles, every other one with copies landing at issue
    schedules.push_back(i < 6 ? simt::parse_schedule(names[i], 0)
                              : simt::parse_schedule("shuffle:" + std::to_string(seed) + (seed % 2 ? "@issue" : ""), 0));
  }
  return schedules;
}

template <class T>
void run_case(MathMode mode, const Case& c) {
  const InceptionShape& s = c.s;
  const int64_t n = c.n, h = c.h, w = c.w;
  std::mt19937 rng(c.seed);
  const bool off_tf32_grid = mode == MathMode::kTF32;
  const Block block = random_block(rng, s, off_tf32_grid);
  const int64_t cin = s.in_channels, cout = s.out_channels();
  const std::vector<double> x64 = random_values(rng, n * cin * h * w, 1.0, off_tf32_grid);
  const std::vector<double> expected = reference(block, x64, n, h, w);
  const Precision precision{mode};
  const std::vector<double> unfused = reference(block, x64, n, h, w, &precision);
  // x with padding channels per pixel or plane (strided in C), in the chosen layout.
  const int64_t c_stride_pad = c.aligned ? (cin + 1 + 7) / 8 * 8 : cin + 1;
  std::vector<T> x(n * c_stride_pad * h * w, to_element<T>(1e30));
  int64_t xs[4], os[4];
  if (c.channels_last) {
    xs[0] = h * w * c_stride_pad, xs[1] = 1, xs[2] = w * c_stride_pad, xs[3] = c_stride_pad;
    os[0] = h * w * cout, os[1] = 1, os[2] = w * cout, os[3] = cout;
  } else {
    xs[0] = c_stride_pad * h * w, xs[1] = h * w, xs[2] = w, xs[3] = 1;
    os[0] = cout * h * w, os[1] = h * w, os[2] = w, os[3] = 1;
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < cin; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx)
          x[i * xs[0] + ch * xs[1] + y * xs[2] + xx * xs[3]] = to_element<T>(x64[((i * cin + ch) * h + y) * w + xx]);
  std::vector<T> out(n * cout * h * w, to_element<T>(NAN));
  InceptionParams p{};
  const KernelWeights<T> weights(block, c.channels_last && !c.oihw_weights, p);
  p.x = x.data();
  p.out = out.data();
  p.batch = n, p.height = h, p.width = w;
  std::memcpy(p.x_stride, xs, sizeof(xs));
  std::memcpy(p.out_stride, os, sizeof(os));
  p.shape = s;
  const std::string chunk = c.chunk ? std::to_string(c.chunk) : "";
  setenv("FUSED_INCEPTION_TEST_CHANNEL_CHUNK", chunk.c_str(), 1);
  std::string why;
  const bool planned = fused_inception::plan_fused_launch(p, int(sizeof(T)), 132, 227 * 1024, c.clusters, &why);
  unsetenv("FUSED_INCEPTION_TEST_CHANNEL_CHUNK");
  // Bands of 3 tiles (the planner makes one band of these few tiles): the grid's band order with a shorter
  // last band (8 tiles: 3 + 3 + 2; 4 tiles: 3 + 1).
  p.band_tiles = 3;
  // NHWC cases hold their k x k weights channels_last (OHWI), as a converted model does, unless oihw_weights.
  std::string name = std::string(c.mode_name) + (c.channels_last ? " NHWC " : " NCHW ") + std::to_string(n) + "x" +
                     std::to_string(cin) + "x" + std::to_string(h) + "x" + std::to_string(w) + " chunk " +
                     std::to_string(p.channel_chunk) + (p.x_vectorized ? " (16-byte copies of x)" : "") +
                     (c.oihw_weights ? " OIHW weights" : "") +
                     (p.cluster_ctas > 1 ? " clusters of " + std::to_string(p.cluster_ctas) : "");
  if (!planned || (c.chunk && p.channel_chunk != c.chunk)) {
    std::printf("FAIL %s: not planned as asked (%s)\n", name.c_str(), why.c_str());
    ++failures;
    return;
  }
  try {
    simt::run_schedules([&](const simt::LaunchOptions& o) { fused_inception::emu::inception::forward(mode, p, o); },
                        {{out.data(), out.size() * sizeof(T)}}, racecheck_schedules());
  } catch (const std::exception& e) {
    std::printf("FAIL %s: %s\n", name.c_str(), e.what());
    ++failures;
    return;
  }
  // The numerics rule of fused_inception/testing.py: error <= max(2 x unfused error, half an epsilon of the
  // reference's largest magnitude).
  double scale = 1;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  double worst = 0, baseline = 0, from_unfused = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < cout; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          const int64_t at = ((i * cout + ch) * h + y) * w + xx;
          const double got = simt::to_float(out[i * os[0] + ch * os[1] + y * os[2] + xx * os[3]]);
          worst = std::isnan(got) ? INFINITY : std::max(worst, std::fabs(got - expected[at]));
          baseline = std::max(baseline, std::fabs(unfused[at] - expected[at]));
          from_unfused = std::isnan(got) ? INFINITY : std::max(from_unfused, std::fabs(got - unfused[at]));
        }
  const double epsilon = mode == MathMode::kBF16 ? 0x1p-7 : mode == MathMode::kF16 ? 0x1p-10 : 0x1p-23;
  const double bound = std::max(2.0 * baseline, 0.5 * epsilon * scale);
  // TF32 also computes on exactly the operands unfused TF32 does (each rounded to nearest once), so it matches
  // it to float32 summation; a truncated operand class (the reduction, say) misses by ~1e-3 of the scale.
  const double tf32_bound = 0x1p-14 * scale;
  const bool ok = worst <= bound && (mode != MathMode::kTF32 || from_unfused <= tf32_bound);
  std::printf("%s %s: error %.3g (unfused %.3g, bound %.3g)", ok ? "ok  " : "FAIL", name.c_str(), worst, baseline,
              bound);
  if (mode == MathMode::kTF32) std::printf(", from unfused TF32 %.3g (bound %.3g)", from_unfused, tf32_bound);
  std::printf("\n");
  failures += !ok;
}

void run_case(const Case& c) {
  const std::string mode = c.mode_name;
  if (mode == "fp16") return run_case<simt::half>(MathMode::kF16, c);
  if (mode == "bf16") return run_case<simt::bfloat16>(MathMode::kBF16, c);
  if (mode == "tf32") return run_case<float>(MathMode::kTF32, c);
  return run_case<float>(MathMode::kF32, c);
}

}  // namespace

int main() {
  // Every branch split into several tasks (chunk 3: 7 = 3 + 3 + 1, 9 = 3 + 3 + 3, 6 = 3 + 3), partial tiles on
  // both edges, x read element by element.
  const InceptionShape odd{/*in*/ 19, /*1x1*/ 7, /*3r*/ 5, /*3*/ 9, /*5r*/ 3, /*5*/ 6, /*pool*/ 6, /*k3*/ 3, /*k5*/ 5};
  // K = 136 input channels: three K chunks at 16 bits (64 + 64 + 8: the last multiplies one k16 slice), five
  // at 32, so a stage is refilled while the 1x1 GEMMs run; 16-byte copies of x in NHWC, element-wise in NCHW.
  // Reductions of 8 and 4 channels: with NHWC's (tap, channel) weights the 3x3 GEMM reads A in place
  // (DirectWindows, K = 72: 64 + 8 at 16 bits, 3 chunks at 32, the last one partly past K) in every
  // tensor-core mode, the 5x5 one too in TF32 (4 channels are whole vectors of floats, not of 16-bit
  // elements, which stage them).
  InceptionShape deep = odd;
  deep.in_channels = 136, deep.ch1x1 = 10, deep.pool_proj = 9, deep.ch3x3red = 8, deep.ch5x5red = 4;
  // Two N passes of the 3x3 output GEMM (130 channels in one task) and (3, 3) kernels. A 1x1 branch of 29
  // channels: its warp of columns 0-31 stores 3 whole tiles and a part of one (the epilogue's path that tests
  // columns, with a lone last channel), right before the 3x3 branch's channels, which the grid writes first.
  InceptionShape wide = odd;
  wide.in_channels = 40, wide.ch1x1 = 29, wide.ch3x3 = 130, wide.ch3x3red = 33, wide.k5 = 3;
  // A 5x5 reduction of 96 channels: its 12x12 halo (two passes of 64 channels, rows of 104 16-bit elements)
  // fills the reduction space, so a store past the halo's 144 rows would land outside it (the other shapes
  // leave room, the pool's two halo stages being larger than their reductions: 2 x 100 x 72 elements at 16
  // bits).
  InceptionShape wide5 = odd;
  wide5.in_channels = 24, wide5.ch5x5red = 96, wide5.ch5x5 = 10;
  std::vector<Case> cases;
  unsigned seed = 1;
  for (const char* mode : {"fp16", "bf16", "tf32", "fp32"}) {
    for (bool channels_last : {false, true}) {
      cases.push_back(Case{mode, odd, 2, 9, 11, channels_last, false, 3, seed++});
      // (on a device without clusters: each 3x3 task recomputes the reduction)
      cases.push_back(Case{mode, deep, 1, 10, 13, channels_last, true, 4, seed++, false, false});
    }
  }
  cases.push_back(Case{"fp32", wide, 1, 10, 7, false, false, 0, seed++});
  cases.push_back(Case{"bf16", wide, 1, 7, 10, true, true, 0, seed++});
  cases.push_back(Case{"bf16", wide5, 1, 9, 10, true, true, 0, seed++});
  cases.push_back(Case{"fp32", wide5, 1, 10, 9, false, false, 0, seed++});
  // The 3x3 branch in three tasks of 64 channels (64 + 64 + 2): clusters of 3 CTAs share its 33-channel
  // reduction, slices of 16 + 16 + 1 channels, each stored into all three (distributed shared memory).
  cases.push_back(Case{"bf16", wide, 1, 10, 9, true, true, 64, seed++});
  cases.push_back(Case{"tf32", wide, 2, 9, 10, false, false, 64, seed++});
  // x in 16-byte copies with OIHW k x k weights: the staged windows (WindowLoader, channels outer) on the
  // transposed tiles that only vectorised x gets (the 13-wide image's right-edge tiles).
  cases.push_back(Case{"bf16", deep, 1, 10, 13, true, true, 4, seed++, true});
  // FUSED_SELFTEST_FAIL_FAST=1: stop at the first failing case (the mutation check's quick verdict).
  const char* fail_fast = std::getenv("FUSED_SELFTEST_FAIL_FAST");
  for (const Case& c : cases) {
    run_case(c);
    if (failures && fail_fast && std::string(fail_fast) == "1") break;
  }
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
