"""FusedInception: state dicts, conversion from reference and torchvision blocks, weight packing, autocast."""

import pytest
import torch
from conftest import MEMORY_FORMATS, make_block, make_input, randomize_batchnorm

import fused_inception
from fused_inception import ConversionError, FusedInception, ops
from fused_inception.testing import assert_numerics, float64_copy

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for its GoogLeNet blocks")
from torchvision.models.googlenet import Inception as TorchvisionInception  # noqa: E402

BLOCK_ARGS = (32, 8, 12, 16, 4, 8, 8)


def check_against_unfused(fused, unfused, x):
    with torch.no_grad():
        assert_numerics(fused(x), unfused(x), float64_copy(unfused)(x.double()))


def test_parameter_names_match_reference():
    fused, reference = FusedInception(*BLOCK_ARGS), fused_inception.Inception(*BLOCK_ARGS)
    assert list(fused.state_dict()) == list(reference.state_dict())
    assert [p.shape for p in fused.parameters()] == [p.shape for p in reference.parameters()]


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (3, 3)], ids=str)
def test_state_dict_loads_both_ways(kernel_sizes, device):
    reference = make_block(BLOCK_ARGS, kernel_sizes, device=device, seed=3)
    fused = FusedInception(*BLOCK_ARGS, kernel_sizes=kernel_sizes, device=device)
    fused.load_state_dict(reference.state_dict())
    x = make_input(2, 32, 7, 7, device)
    check_against_unfused(fused, reference, x)
    back = make_block(BLOCK_ARGS, kernel_sizes, device=device, seed=4)
    back.load_state_dict(fused.state_dict())
    check_against_unfused(fused, back, x)


def test_default_init_is_conv_style():
    torch.manual_seed(5)
    fused = FusedInception(*BLOCK_ARGS)
    torch.manual_seed(5)
    reference = fused_inception.Inception(*BLOCK_ARGS)
    for a, b in zip(fused.parameters(), reference.parameters()):
        assert torch.equal(a, b) and a.abs().sum() > 0


def test_factory_kwargs(device):
    fused = FusedInception(*BLOCK_ARGS, device=device, dtype=torch.float64)
    assert all(p.device.type == device and p.dtype == torch.float64 for p in fused.parameters())


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_from_reference_module(memory_format, device, backend):
    reference = make_block(BLOCK_ARGS, (3, 3), device=device).to(memory_format=memory_format).eval()
    fused = FusedInception.from_module(reference)
    assert not fused.training and fused.kernel_sizes == (3, 3)
    for p, q in zip(fused.op_parameters(), reference.op_parameters()):
        assert p.device == q.device and torch.equal(p, q) and p.stride() == q.stride()
    check_against_unfused(fused, reference, make_input(2, 32, 6, 6, device, memory_format=memory_format))


def torchvision_block(device, dtype=torch.float32):
    torch.manual_seed(7)
    block = TorchvisionInception(*BLOCK_ARGS)
    randomize_batchnorm(block)
    return block.to(device=device, dtype=dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_from_torchvision_folds_batchnorm(dtype, device):
    block = torchvision_block(device, dtype)
    fused = FusedInception.from_module(block)
    assert fused.kernel_sizes == (3, 3)  # torchvision's "5x5" branch is 3x3 (pytorch/vision#906)
    assert all(p.device.type == torch.device(device).type and p.dtype == dtype for p in fused.parameters())
    check_against_unfused(fused, block, make_input(2, 32, 9, 9, device, dtype))


def test_from_torchvision_in_training_mode_is_refused():
    block = torchvision_block("cpu").train()
    with pytest.raises(ConversionError, match="must be in eval mode"):
        FusedInception.from_module(block)


def test_from_torchvision_with_unsupported_conv_is_refused():
    block = torchvision_block("cpu")
    block.branch2[1].conv.dilation = (2, 2)
    with pytest.raises(ConversionError, match="branch2.1: only square stride-1"):
        FusedInception.from_module(block)


def test_from_unrelated_module_is_refused():
    with pytest.raises(TypeError, match="from_module expects .*got torch.nn.modules.conv.Conv2d"):
        FusedInception.from_module(torch.nn.Conv2d(3, 3, 1))


def test_module_training_step_matches_reference(device, backend):
    reference = make_block(BLOCK_ARGS, device=device, seed=2)
    fused = FusedInception.from_module(reference)
    x = make_input(4, 32, 6, 6, device)
    target = torch.randn(4, reference.out_channels, 6, 6, device=device)
    for model in (reference, fused):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), target).backward()
            optimizer.step()
    for p, q in zip(fused.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast_runs_in_low_precision(dtype, grad, device, backend):
    # Without grad the op runs below the autograd keys (ops.inception): autocast must still apply there.
    reference = make_block(BLOCK_ARGS, device=device)
    fused = FusedInception.from_module(reference)
    x = make_input(2, 32, 7, 7, device)
    with torch.autocast(device_type=device, dtype=dtype), torch.set_grad_enabled(grad):
        out = fused(x)
        unfused = reference(x)
    assert out.dtype == dtype == unfused.dtype
    assert out.requires_grad == grad and (out.grad_fn is not None) == grad
    assert_numerics(out.detach(), unfused.detach(), float64_copy(reference)(x.double()).detach())


def test_autocast_leaves_float64_alone():
    reference = make_block(BLOCK_ARGS, dtype=torch.float64)
    fused = FusedInception.from_module(reference)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert fused(make_input(1, 32, 4, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_fused_block_replays_from_a_cuda_graph():
    # Latency-bound inference captures the model in a CUDA graph: the fused op must capture, and a replay
    # computes with the static input's new values and the parameters' current values (read in place).
    reference = make_block(BLOCK_ARGS, device="cuda", dtype=torch.bfloat16, seed=4)
    fused = FusedInception.from_module(reference)
    static_x = make_input(2, BLOCK_ARGS[0], 14, 14, "cuda", torch.bfloat16, torch.channels_last)
    with fused_inception.cuda_backend("fused"), torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fused(static_x)  # warm-up off the capture stream
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = fused(static_x)
        static_x.copy_(make_input(2, BLOCK_ARGS[0], 14, 14, "cuda", torch.bfloat16, torch.channels_last, seed=7))
        for p in fused.parameters():
            p.mul_(0.75)  # in place: the captured kernel reads the new values
        static_out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        weights = [p.detach() for p in fused.op_parameters()]
        unfused = ops.composite_inception(static_x, *weights)
        reference64 = ops.composite_inception(static_x.double(), *(w.double() for w in weights))
    assert_numerics(static_out, unfused, reference64)
