// The fused Inception kernel under the SIMT emulator, built with AddressSanitizer by tests/test_simt.py
// (the CPU memcheck of the kernel): odd shapes and strides in both layouts and every math mode, against a
// scalar float64 reference of the block, in two fiber orders. Torch-free. Exit code 0 when all pass.
#include <cmath>
#include <cstdio>
#include <cstring>
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

std::vector<double> random_values(std::mt19937& rng, size_t count, double scale) {
  std::uniform_int_distribution<int> small(-8, 8);  // multiples of 1/16: exact in fp16, bf16 and tf32
  std::vector<double> v(count);
  for (auto& x : v) x = small(rng) / 16.0 * scale;
  return v;
}

Block random_block(std::mt19937& rng, InceptionShape s) {
  Block b{s};
  const int64_t cin = s.in_channels;
  b.w1 = random_values(rng, s.ch1x1 * cin, 1.0 / 4);
  b.w3r = random_values(rng, s.ch3x3red * cin, 1.0 / 4);
  b.w5r = random_values(rng, s.ch5x5red * cin, 1.0 / 4);
  b.wp = random_values(rng, s.pool_proj * cin, 1.0 / 4);
  b.w3 = random_values(rng, s.ch3x3 * s.ch3x3red * s.k3 * s.k3, 1.0 / 8);
  b.w5 = random_values(rng, s.ch5x5 * s.ch5x5red * s.k5 * s.k5, 1.0 / 8);
  for (auto [bias, count] : {std::pair{&b.b1, s.ch1x1}, {&b.b3r, s.ch3x3red}, {&b.b3, s.ch3x3}, {&b.b5r, s.ch5x5red},
                             {&b.b5, s.ch5x5}, {&b.bp, s.pool_proj}}) {
    *bias = random_values(rng, size_t(count), 1.0 / 2);
  }
  return b;
}

// The reference block in float64 on a contiguous NCHW input.
std::vector<double> reference(const Block& b, const std::vector<double>& x, int64_t n, int64_t h, int64_t w) {
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
            double sum = bias[o];
            for (int64_t c = 0; c < c_in; ++c)
              for (int64_t dy = 0; dy < k; ++dy)
                for (int64_t dx = 0; dx < k; ++dx)
                  sum += wt[((o * c_in + c) * k + dy) * k + dx] * at(in, c_in, i, c, y + dy - k / 2, xx + dx - k / 2);
            r[((i * c_out + o) * h + y) * w + xx] = sum > 0 ? sum : 0;
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

// A block's parameters in T, as the host hands them to the kernel: weight rows OIHW, or, with `taps_outer`,
// the k x k weights in channels_last order (OHWI), each row zero-padded to whole 16-byte vectors (as the
// host's per-call copy pads rows that are not); the views point into `storage`.
template <class T>
struct Weights {
  std::vector<T> storage[2 * fused_inception::kNumWeights];
  fused_inception::WeightView views[fused_inception::kNumWeights];

  Weights(const Block& b, bool taps_outer) {
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
      views[i] = fused_inception::WeightView{rows.data(), bias.data(), padded, int32_t(taps_outer && k > 1), 0};
    }
  }
};

// `aligned`: x's channels padded to a multiple of 8 elements (16-byte copies of x); otherwise padded by one
// element (element-wise loads).
template <class T>
void run_case(MathMode mode, const char* mode_name, InceptionShape s, int64_t n, int64_t h, int64_t w, bool channels_last,
              bool aligned, unsigned seed) {
  std::mt19937 rng(seed);
  const Block block = random_block(rng, s);
  const int64_t cin = s.in_channels, cout = s.out_channels();
  const std::vector<double> x64 = random_values(rng, n * cin * h * w, 1.0);
  const std::vector<double> expected = reference(block, x64, n, h, w);
  // x with padding channels per pixel or plane (strided in C), in the chosen layout.
  const int64_t c_stride_pad = aligned ? (cin + 1 + 7) / 8 * 8 : cin + 1;
  std::vector<T> x(n * c_stride_pad * h * w, to_element<T>(1e30));
  int64_t xs[4], os[4];
  if (channels_last) {
    xs[0] = h * w * c_stride_pad, xs[1] = 1, xs[2] = w * c_stride_pad, xs[3] = c_stride_pad;
    os[0] = h * w * cout, os[1] = 1, os[2] = w * cout, os[3] = cout;
  } else {
    xs[0] = c_stride_pad * h * w, xs[1] = h * w, xs[2] = w, xs[3] = 1;
    os[0] = cout * h * w, os[1] = h * w, os[2] = w, os[3] = 1;
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < cin; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) x[i * xs[0] + c * xs[1] + y * xs[2] + xx * xs[3]] = to_element<T>(x64[((i * cin + c) * h + y) * w + xx]);
  const Weights<T> weights(block, channels_last);  // channels_last models hold channels_last weights too
  std::vector<T> out(n * cout * h * w, to_element<T>(NAN));
  InceptionParams p{};
  p.x = x.data();
  p.out = out.data();
  std::memcpy(p.weights, weights.views, sizeof(p.weights));
  p.batch = n, p.height = h, p.width = w;
  std::memcpy(p.x_stride, xs, sizeof(xs));
  std::memcpy(p.out_stride, os, sizeof(os));
  p.shape = s;
  std::string why;
  const bool planned = fused_inception::plan_fused_launch(p, int(sizeof(T)), 132, 227 * 1024, &why);
  std::string name = std::string(mode_name) + (channels_last ? " NHWC " : " NCHW ") + std::to_string(n) + "x" +
                     std::to_string(cin) + "x" + std::to_string(h) + "x" + std::to_string(w) +
                     (p.x_vectorized ? " (16-byte copies of x)" : "") +
                     (channels_last ? " (OHWI k x k weights)" : "");
  if (!planned) {
    std::printf("FAIL %s: not planned (%s)\n", name.c_str(), why.c_str());
    ++failures;
    return;
  }
  simt::run_in_orders([&](const simt::LaunchOptions& o) { fused_inception::emu::inception::forward(mode, p, o); },
                      {{out.data(), out.size() * sizeof(T)}}, {simt::FiberOrder::kForward, simt::FiberOrder::kShuffle});
  double worst = 0, scale = 1;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < cout; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          const double got = simt::to_float(out[i * os[0] + c * os[1] + y * os[2] + xx * os[3]]);
          const double want = expected[((i * cout + c) * h + y) * w + xx];
          worst = std::isnan(got) ? INFINITY : std::max(worst, std::fabs(got - want));
        }
  // 16-bit modes round the reduced activation and the output to 8 (bf16) or 11 (fp16) bits.
  const double tolerance = (mode == MathMode::kBF16 ? 1.6e-2 : mode == MathMode::kF16 ? 2e-3 : 1e-5) * scale;
  const bool ok = worst <= tolerance;
  std::printf("%s %s: max error %.3g (tolerance %.3g)\n", ok ? "ok  " : "FAIL", name.c_str(), worst, tolerance);
  failures += !ok;
}

}  // namespace

int main() {
  const InceptionShape odd{/*in*/ 19, /*1x1*/ 7, /*3r*/ 5, /*3*/ 9, /*5r*/ 3, /*5*/ 6, /*pool*/ 4, /*k3*/ 3, /*k5*/ 5};
  InceptionShape wide = odd;
  wide.in_channels = 40, wide.ch3x3 = 130, wide.ch3x3red = 33, wide.k5 = 3;  // two N passes, (3, 3) kernels
  InceptionShape aligned = odd;
  aligned.in_channels = 48;  // whole 16-byte vectors of channels in every dtype
  for (bool channels_last : {false, true}) {
    run_case<simt::half>(MathMode::kF16, "fp16", odd, 2, 9, 11, channels_last, false, 1);
    run_case<simt::bfloat16>(MathMode::kBF16, "bf16", odd, 1, 17, 5, channels_last, false, 2);
    run_case<float>(MathMode::kTF32, "tf32", odd, 2, 3, 10, channels_last, false, 3);
    run_case<float>(MathMode::kF32, "fp32", odd, 1, 12, 12, channels_last, false, 4);
    run_case<float>(MathMode::kF32, "fp32", wide, 1, 10, 7, channels_last, false, 5);
  }
  run_case<simt::bfloat16>(MathMode::kBF16, "bf16", aligned, 2, 13, 9, true, true, 6);
  run_case<simt::half>(MathMode::kF16, "fp16", aligned, 1, 8, 8, true, true, 7);
  run_case<float>(MathMode::kTF32, "tf32", aligned, 1, 9, 16, true, true, 8);
  run_case<float>(MathMode::kF32, "fp32", aligned, 2, 5, 7, true, true, 9);
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
