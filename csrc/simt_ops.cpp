// Torch face of the SIMT emulator: the test-kernel op (CPU: emulated), the racecheck orders and the launch
// counter. The CUDA registration of the test-kernel op is in cuda/simt_ops_cuda.cpp.
#include <torch/library.h>

#include "simt/simt.h"
#include "simt_test_call.h"

namespace fused_inception {

TestCall prepare_test_call(const std::string& kernel, const std::vector<at::Tensor>& inputs) {
  constexpr const char* op = "fused_inception::_simt_test";
  auto need = [&](size_t count) {
    TORCH_CHECK(inputs.size() == count, op, ": kernel ", kernel, " takes ", count, " input tensors, got ",
                inputs.size());
    for (const auto& t : inputs) {
      TORCH_CHECK(t.is_contiguous() && t.device() == inputs[0].device(), op,
                  ": inputs must be contiguous and on one device");
    }
  };
  auto expect = [&](size_t i, at::ScalarType dtype, at::IntArrayRef shape) {
    TORCH_CHECK(inputs[i].scalar_type() == dtype && inputs[i].sizes() == shape, op, ": input ", i, " of ", kernel,
                " must be ", dtype, " of shape ", shape, ", got ", inputs[i].scalar_type(), " ", inputs[i].sizes());
  };
  TestCall call;
  if (kernel == "mma") {
    need(3);
    const auto dtype = inputs[0].scalar_type();
    TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat, op,
                ": mma takes half, bfloat16 or float (TF32) inputs");
    const int64_t k = dtype == at::kFloat ? 8 : 16;
    expect(0, dtype, {16, k});
    expect(1, dtype, {k, 8});
    expect(2, at::kFloat, {16, 8});
    call.kind = TestKind::kMma;
    call.dtype = dtype == at::kHalf ? TestDtype::kHalf : dtype == at::kBFloat16 ? TestDtype::kBFloat16
                                                                                 : TestDtype::kFloat32;
    call.out = at::empty({16, 8}, inputs[0].options().dtype(at::kFloat));
  } else if (kernel.rfind("ldmatrix_x", 0) == 0) {
    need(1);
    call.kind = TestKind::kLdmatrix;
    call.count = kernel[10] - '0';
    call.flag = kernel.size() > 11;
    TORCH_CHECK((call.count == 1 || call.count == 2 || call.count == 4) &&
                    (kernel.size() == 11 || kernel.substr(11) == "_trans"),
                op, ": unknown kernel ", kernel);
    expect(0, at::kShort, {call.count, 8, 8});
    call.out = at::empty({32, call.count}, inputs[0].options().dtype(at::kInt));
  } else if (kernel == "max_nan") {
    need(2);
    const auto dtype = inputs[0].scalar_type();
    TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat, op,
                ": max_nan takes half, bfloat16 or float vectors");
    const int64_t per_lane = 16 / int64_t(inputs[0].element_size());
    expect(0, dtype, {32, per_lane});
    expect(1, dtype, {32, per_lane});
    call.kind = TestKind::kMaxNan;
    call.dtype = dtype == at::kHalf ? TestDtype::kHalf : dtype == at::kBFloat16 ? TestDtype::kBFloat16
                                                                                 : TestDtype::kFloat32;
    call.out = at::empty_like(inputs[0]);
  } else if (kernel == "warp_ops") {
    need(1);
    expect(0, at::kInt, {32});
    call.kind = TestKind::kWarpOps;
    call.out = at::empty({11, 32}, inputs[0].options());
  } else if (kernel == "gemm") {
    need(2);
    const auto dtype = inputs[0].scalar_type();
    TORCH_CHECK((dtype == at::kHalf || dtype == at::kBFloat16) && inputs[1].scalar_type() == dtype, op,
                ": gemm takes two half or two bfloat16 matrices");
    TORCH_CHECK(inputs[0].dim() == 2 && inputs[1].dim() == 2 && inputs[0].size(1) == inputs[1].size(0), op,
                ": gemm takes a (m, k) and a (k, n) matrix");
    call.kind = TestKind::kGemm;
    call.dtype = dtype == at::kHalf ? TestDtype::kHalf : TestDtype::kBFloat16;
    call.out = at::empty({inputs[0].size(0), inputs[1].size(1)}, inputs[0].options().dtype(at::kFloat));
  } else if (kernel == "neighbour" || kernel == "neighbour_with_barrier") {
    need(1);
    TORCH_CHECK(inputs[0].scalar_type() == at::kFloat && inputs[0].dim() == 1 && inputs[0].numel() >= 1 &&
                    inputs[0].numel() <= 1024,
                op, ": neighbour takes 1 to 1024 floats");
    call.kind = TestKind::kNeighbour;
    call.flag = kernel == "neighbour_with_barrier";
    call.out = at::empty_like(inputs[0]);
  } else if (kernel == "shared_off_by_one") {
    need(1);
    TORCH_CHECK(inputs[0].scalar_type() == at::kFloat && inputs[0].dim() == 1 && inputs[0].numel() >= 1 &&
                    inputs[0].numel() <= 1024,
                op, ": shared_off_by_one takes 1 to 1024 floats (their count sets the thread count)");
    call.kind = TestKind::kSharedOffByOne;
    call.out = at::zeros_like(inputs[0]);
  } else if (kernel == "cluster_exchange" || kernel == "cluster_exchange_without_first_sync" ||
             kernel == "cluster_exchange_without_last_sync") {
    // inputs: x (grid_y, grid_x, 64) floats, and the cluster's blocks as two ints (x, y)
    TORCH_CHECK(inputs.size() == 2, op, ": kernel ", kernel, " takes 2 input tensors, got ", inputs.size());
    TORCH_CHECK(inputs[0].scalar_type() == at::kFloat && inputs[0].dim() == 3 && inputs[0].size(2) == 64 &&
                    inputs[0].size(0) >= 1 && inputs[0].size(1) >= 1 && inputs[0].is_contiguous(),
                op, ": cluster_exchange takes x of (grid_y, grid_x, 64) contiguous floats, got ",
                inputs[0].scalar_type(), " ", inputs[0].sizes());
    const at::Tensor cluster = inputs[1].cpu();
    TORCH_CHECK(cluster.scalar_type() == at::kInt && cluster.sizes() == at::IntArrayRef{2}, op,
                ": cluster_exchange takes the cluster as two ints (x, y), got ", cluster.scalar_type(), " ",
                cluster.sizes());
    const int* dims = cluster.data_ptr<int>();
    TORCH_CHECK(dims[0] >= 1 && dims[1] >= 1 && inputs[0].size(1) % dims[0] == 0 && inputs[0].size(0) % dims[1] == 0,
                op, ": cluster_exchange's grid (", inputs[0].size(1), ", ", inputs[0].size(0),
                ") must be a whole number of clusters (", dims[0], ", ", dims[1], ")");
    call.kind = TestKind::kClusterExchange;
    call.cluster_x = unsigned(dims[0]);
    call.cluster_y = unsigned(dims[1]);
    call.flags = ClusterExchangeBarriers::kBoth;
    if (kernel == "cluster_exchange_without_first_sync") call.flags &= ~ClusterExchangeBarriers::kFirst;
    if (kernel == "cluster_exchange_without_last_sync") call.flags &= ~ClusterExchangeBarriers::kLast;
    call.out = at::empty({4, inputs[0].size(0), inputs[0].size(1), 64}, inputs[0].options());
  } else {
    TORCH_CHECK(false, op, ": unknown kernel ", kernel);
  }
  call.in = inputs;
  return call;
}

namespace {

at::Tensor simt_test_cpu(const std::string& kernel, at::TensorList inputs) {
  const TestCall call = prepare_test_call(kernel, inputs.vec());
  simt::run_checked(
      [&](const simt::LaunchOptions& options) { FUSED_INCEPTION_RUN_TEST_CALL(emu::test_kernels, call, options); },
      {{call.out.data_ptr(), size_t(call.out.nbytes())}});
  return call.out;
}

// Schedules by name (simt::parse_schedule): "forward", "reverse@issue", "shuffle:7", ... A "shuffle" without
// its own seed gets `seed` plus its position, so that several of them in one list differ.
void simt_set_orders(const std::vector<std::string>& orders, int64_t seed) {
  TORCH_CHECK(!orders.empty(), "fused_inception::_simt_set_orders: give at least one schedule");
  std::vector<simt::Schedule> schedules;
  for (size_t i = 0; i < orders.size(); ++i) {
    try {
      schedules.push_back(simt::parse_schedule(orders[i], uint64_t(seed) + i));
    } catch (const simt::Error& e) {
      TORCH_CHECK(false, "fused_inception::_simt_set_orders: orders must be forward, reverse or shuffle: ", e.what());
    }
  }
  simt::set_checked_schedules(schedules);
}

std::vector<std::string> simt_get_orders() {
  std::vector<std::string> names;
  for (const auto& schedule : simt::checked_schedules()) names.push_back(simt::to_string(schedule));
  return names;
}

int64_t simt_launch_count() { return int64_t(simt::launch_count()); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(fused_inception, m) {
  m.def("_simt_test(str kernel, Tensor[] inputs) -> Tensor");
  m.def("_simt_set_orders(str[] orders, int seed) -> ()", &simt_set_orders);
  m.def("_simt_get_orders() -> str[]", &simt_get_orders);
  m.def("_simt_launch_count() -> int", &simt_launch_count);
}

TORCH_LIBRARY_IMPL(fused_inception, CPU, m) { m.impl("_simt_test", &simt_test_cpu); }

}  // namespace fused_inception
