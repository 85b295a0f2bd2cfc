// Argument checks and the unfused ATen composition of the block (forward and backward).
// The unfused path of every device; the CPU registration of the backward.
#include <ATen/DeviceGuard.h>
#include <torch/library.h>

#include <atomic>
#include <limits>
#include <sstream>
#include <tuple>

#include "inception.h"

namespace fused_inception {
namespace {

std::string sizes_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void check_dense_like(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                      const at::Tensor& ref) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor, got layout ",
              t.layout());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name, " is on ",
              ref.device(), "; all tensors must be on one device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(), " but ",
              ref_name, " has dtype ", ref.scalar_type(), "; weights and biases must match the dtype of x");
}

// Checks a convolution weight (out, in_channels, k, k) with k among `kernels` and returns k.
int64_t check_conv_weight(const char* op, const char* name, const at::Tensor& w, int64_t in_channels,
                          const char* in_name, bool spatial) {
  const char* kernel_desc = spatial ? "3x3 or 5x5" : "1x1";
  TORCH_CHECK(w.dim() == 4, op, ": ", name, " must be a 4-D convolution weight (out_channels, ", in_name,
              ", k, k) with a ", kernel_desc, " kernel, got shape ", sizes_str(w));
  TORCH_CHECK(w.size(0) >= 1, op, ": ", name, " must have at least one output channel, got shape ",
              sizes_str(w));
  TORCH_CHECK(w.size(1) == in_channels, op, ": ", name, " must have ", in_channels, " input channels (",
              in_name, "), got shape ", sizes_str(w));
  const int64_t k = w.size(2);
  const bool kernel_ok = w.size(3) == k && (spatial ? is_supported_kernel_size(k) : k == 1);
  TORCH_CHECK(kernel_ok, op, ": ", name, " must have a ", kernel_desc, " kernel, got shape ", sizes_str(w));
  return k;
}

void check_bias(const char* op, const char* name, const at::Tensor& b, const char* w_name,
                const at::Tensor& w) {
  TORCH_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op, ": ", name, " must be a 1-D tensor of ", w.size(0),
              " elements (", w_name, ".size(0)), got shape ", sizes_str(b));
}

bool is_supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

std::atomic<bool> poison_outputs_flag{false};

}  // namespace

bool set_poison_outputs(bool enabled) { return poison_outputs_flag.exchange(enabled); }
bool poison_outputs() { return poison_outputs_flag.load(); }

InceptionShape check_weights(const char* op, const InceptionWeights& w, const at::Tensor& reference,
                             const char* reference_name) {
  TORCH_CHECK(w.w1.defined() && w.w1.dim() == 4, op,
              ": w1 must be a 4-D convolution weight (out_channels, in_channels, 1, 1)",
              w.w1.defined() ? ", got shape " + sizes_str(w.w1) : std::string());
  TORCH_CHECK(is_supported_dtype(w.w1.scalar_type()), op,
              ": weights must be float32, float16, bfloat16 or float64, got ", w.w1.scalar_type());
  const std::pair<const char*, const at::Tensor*> all[] = {
      {"w1", &w.w1}, {"b1", &w.b1}, {"w3r", &w.w3r}, {"b3r", &w.b3r}, {"w3", &w.w3}, {"b3", &w.b3},
      {"w5r", &w.w5r}, {"b5r", &w.b5r}, {"w5", &w.w5}, {"b5", &w.b5}, {"wp", &w.wp}, {"bp", &w.bp}};
  for (const auto& [name, t] : all) check_dense_like(op, name, *t, reference_name, reference);

  InceptionShape s;
  s.in_channels = w.w1.size(1);
  TORCH_CHECK(s.in_channels >= 1, op, ": w1 must have at least one input channel, got shape ", sizes_str(w.w1));
  check_conv_weight(op, "w1", w.w1, s.in_channels, "in_channels", false);
  check_conv_weight(op, "w3r", w.w3r, s.in_channels, "in_channels", false);
  check_conv_weight(op, "w5r", w.w5r, s.in_channels, "in_channels", false);
  check_conv_weight(op, "wp", w.wp, s.in_channels, "in_channels", false);
  s.ch1x1 = w.w1.size(0);
  s.ch3x3red = w.w3r.size(0);
  s.ch5x5red = w.w5r.size(0);
  s.pool_proj = w.wp.size(0);
  s.k3 = check_conv_weight(op, "w3", w.w3, s.ch3x3red, "w3r.size(0)", true);
  s.k5 = check_conv_weight(op, "w5", w.w5, s.ch5x5red, "w5r.size(0)", true);
  s.ch3x3 = w.w3.size(0);
  s.ch5x5 = w.w5.size(0);
  check_bias(op, "b1", w.b1, "w1", w.w1);
  check_bias(op, "b3r", w.b3r, "w3r", w.w3r);
  check_bias(op, "b3", w.b3, "w3", w.w3);
  check_bias(op, "b5r", w.b5r, "w5r", w.w5r);
  check_bias(op, "b5", w.b5, "w5", w.w5);
  check_bias(op, "bp", w.bp, "wp", w.wp);
  return s;
}

InceptionShape check_inception_args(const char* op, const at::Tensor& x, const InceptionWeights& w) {
  TORCH_CHECK(x.defined(), op, ": x is undefined");
  TORCH_CHECK(x.dim() == 4, op, ": x must be a 4-D (N, C, H, W) tensor, got a ", x.dim(),
              "-D tensor of shape ", sizes_str(x));
  TORCH_CHECK(x.layout() == at::kStrided, op, ": x must be a dense (strided) tensor, got layout ", x.layout());
  TORCH_CHECK(is_supported_dtype(x.scalar_type()), op,
              ": x must be float32, float16, bfloat16 or float64, got ", x.scalar_type());
  const auto s = check_weights(op, w, x, "x");
  TORCH_CHECK(x.size(1) == s.in_channels, op, ": x has ", x.size(1), " channels (shape ", sizes_str(x),
              ") but the weights expect in_channels = ", s.in_channels, " (w1.size(1))");
  return s;
}

namespace {

at::Tensor conv_same(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t pad = weight.size(2) / 2;
  return at::convolution(input, weight, bias, {1, 1}, {pad, pad}, {1, 1}, false, {0, 0}, 1);
}

at::Tensor max_pool_3x3(const at::Tensor& x) { return at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1}); }

}  // namespace

at::Tensor inception_forward_unfused(const at::Tensor& x_in, const InceptionWeights& w) {
  constexpr const char* op = "fused_inception::inception_forward";
  const auto s = check_inception_args(op, x_in, w);
  const at::OptionalDeviceGuard device_guard(at::device_of(x_in));
  const auto format = x_in.suggest_memory_format();
  auto out = at::empty({x_in.size(0), s.out_channels(), x_in.size(2), x_in.size(3)},
                       x_in.options().memory_format(format));
  if (out.numel() == 0) return out;
  if (poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());

  // Call for call like eager PyTorch, so its numerics are the baseline's.
  const auto x = x_in.contiguous(format);
  auto conv_relu = [](const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias) {
    return conv_same(input, weight, bias).relu_();
  };
  out.narrow(1, s.out_offset_branch1(), s.ch1x1).copy_(conv_relu(x, w.w1, w.b1));
  out.narrow(1, s.out_offset_branch2(), s.ch3x3).copy_(conv_relu(conv_relu(x, w.w3r, w.b3r), w.w3, w.b3));
  out.narrow(1, s.out_offset_branch3(), s.ch5x5).copy_(conv_relu(conv_relu(x, w.w5r, w.b5r), w.w5, w.b5));
  out.narrow(1, s.out_offset_branch4(), s.pool_proj).copy_(conv_relu(max_pool_3x3(x), w.wp, w.bp));
  return out;
}

std::vector<at::Tensor> inception_backward_unfused(const at::Tensor& grad_out, const at::Tensor& x_in,
                                                   const at::Tensor& out, const InceptionWeights& w) {
  constexpr const char* op = "fused_inception::inception_backward";
  const auto s = check_inception_args(op, x_in, w);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"grad_out", &grad_out}, {"out", &out}}) {
    check_dense_like(op, name, *t, "x", x_in);
    TORCH_CHECK(t->dim() == 4 && t->size(0) == x_in.size(0) && t->size(1) == s.out_channels() &&
                    t->size(2) == x_in.size(2) && t->size(3) == x_in.size(3),
                op, ": ", name, " must have shape [", x_in.size(0), ", ", s.out_channels(), ", ", x_in.size(2), ", ",
                x_in.size(3), "] (the block's output), got ", sizes_str(*t));
  }
  const at::OptionalDeviceGuard device_guard(at::device_of(x_in));
  const auto format = x_in.suggest_memory_format();
  // Parameter gradients are returned contiguous and the input's in its memory format, whatever layouts the
  // convolution backends pick, so the fake implementation can promise the same strides.
  std::vector<at::Tensor> grads{at::empty(x_in.sizes(), x_in.options().memory_format(format)).zero_()};
  for (const auto* t : {&w.w1, &w.b1, &w.w3r, &w.b3r, &w.w3, &w.b3, &w.w5r, &w.b5r, &w.w5, &w.b5, &w.wp, &w.bp}) {
    grads.push_back(at::zeros(t->sizes(), t->options()));
  }
  if (x_in.numel() == 0) return grads;

  const auto x = x_in.contiguous(format);
  const std::array<bool, 3> all{true, true, true};
  // Returns (grad_input, grad_weight, grad_bias) of conv_same(input, weight, bias).
  auto conv_backward = [&](const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight) {
    const int64_t pad = weight.size(2) / 2;
    return at::convolution_backward(grad, input, weight, at::IntArrayRef{weight.size(0)}, {1, 1}, {pad, pad},
                                    {1, 1}, false, {0, 0}, 1, all);
  };
  // Gradient at a branch's pre-activation: ReLU passes it where the branch's output is positive.
  auto branch_grad = [&](int64_t offset, int64_t channels) {
    return at::threshold_backward(grad_out.narrow(1, offset, channels), out.narrow(1, offset, channels), 0);
  };
  auto& grad_x = grads[0];
  auto store = [&](size_t weight_index, const std::tuple<at::Tensor, at::Tensor, at::Tensor>& g) {
    grad_x.add_(std::get<0>(g));
    grads[weight_index].copy_(std::get<1>(g));
    grads[weight_index + 1].copy_(std::get<2>(g));
  };
  // A spatial branch: reduce (1x1) -> ReLU -> k x k conv -> ReLU.
  auto spatial_branch = [&](size_t reduce_index, const at::Tensor& w_reduce, const at::Tensor& b_reduce,
                            const at::Tensor& w_spatial, int64_t offset) {
    const auto reduced = conv_same(x, w_reduce, b_reduce).relu_();
    auto g_spatial = conv_backward(branch_grad(offset, w_spatial.size(0)), reduced, w_spatial);
    grads[reduce_index + 2].copy_(std::get<1>(g_spatial));
    grads[reduce_index + 3].copy_(std::get<2>(g_spatial));
    store(reduce_index, conv_backward(at::threshold_backward(std::get<0>(g_spatial), reduced, 0), x, w_reduce));
  };

  store(1, conv_backward(branch_grad(s.out_offset_branch1(), s.ch1x1), x, w.w1));
  spatial_branch(3, w.w3r, w.b3r, w.w3, s.out_offset_branch2());
  spatial_branch(7, w.w5r, w.b5r, w.w5, s.out_offset_branch3());
  const auto pooled = at::max_pool2d_with_indices(x, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false);
  auto g_pool = conv_backward(branch_grad(s.out_offset_branch4(), s.pool_proj), std::get<0>(pooled), w.wp);
  grads[11].copy_(std::get<1>(g_pool));
  grads[12].copy_(std::get<2>(g_pool));
  grad_x.add_(at::max_pool2d_with_indices_backward(std::get<0>(g_pool), x, {3, 3}, {1, 1}, {1, 1}, {1, 1}, false,
                                                   std::get<1>(pooled)));
  return grads;
}

namespace {

std::vector<at::Tensor> inception_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                               const at::Tensor& out, FUSED_INCEPTION_WEIGHT_PARAMS) {
  return inception_backward_unfused(grad_out, x, out, FUSED_INCEPTION_WEIGHTS_STRUCT);
}

}  // namespace

// The CPU forward is registered with the fused kernel's glue (inception_fused.cpp).
TORCH_LIBRARY_IMPL(fused_inception, CPU, m) { m.impl("inception_backward", &inception_backward_cpu); }

}  // namespace fused_inception
