// The fused kernel's host glue (backend choice, launch parameters) and the CPU registration of the forward:
// the unfused composition, or the fused kernel under the SIMT emulator when the CPU backend is "fused".
#include <ATen/Context.h>
#include <ATen/DeviceGuard.h>
#include <torch/library.h>

#include <atomic>
#include <limits>

#include "inception_fused.h"
#include "kernels/inception_api.h"
#include "simt/simt.h"

namespace fused_inception {
namespace {

std::atomic<Backend> cpu_backend{Backend::kUnfused};
std::atomic<Backend> cuda_backend{Backend::kFused};

std::atomic<Backend>& backend_slot(c10::DeviceType device_type) {
  TORCH_CHECK(device_type == c10::DeviceType::CPU || device_type == c10::DeviceType::CUDA,
              "fused_inception: backends exist for cpu and cuda, not ", device_type);
  return device_type == c10::DeviceType::CPU ? cpu_backend : cuda_backend;
}

Backend parse_backend(const std::string& name) {
  if (name == "fused") return Backend::kFused;
  if (name == "unfused") return Backend::kUnfused;
  TORCH_CHECK(false, "fused_inception::_set_backend: backend must be 'fused' or 'unfused', got '", name, "'");
}

const char* backend_name(Backend backend) { return backend == Backend::kFused ? "fused" : "unfused"; }

}  // namespace

Backend backend_for(c10::DeviceType device_type) { return backend_slot(device_type).load(); }
void set_backend_for(c10::DeviceType device_type, Backend backend) { backend_slot(device_type).store(backend); }

MathMode math_mode_for(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf:
      return MathMode::kF16;
    case at::kBFloat16:
      return MathMode::kBF16;
    default:
      // Like PyTorch's own convolutions: TF32 tensor cores where cuDNN may use them.
      return at::globalContext().allowTF32CuDNN() ? MathMode::kTF32 : MathMode::kF32;
  }
}

at::Tensor inception_forward_dispatch(const at::Tensor& x, const InceptionWeights& w,
                                      const std::optional<at::Tensor>& packed, const FusedLauncher& launcher) {
  constexpr const char* op = "fused_inception::inception_forward";
  const auto s = check_inception_args(op, x, w);
  const auto dtype = x.scalar_type();
  const bool fused_dtype = dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat;
  if (backend_for(x.device().type()) != Backend::kFused || !fused_dtype) {
    return inception_forward_unfused(x, w, packed);
  }
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  at::Tensor weights;
  if (packed.has_value() && packed->defined()) {
    check_packed(op, *packed, x, s);
    weights = *packed;
  } else {
    weights = pack_weights(w);  // per call: FusedInception passes a pack it keeps per weight version
  }

  InceptionParams p{};
  p.x = x.data_ptr();
  p.packed = weights.data_ptr();
  p.batch = x.size(0);
  p.height = x.size(2);
  p.width = x.size(3);
  p.shape = s;
  p.layout = packed_layout(s);
  for (int d = 0; d < 4; ++d) p.x_stride[d] = x.stride(d);
  std::string why_not;
  if (!plan_fused_launch(p, int(x.element_size()), launcher.sm_count, launcher.shared_memory_limit, &why_not)) {
    return inception_forward_unfused(x, w, packed);  // a correct general path for what the kernel skips
  }
  const auto out = at::empty({x.size(0), s.out_channels(), x.size(2), x.size(3)},
                             x.options().memory_format(x.suggest_memory_format()));
  if (out.numel() == 0) return out;
  if (poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());
  p.out = out.data_ptr();
  for (int d = 0; d < 4; ++d) p.out_stride[d] = out.stride(d);
  launcher.launch(math_mode_for(dtype), p, out);
  return out;
}

namespace {

// The CPU "device": an H100's multiprocessor count and shared memory, so that plans match the GPU's.
constexpr int kEmulatedSmCount = 132;
constexpr size_t kEmulatedSharedMemory = 227 * 1024;

at::Tensor inception_forward_cpu(const at::Tensor& x, FUSED_INCEPTION_WEIGHT_PARAMS,
                                 const std::optional<at::Tensor>& packed) {
  static const FusedLauncher emulated{
      kEmulatedSmCount, kEmulatedSharedMemory, [](MathMode mode, const InceptionParams& p, const at::Tensor& out) {
        simt::run_checked([&](const simt::LaunchOptions& options) { emu::inception::forward(mode, p, options); },
                          {{out.data_ptr(), size_t(out.nbytes())}});
      }};
  return inception_forward_dispatch(x, FUSED_INCEPTION_WEIGHTS_STRUCT, packed, emulated);
}

std::string set_backend(const std::string& device, const std::string& name) {
  const auto device_type = c10::Device(device).type();
  const std::string previous = backend_name(backend_for(device_type));
  set_backend_for(device_type, parse_backend(name));
  return previous;
}

std::string get_backend(const std::string& device) { return backend_name(backend_for(c10::Device(device).type())); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(fused_inception, m) {
  m.def("_set_backend(str device, str backend) -> str", &set_backend);
  m.def("_get_backend(str device) -> str", &get_backend);
}

TORCH_LIBRARY_IMPL(fused_inception, CPU, m) { m.impl("inception_forward", &inception_forward_cpu); }

}  // namespace fused_inception
