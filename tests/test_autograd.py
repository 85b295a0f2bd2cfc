"""Gradients of the op against unfused autograd, gradcheck, opcheck and torch.compile."""

import pytest
import torch
from conftest import KERNEL_SIZE_PAIRS, MEMORY_FORMATS, make_block, make_input, op_params

import fused_inception
from fused_inception.testing import assert_numerics, float64_copy


def gradients(fn, x, params, grad_out):
    x = x.detach().requires_grad_()
    params = [p.detach().requires_grad_() for p in params]
    fn(x, params).backward(grad_out)
    return [x.grad] + [p.grad for p in params]


def fused_fn(x, params):
    return fused_inception.inception(x, *params)


def unfused_gradients(block, x, grad_out):
    x = x.detach().requires_grad_()
    block.zero_grad(set_to_none=True)
    block(x).backward(grad_out)
    return [x.grad] + [p.grad for p in block.op_parameters()]


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("block_args,kernel_sizes,spatial", [
    (fused_inception.BLOCKS_BY_NAME["3a"].block_args, (3, 5), 14),
    ((24, 8, 12, 16, 4, 8, 8), (3, 3), 7),
    ((5, 1, 2, 3, 1, 2, 1), (5, 3), 3),
], ids=["3a", "small-3x3", "tiny-5x3"])
def test_gradients_match_unfused(block_args, kernel_sizes, spatial, memory_format, device, backend):
    block = make_block(block_args, kernel_sizes, device=device)
    x = make_input(2, block_args[0], spatial, spatial, device, memory_format=memory_format)
    grad_out = torch.randn(2, block.out_channels, spatial, spatial, device=device)
    fused = gradients(fused_fn, x, op_params(block), grad_out)  # the forward on `backend`
    unfused = unfused_gradients(block, x, grad_out)
    reference = unfused_gradients(float64_copy(block), x.double(), grad_out.double())
    names = ("x",) + fused_inception.ops.WEIGHT_NAMES
    for name, f, u, r in zip(names, fused, unfused, reference):
        assert f.shape == r.shape and f.dtype == x.dtype
        assert_numerics(f, u, r, what=f"grad of {name}")


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("kernel_sizes", KERNEL_SIZE_PAIRS, ids=str)
def test_gradcheck(kernel_sizes, memory_format, device):
    block = make_block((3, 2, 2, 2, 1, 2, 2), kernel_sizes, device=device, dtype=torch.float64)
    x = make_input(2, 3, 4, 5, device, torch.float64, memory_format).requires_grad_()
    params = [p.requires_grad_() for p in op_params(block)]
    assert torch.autograd.gradcheck(fused_fn_flat, (x, *params), eps=1e-6, atol=1e-5)


def fused_fn_flat(x, *params):
    return fused_inception.inception(x, *params)


def test_backward_of_empty_batch(device):
    block = make_block((4, 2, 2, 2, 1, 2, 2), device=device)
    x = make_input(0, 4, 5, 5, device).requires_grad_()
    params = [p.requires_grad_() for p in op_params(block)]
    fused_inception.inception(x, *params).sum().backward()
    assert x.grad.shape == x.shape
    assert all(p.grad is not None and not p.grad.any() for p in params)


def opcheck_samples(device):
    samples = []
    for requires_grad in (False, True):
        for memory_format in MEMORY_FORMATS.values():
            block = make_block((6, 2, 3, 4, 2, 3, 2), (3, 5), device=device)
            x = make_input(2, 6, 5, 3, device, memory_format=memory_format).requires_grad_(requires_grad)
            params = [p.requires_grad_(requires_grad) for p in op_params(block)]
            samples.append(((x, *params), {}))
    block = make_block((4, 1, 2, 2, 1, 1, 1), (3, 3), device=device)
    params = op_params(block)
    samples.append(((make_input(1, 4, 1, 1, device), *params), {}))
    return samples


def test_opcheck(device):
    for args, kwargs in opcheck_samples(device):
        torch.library.opcheck(torch.ops.fused_inception.inception_forward.default, args, kwargs)


def test_opcheck_backward_op(device):
    block = make_block((6, 2, 3, 4, 2, 3, 2), device=device)
    x = make_input(2, 6, 5, 4, device, memory_format=torch.channels_last)
    params = op_params(block)
    out = fused_inception.inception(x, *params)
    grad_out = torch.randn_like(out)
    torch.library.opcheck(torch.ops.fused_inception.inception_backward.default, (grad_out, x, out, *params))


@pytest.mark.slow
def test_torch_compile_fullgraph(device):
    torch._dynamo.reset()
    block = fused_inception.FusedInception(8, 4, 4, 6, 2, 4, 4).to(device)
    reference = make_block((8, 4, 4, 6, 2, 4, 4), device=device)
    reference.load_state_dict(block.state_dict())
    x = make_input(2, 8, 6, 6, device).requires_grad_()
    compiled = torch.compile(block, fullgraph=True)  # fullgraph: a graph break is an error
    out = compiled(x)
    out.sum().backward()
    x_ref = x.detach().requires_grad_()
    expected = reference(x_ref)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(block.branch2[1].conv.weight.grad, reference.branch2[1].conv.weight.grad)


@pytest.mark.slow
def test_torch_compile_one_graph_dynamic_batch(device):
    torch._dynamo.reset()
    reference = make_block((8, 4, 4, 6, 2, 4, 4), device=device).eval()
    block = fused_inception.FusedInception.from_module(reference).eval()
    explanation = torch._dynamo.explain(block)(make_input(3, 8, 6, 6, device))
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    compiled = torch.compile(block, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for batch in (1, 4):
            x = make_input(batch, 8, 6, 6, device)
            assert_numerics(compiled(x), reference(x), float64_copy(reference)(x.double()), what=f"batch {batch}")
