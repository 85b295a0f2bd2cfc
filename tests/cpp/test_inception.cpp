// C++ test of libfused_inception: the op through the dispatcher (as a C++ user calls it) against the block
// composed from torch's own ops in float64, on both CPU backends (the unfused composition, and the fused
// kernel's source under the SIMT emulator), plus argument checking. Exit code 0 on success.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "inception.h"

namespace {

int failures = 0;

std::string format_error(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

torch::Tensor conv_relu(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return torch::relu(torch::conv2d(x, w, b, 1, w.size(2) / 2));
}

torch::Tensor reference(const torch::Tensor& x, const fused_inception::InceptionWeights& w) {
  auto pooled = torch::max_pool2d(x, 3, 1, 1);
  return torch::cat({conv_relu(x, w.w1, w.b1), conv_relu(conv_relu(x, w.w3r, w.b3r), w.w3, w.b3),
                     conv_relu(conv_relu(x, w.w5r, w.b5r), w.w5, w.b5), conv_relu(pooled, w.wp, w.bp)},
                    1);
}

fused_inception::InceptionWeights random_weights(int64_t cin, torch::ScalarType dtype) {
  auto w = [&](int64_t out, int64_t in, int64_t k) { return torch::randn({out, in, k, k}, dtype) * 0.2; };
  auto b = [&](int64_t out) { return torch::randn({out}, dtype) * 0.1; };
  return {w(8, cin, 1), b(8), w(6, cin, 1), b(6), w(10, 6, 3), b(10),
          w(3, cin, 1), b(3), w(5, 3, 5), b(5), w(4, cin, 1), b(4)};
}

}  // namespace

int main() {
  torch::manual_seed(0);
  // Float32 held to the float32 rule: exact FMA in the fused kernel, not TF32 (cuDNN's default).
  at::globalContext().setAllowTF32CuDNN(false);
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("fused_inception::inception_forward", "")
                      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&)>();
  const auto set_backend = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fused_inception::_set_backend", "")
                               .typed<std::string(const std::string&, const std::string&)>();
  for (const std::string backend : {"unfused", "fused"})
  for (const bool channels_last : {false, true}) {
    set_backend.call("cpu", backend);
    const auto w64 = random_weights(12, torch::kFloat64);
    auto x64 = torch::randn({2, 12, 9, 7}, torch::kFloat64);
    const auto expected = reference(x64, w64);
    auto w = w64;
    for (auto* t : {&w.w1, &w.b1, &w.w3r, &w.b3r, &w.w3, &w.b3, &w.w5r, &w.b5r, &w.w5, &w.b5, &w.wp, &w.bp}) {
      *t = t->to(torch::kFloat32);
    }
    auto x = x64.to(torch::kFloat32);
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    const auto out = op.call(x, w.w1, w.b1, w.w3r, w.b3r, w.w3, w.b3, w.w5r, w.b5r, w.w5, w.b5, w.wp, w.bp);
    const std::string layout = std::string(channels_last ? "channels_last" : "NCHW") + ", " + backend;
    expect(out.sizes() == expected.sizes(), "output shape, " + layout);
    expect(out.is_contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous),
           "output keeps the input's memory format, " + layout);
    const double error = (out.to(torch::kFloat64) - expected).abs().max().item<double>();
    const double baseline = (reference(x, w).to(torch::kFloat64) - expected).abs().max().item<double>();
    set_backend.call("cpu", "unfused");
    expect(error <= 2 * baseline + 1e-7, "float32 error " + format_error(error) + " <= 2 x unfused error " +
                                             format_error(baseline) + ", " + layout);
  }

  auto w = random_weights(12, torch::kFloat32);
  w.w3 = torch::randn({10, 5, 3, 3});
  try {
    op.call(torch::randn({1, 12, 4, 4}), w.w1, w.b1, w.w3r, w.b3r, w.w3, w.b3, w.w5r, w.b5r, w.w5, w.b5, w.wp,
            w.bp);
    expect(false, "mismatched w3 raises");
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    expect(message.find("w3 must have 6 input channels") != std::string::npos, "error names w3: " + message);
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
