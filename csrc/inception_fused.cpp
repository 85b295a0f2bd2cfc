// The fused kernel's host glue (backend choice, launch parameters) and the CPU registration of the forward:
// the unfused composition, or the fused kernel under the SIMT emulator when the CPU backend is "fused".
#include <ATen/Context.h>
#include <ATen/DeviceGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <cstring>
#include <limits>

#include "inception_fused.h"
#include "kernels/inception_api.h"
#include "simt/simt.h"

namespace fused_inception {
namespace {

// Per thread (see backend_for); a thread starts with the defaults.
thread_local Backend cpu_backend = Backend::kUnfused;
thread_local Backend cuda_backend = Backend::kFused;

Backend& backend_slot(c10::DeviceType device_type) {
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

Backend backend_for(c10::DeviceType device_type) { return backend_slot(device_type); }
void set_backend_for(c10::DeviceType device_type, Backend backend) { backend_slot(device_type) = backend; }

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

namespace {

thread_local bool routing = true;

// Measured on an H200 (2026-11-28, benchmarks/results/2026-11-28-h200-2). In batch x height x width pixels:
// - NCHW x: at batch 256 the kernel on NCHW ran 1.55-1.65x the time of the kernel on channels_last in bf16
//   (Nsight Compute, 3a 4d 5b: 3a 1685 vs 1026 us) and 1.21-1.26x in TF32, more than the two copies cost
//   (3a: about 86 us in bf16, 172 in float32); at batch 32 the op on NCHW ran 1.1-1.8x the channels_last op.
//   Below batch 32 on 7x7 (1568 pixels) it was not measured: the NCHW kernel stays there.
constexpr int64_t kChannelsLastCopyMinPixels = 32 * 7 * 7;
// - TF32: the kernel ran 0.50-0.72x cuDNN's speed at batch 256 on every block and 0.64-0.92x at batch 32 on
//   28x28 images; at batch 32 on 14x14 and 7x7 (6272 and 1568 pixels) it won on 6 of 7 blocks.
constexpr int64_t kTf32UnfusedMinPixels = 256 * 7 * 7;

}  // namespace

bool routing_enabled() { return routing; }
void set_routing(bool enabled) { routing = enabled; }

const char* route_name(Route route) {
  switch (route) {
    case Route::kKernel:
      return "kernel";
    case Route::kKernelOnChannelsLastCopy:
      return "kernel_on_channels_last_copy";
    default:
      return "unfused";
  }
}

Route route_for_case(int64_t pixels, MathMode mode, bool dense_nchw, int64_t pixel_bytes) {
  if (mode == MathMode::kTF32 && pixels >= kTf32UnfusedMinPixels) return Route::kUnfused;
  // Only a dense NCHW x whose channels_last copy the kernel reads in 16-byte vectors (whole vectors a pixel).
  if (mode != MathMode::kF32 && dense_nchw && pixel_bytes % 16 == 0 && pixels >= kChannelsLastCopyMinPixels) {
    return Route::kKernelOnChannelsLastCopy;
  }
  return Route::kKernel;
}

Route route_for(const at::Tensor& x) {
  const auto dtype = x.scalar_type();
  const bool kernel_dtype = dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat;
  if (backend_for(x.device().type()) != Backend::kFused || !kernel_dtype) return Route::kUnfused;
  if (!routing || x.dim() != 4) return Route::kKernel;
  const bool dense_nchw = x.is_contiguous() && !x.is_contiguous(at::MemoryFormat::ChannelsLast);
  return route_for_case(x.size(0) * x.size(2) * x.size(3), math_mode_for(dtype), dense_nchw,
                        x.size(1) * int64_t(x.element_size()));
}

bool window_weights_copied_case(int64_t pixels, MathMode mode) {
  return mode != MathMode::kF32 && pixels >= kChannelsLastCopyMinPixels;
}

bool window_weights_copied(const at::Tensor& x) {
  if (!routing || x.dim() != 4) return false;
  return window_weights_copied_case(x.size(0) * x.size(2) * x.size(3), math_mode_for(x.scalar_type()));
}

// The kernel reads the windows in place only for (tap, channel) weights over whole 16-byte vectors of
// reduced channels (DirectWindows); for other channel counts it stages them either way.
bool reads_windows_in_place(int64_t reduced_channels, int64_t element_bytes) {
  return (reduced_channels * element_bytes) % 16 == 0;
}

InceptionWeights with_window_weights_in_place(const InceptionWeights& w, int64_t element_bytes) {
  auto in_place = [&](const at::Tensor& weight) {
    return reads_windows_in_place(weight.size(1), element_bytes) ? weight.contiguous(at::MemoryFormat::ChannelsLast)
                                                                 : weight;
  };
  InceptionWeights copied = w;
  copied.w3 = in_place(w.w3);
  copied.w5 = in_place(w.w5);
  return copied;
}

namespace {

// True when t's strides past the first dimension are those of a dense tensor whose dimensions run, from
// outermost to innermost, in `order` (size-1 dimensions may have any stride).
bool dense_past_first(const at::Tensor& t, std::initializer_list<int64_t> order) {
  int64_t expected = 1;
  for (auto d = std::rbegin(order); d != std::rend(order); ++d) {
    if (t.size(*d) != 1 && t.stride(*d) != expected) return false;
    expected *= t.size(*d);
  }
  return true;
}

// Where the kernel reads convolution (weight, bias): in place when every output channel's row is dense in
// one of the two K orders the kernel knows, (channel, tap) as in OIHW or (tap, channel) as in channels_last,
// and rows are whole aligned 16-byte vectors (every GoogLeNet block, in either layout). Otherwise from a copy
// made for this call (never kept: it cannot go stale), rows zero-padded to whole vectors; kept alive in
// `copies` until the launch is queued.
WeightView weight_view(const at::Tensor& weight, const at::Tensor& bias, std::vector<at::Tensor>& copies) {
  WeightView view{};
  const int64_t vector = 16 / int64_t(weight.element_size());
  const int64_t out = weight.size(0), k = weight.size(1) * weight.size(2) * weight.size(3);
  const bool oihw = dense_past_first(weight, {1, 2, 3}), ohwi = dense_past_first(weight, {2, 3, 1});
  if ((oihw || ohwi) && k % vector == 0 && weight.stride(0) % vector == 0 &&
      reinterpret_cast<uintptr_t>(weight.data_ptr()) % 16 == 0) {
    view.weight = weight.data_ptr();
    view.row_stride = weight.stride(0);
    view.taps_outer = !oihw;
  } else {
    auto rows = copies.emplace_back(at::zeros({out, (k + vector - 1) / vector * vector}, weight.options()));
    rows.narrow(1, 0, k).copy_(weight.reshape({out, k}));  // K = (channel, tap), the logical order
    view.weight = rows.data_ptr();
    view.row_stride = rows.size(1);
    view.taps_outer = 0;
  }
  view.bias = (bias.size(0) == 1 || bias.stride(0) == 1 ? bias : copies.emplace_back(bias.contiguous())).data_ptr();
  return view;
}

}  // namespace

namespace {
at::Tensor inception_forward_kernel(const at::Tensor& x, const InceptionWeights& w, const InceptionShape& s,
                                    const FusedLauncher& launcher);
}  // namespace

at::Tensor inception_forward_dispatch(const at::Tensor& x, const InceptionWeights& w,
                                      const FusedLauncher& launcher) {
  constexpr const char* op = "fused_inception::inception_forward";
  const auto s = check_inception_args(op, x, w);
  switch (route_for(x)) {
    case Route::kUnfused:
      return inception_forward_unfused(x, w);
    case Route::kKernelOnChannelsLastCopy: {
      const at::OptionalDeviceGuard device_guard(at::device_of(x));
      return inception_forward_kernel(x.contiguous(at::MemoryFormat::ChannelsLast),
                                      with_window_weights_in_place(w, x.element_size()), s, launcher)
          .contiguous();
    }
    default:
      if (window_weights_copied(x)) {
        const at::OptionalDeviceGuard device_guard(at::device_of(x));
        return inception_forward_kernel(x, with_window_weights_in_place(w, x.element_size()), s, launcher);
      }
      return inception_forward_kernel(x, w, s, launcher);
  }
}

namespace {

// The fused kernel on x as it is, or the unfused composition where the kernel's plan refuses the case.
at::Tensor inception_forward_kernel(const at::Tensor& x, const InceptionWeights& w, const InceptionShape& s,
                                    const FusedLauncher& launcher) {
  const at::OptionalDeviceGuard device_guard(at::device_of(x));
  InceptionParams p{};
  p.x = x.data_ptr();
  std::vector<at::Tensor> copies;  // alive until the launch is queued (stream order protects the reads)
  p.weights[kW1] = weight_view(w.w1, w.b1, copies);
  p.weights[kW3r] = weight_view(w.w3r, w.b3r, copies);
  p.weights[kW3] = weight_view(w.w3, w.b3, copies);
  p.weights[kW5r] = weight_view(w.w5r, w.b5r, copies);
  p.weights[kW5] = weight_view(w.w5, w.b5, copies);
  p.weights[kWp] = weight_view(w.wp, w.bp, copies);
  p.batch = x.size(0);
  p.height = x.size(2);
  p.width = x.size(3);
  p.shape = s;
  for (int d = 0; d < 4; ++d) p.x_stride[d] = x.stride(d);
  std::string why_not;
  if (!plan_fused_launch(p, int(x.element_size()), launcher.sm_count, launcher.shared_memory_limit,
                         launcher.has_clusters, &why_not)) {
    return inception_forward_unfused(x, w);  // a correct general path for what the kernel skips
  }
  const auto out = at::empty({x.size(0), s.out_channels(), x.size(2), x.size(3)},
                             x.options().memory_format(x.suggest_memory_format()));
  if (out.numel() == 0) return out;
  if (poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());
  p.out = out.data_ptr();
  for (int d = 0; d < 4; ++d) p.out_stride[d] = out.stride(d);
  launcher.launch(math_mode_for(x.scalar_type()), p, out);
  return out;
}

// The CPU "device": an H100's multiprocessor count, shared memory and clusters, so that plans match the GPU's.
constexpr int kEmulatedSmCount = 132;
constexpr size_t kEmulatedSharedMemory = 227 * 1024;

at::Tensor inception_forward_cpu(const at::Tensor& x, FUSED_INCEPTION_WEIGHT_PARAMS) {
  static const FusedLauncher emulated{
      kEmulatedSmCount, kEmulatedSharedMemory, true, [](MathMode mode, const InceptionParams& p, const at::Tensor& out) {
        simt::run_checked([&](const simt::LaunchOptions& options) { emu::inception::forward(mode, p, options); },
                          {{out.data_ptr(), size_t(out.nbytes())}});
      }};
  return inception_forward_dispatch(x, FUSED_INCEPTION_WEIGHTS_STRUCT, emulated);
}

std::string set_backend(const std::string& device, const std::string& name) {
  const auto device_type = c10::Device(device).type();
  const std::string previous = backend_name(backend_for(device_type));
  set_backend_for(device_type, parse_backend(name));
  return previous;
}

std::string get_backend(const std::string& device) { return backend_name(backend_for(c10::Device(device).type())); }

// What the forward would run for x under the current backend and routing (before the kernel's own plan,
// which can still refuse a case: shared memory): "unfused", "kernel" or "kernel_on_channels_last_copy".
std::string route_of(const at::Tensor& x) { return route_name(route_for(x)); }

bool set_routing_op(bool enabled) {
  const bool previous = routing_enabled();
  set_routing(enabled);
  return previous;
}

}  // namespace

// For the CuPy path, which builds launches in Python (fused_inception/launch.py): the byte layout of
// InceptionParams, the host plan, and an emulated launch of parameters built in Python.
std::vector<int64_t> fused_params_layout() {
  return {int64_t(sizeof(InceptionParams)),       int64_t(offsetof(InceptionParams, x)),
          int64_t(offsetof(InceptionParams, out)), int64_t(offsetof(InceptionParams, weights)),
          int64_t(sizeof(WeightView)),             int64_t(offsetof(WeightView, bias)),
          int64_t(offsetof(WeightView, row_stride)), int64_t(offsetof(WeightView, taps_outer)),
          int64_t(offsetof(WeightView, padding)),
          int64_t(offsetof(InceptionParams, batch)), int64_t(offsetof(InceptionParams, height)),
          int64_t(offsetof(InceptionParams, width)), int64_t(offsetof(InceptionParams, x_stride)),
          int64_t(offsetof(InceptionParams, out_stride)), int64_t(offsetof(InceptionParams, shape)),
          int64_t(offsetof(InceptionParams, tiles_h)),
          int64_t(offsetof(InceptionParams, tiles_w)), int64_t(offsetof(InceptionParams, x_vectorized)),
          int64_t(offsetof(InceptionParams, reduced_elements)), int64_t(offsetof(InceptionParams, channel_chunk)),
          int64_t(offsetof(InceptionParams, num_tasks)), int64_t(offsetof(InceptionParams, band_tiles)),
          int64_t(offsetof(InceptionParams, cluster_ctas))};
}

InceptionShape shape_from_list(const std::vector<int64_t>& v) {
  TORCH_CHECK(v.size() == 9, "fused_inception: a block shape is 9 integers (in_channels, ch1x1, ch3x3red, ch3x3, ",
              "ch5x5red, ch5x5, pool_proj, k3, k5), got ", v.size());
  return InceptionShape{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
}

// [supported, channel_chunk, num_tasks, tiles_h, tiles_w, reduced_elements, shared_bytes, x_vectorized,
// band_tiles, cluster_ctas] for
// a contiguous input in the given layout and weight rows of `weight_row_stride` elements (0: their length K),
// all at 16-byte aligned addresses, on a device with thread-block clusters or without.
std::vector<int64_t> fused_plan(const std::vector<int64_t>& shape, int64_t batch, int64_t height, int64_t width,
                                int64_t element_bytes, bool channels_last, int64_t sm_count,
                                int64_t shared_memory_limit, int64_t weight_row_stride, bool clusters) {
  InceptionParams p{};
  p.shape = shape_from_list(shape);
  p.batch = batch, p.height = height, p.width = width;
  const int64_t c = p.shape.in_channels;
  const int64_t strides[4] = {c * height * width, channels_last ? 1 : height * width,
                              channels_last ? width * c : width, channels_last ? c : 1};
  std::copy(strides, strides + 4, p.x_stride);
  alignas(16) static const unsigned char aligned[16] = {};
  p.x = aligned;
  for (int index = 0; index < kNumWeights; ++index) {
    p.weights[index].weight = aligned;
    p.weights[index].row_stride = weight_row_stride ? weight_row_stride : weight_row_length(p.shape, index);
  }
  const bool ok = plan_fused_launch(p, int(element_bytes), int(sm_count), size_t(shared_memory_limit), clusters,
                                    nullptr);
  return {ok, p.channel_chunk, p.num_tasks, p.tiles_h, p.tiles_w, p.reduced_elements,
          int64_t(fused_shared_bytes(p.shape, int(element_bytes))), p.x_vectorized, p.band_tiles, p.cluster_ctas};
}

MathMode parse_mode(const std::string& mode) {
  if (mode == "f16") return MathMode::kF16;
  if (mode == "bf16") return MathMode::kBF16;
  if (mode == "tf32") return MathMode::kTF32;
  if (mode == "f32") return MathMode::kF32;
  TORCH_CHECK(false, "fused_inception: math mode must be f16, bf16, tf32 or f32, got ", mode);
}

// Runs the emulated kernel on parameters whose pointers address CPU memory (racecheck orders apply).
void simt_launch_params(const at::Tensor& params, const std::string& mode) {
  TORCH_CHECK(params.device().is_cpu() && params.scalar_type() == at::kByte && params.is_contiguous() &&
                  params.numel() == int64_t(sizeof(InceptionParams)),
              "fused_inception::_simt_launch_params: params must be ", sizeof(InceptionParams), " CPU bytes");
  InceptionParams p;
  std::memcpy(&p, params.data_ptr(), sizeof(p));
  TORCH_CHECK(p.cluster_ctas >= 1 && p.cluster_ctas <= 8, "fused_inception::_simt_launch_params: cluster_ctas must ",
              "be 1 to 8, got ", p.cluster_ctas);
  const MathMode math = parse_mode(mode);
  const size_t element = math == MathMode::kF16 || math == MathMode::kBF16 ? 2 : 4;
  int64_t extent = 1;  // elements the output spans through its strides
  const int64_t sizes[4] = {p.batch, p.shape.out_channels(), p.height, p.width};
  for (int d = 0; d < 4; ++d) extent += (sizes[d] - 1) * p.out_stride[d];
  simt::run_checked([&](const simt::LaunchOptions& options) { emu::inception::forward(math, p, options); },
                    {{p.out, size_t(extent) * element}});
}

// The route of a case described, not a tensor (python -m fused_inception plan): the fused backend, routing on.
std::string route_of_case(int64_t pixels, const std::string& mode, bool dense_nchw, int64_t pixel_bytes) {
  return route_name(route_for_case(pixels, parse_mode(mode), dense_nchw, pixel_bytes));
}

// The k x k weight copies' rule (change 29), for the mirrors in fused_inception.plan (the CuPy path uses them):
// routing on.
bool window_weights_copied_of_case(int64_t pixels, const std::string& mode) {
  return window_weights_copied_case(pixels, parse_mode(mode));
}

TORCH_LIBRARY_FRAGMENT(fused_inception, m) {
  m.def("_set_backend(str device, str backend) -> str", &set_backend);
  m.def("_get_backend(str device) -> str", &get_backend);
  m.def("_route(Tensor x) -> str", &route_of);
  m.def("_route_case(int pixels, str mode, bool dense_nchw, int pixel_bytes) -> str", &route_of_case);
  m.def("_window_weights_copied_case(int pixels, str mode) -> bool", &window_weights_copied_of_case);
  m.def("_reads_windows_in_place(int reduced_channels, int element_bytes) -> bool", &reads_windows_in_place);
  m.def("_set_routing(bool enabled) -> bool", &set_routing_op);
  m.def("_fused_params_layout() -> int[]", &fused_params_layout);
  m.def("_fused_plan(int[] shape, int batch, int height, int width, int element_bytes, bool channels_last, "
        "int sm_count, int shared_memory_limit, int weight_row_stride=0, bool clusters=False) -> int[]",
        &fused_plan);
  m.def("_simt_launch_params(Tensor params, str mode) -> ()", &simt_launch_params);
}

TORCH_LIBRARY_IMPL(fused_inception, CPU, m) { m.impl("inception_forward", &inception_forward_cpu); }

}  // namespace fused_inception
