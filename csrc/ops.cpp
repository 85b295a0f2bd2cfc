// The operator schemas (declared once, here) and the autocast wrapper, shared by every backend.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "inception.h"

namespace fused_inception {
namespace {

// Autocast: like PyTorch's own convolutions (lower_precision_fp policy), run in the autocast dtype of the
// device. Float64 inputs are left alone by cached_cast, as for conv2d.
template <c10::DeviceType device_type>
at::Tensor inception_forward_autocast(const at::Tensor& x, FUSED_INCEPTION_WEIGHT_PARAMS) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device_type));
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fused_inception::inception_forward", "")
                             .typed<at::Tensor(const at::Tensor&, FUSED_INCEPTION_WEIGHT_PARAMS)>();
  const auto dtype = at::autocast::get_autocast_dtype(device_type);
  auto cast = [&](const at::Tensor& t) { return at::autocast::cached_cast(dtype, t, device_type); };
  return op.call(cast(x), cast(w1), cast(b1), cast(w3r), cast(b3r), cast(w3), cast(b3), cast(w5r),
                 cast(b5r), cast(w5), cast(b5), cast(wp), cast(bp));
}

}  // namespace

TORCH_LIBRARY(fused_inception, m) {
  m.def(
      "inception_forward(Tensor x, Tensor w1, Tensor b1, Tensor w3r, Tensor b3r, Tensor w3, Tensor b3, "
      "Tensor w5r, Tensor b5r, Tensor w5, Tensor b5, Tensor wp, Tensor bp) -> Tensor");
  m.def(
      "inception_backward(Tensor grad_out, Tensor x, Tensor out, Tensor w1, Tensor b1, Tensor w3r, "
      "Tensor b3r, Tensor w3, Tensor b3, Tensor w5r, Tensor b5r, Tensor w5, Tensor b5, Tensor wp, "
      "Tensor bp) -> Tensor[]");
  m.def("_set_poison_outputs(bool enabled) -> bool", &set_poison_outputs);
}

TORCH_LIBRARY_IMPL(fused_inception, AutocastCUDA, m) {
  m.impl("inception_forward", &inception_forward_autocast<c10::DeviceType::CUDA>);
}

TORCH_LIBRARY_IMPL(fused_inception, AutocastCPU, m) {
  m.impl("inception_forward", &inception_forward_autocast<c10::DeviceType::CPU>);
}

}  // namespace fused_inception
