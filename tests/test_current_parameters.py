"""No silent wrong answers: a fused block computes with its parameters as they are now, however they were
changed; every autograd mode either works or raises; conversion keeps what the user set (issue 13).

The cases that involve the kernel run on the kernel path (`cpu_backend("fused")`: the CUDA kernel's source
under the SIMT emulator) as well as the ATen path; the backend is in each test id.
"""

import copy
import io
import threading
import warnings

import pytest
import torch
from conftest import make_block, make_input
from torch.autograd import forward_ad
from torch.nn.utils import parametrize

import fused_inception
from fused_inception import FusedInception, fuse, googlenet, ops
from fused_inception.testing import assert_numerics, simt_launch_count

BLOCK_ARGS = (16, 8, 8, 16, 4, 8, 8)
BACKENDS = ["aten", "kernel"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """What runs the op on the CPU: the ATen composition, or the fused kernel's source (emulated)."""
    with fused_inception.cpu_backend("fused" if request.param == "kernel" else "unfused"):
        yield request.param


def check_current(block, x):
    """The block's output against the composition of PyTorch ops over its parameters as they are now."""
    params = [p.detach() for p in block.op_parameters()]
    before = simt_launch_count()
    with torch.no_grad():
        result = block(x)
        unfused = ops.composite_inception(x, *params)
        reference = ops.composite_inception(x.double(), *[p.double() for p in params])
    assert_numerics(result, unfused, reference)
    return simt_launch_count() - before


def fused_block(dtype=torch.float16, seed=0):
    # float16 by default: the fused error then equals unfused PyTorch's (both round the same intermediates),
    # while a stale weight is off by orders of magnitude more.
    return FusedInception.from_module(make_block(BLOCK_ARGS, dtype=dtype, seed=seed))


def step(block, optimizer):
    x = make_input(2, 16, 6, 6, dtype=block.branch1.conv.weight.dtype, seed=7)
    block(x).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()


# Ways a user changes parameters; some bump no version counter (fused optimizers, .data).
MUTATIONS = {
    "adam_fused": lambda b: step(b, torch.optim.Adam(b.parameters(), lr=0.1, fused=True)),
    "adamw_foreach": lambda b: step(b, torch.optim.AdamW(b.parameters(), lr=0.1, foreach=True)),
    "sgd_for_loop": lambda b: step(b, torch.optim.SGD(b.parameters(), lr=0.5, foreach=False)),
    "data_mul": lambda b: [p.data.mul_(3) for p in b.parameters()],
    "copy_no_grad": lambda b: torch.no_grad()(lambda: [p.copy_(torch.randn_like(p)) for p in b.parameters()])(),
    "load_state_dict": lambda b: b.load_state_dict(make_block(BLOCK_ARGS, seed=5).state_dict()),
    "set_data": lambda b: setattr(b.branch2[1].conv.weight, "data", torch.randn_like(b.branch2[1].conv.weight)),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_forward_uses_parameters_as_they_are_now(backend, mutation):
    block = fused_block()
    x = make_input(2, 16, 6, 6, dtype=torch.float16)
    launches = check_current(block, x)  # a first forward, as a training loop makes before it changes anything
    assert launches == (1 if backend == "kernel" else 0)
    old = block(x).detach()
    MUTATIONS[mutation](block)
    assert not torch.equal(block(x).detach(), old)  # the change shows
    check_current(block, x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["half", "bfloat16"])
def test_dtype_change_leaves_no_old_copy(backend, dtype):
    block = fused_block(torch.float32)
    x = make_input(1, 16, 5, 5)
    block(x)
    block.to(dtype)
    check_current(block, x.to(dtype))
    # Nothing but the parameters: no float32 tensor outlives .to() (no cache of derived weights), so the
    # pickled module is no larger than a fresh one of the same dtype.
    fresh = FusedInception(*BLOCK_ARGS).to(dtype)
    assert saved_bytes(block) <= saved_bytes(fresh) + 256
    assert all(p.dtype == dtype for p in block.state_dict().values())


def saved_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def test_parametrized_weight_is_used(backend):
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.factor = 1.0

        def forward(self, w):
            return w * self.factor

    block = fused_block()
    scale = Scale()
    parametrize.register_parametrization(block.branch3[1].conv, "weight", scale)
    x = make_input(1, 16, 7, 7, dtype=torch.float16)
    check_current(block, x)
    scale.factor = -2.0  # changes the weight the module sees, with no parameter touched
    check_current(block, x)


def test_saved_model_does_not_grow_after_forwards(backend):
    model = fuse(googlenet(num_classes=10, aux_logits=False).eval())
    before = saved_bytes(model)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert saved_bytes(model) == before
    clone = copy.deepcopy(model)
    assert sum(t.numel() for t in clone.state_dict().values()) == sum(t.numel() for t in model.state_dict().values())


def test_built_and_run_in_inference_mode(backend):
    with torch.inference_mode():
        block = fused_block()
        fused_model = fuse(googlenet(num_classes=10, aux_logits=False).eval())
        x = make_input(1, 16, 6, 6, dtype=torch.float16)
        check_current(block, x)
        assert fused_model(torch.randn(1, 3, 40, 40)).shape == (1, 10)
        block.load_state_dict(make_block(BLOCK_ARGS, seed=3).state_dict())
        check_current(block, x)


# ---- autograd modes ---------------------------------------------------------------------------------------

def small_args(dtype=torch.float64, requires_grad=False):
    block = make_block((3, 2, 2, 2, 1, 2, 2), (3, 5), dtype=dtype)
    x = make_input(1, 3, 4, 4, dtype=dtype)
    params = [p.detach().requires_grad_(requires_grad) for p in block.op_parameters()]
    return x.requires_grad_(requires_grad), params


def test_forward_ad_tangents_match_the_composition(backend):
    x, params = small_args(torch.float32)
    tangents = [torch.randn_like(t) for t in (x, *params)]
    with forward_ad.dual_level():
        duals = [forward_ad.make_dual(t, d) for t, d in zip((x, *params), tangents)]
        tangent = forward_ad.unpack_dual(fused_inception.inception(*duals)).tangent
    _, expected = torch.func.jvp(ops.composite_inception, (x, *params), tuple(tangents))
    assert tangent is not None and tangent.abs().max() > 0
    torch.testing.assert_close(tangent, expected)


def test_func_jvp_jacfwd_jacrev_grad_vmap(backend):
    x, params = small_args()
    f = lambda x: fused_inception.inception(x, *params).square().sum()  # noqa: E731
    g = lambda x: ops.composite_inception(x, *params).square().sum()  # noqa: E731
    v = torch.randn_like(x)
    torch.testing.assert_close(torch.func.jvp(f, (x,), (v,))[1], torch.func.jvp(g, (x,), (v,))[1])
    torch.testing.assert_close(torch.func.grad(f)(x), torch.func.grad(g)(x))
    torch.testing.assert_close(torch.func.jacrev(f)(x), torch.func.jacfwd(g)(x))
    torch.testing.assert_close(torch.func.jacfwd(f)(x), torch.func.jacrev(g)(x))
    batch = torch.randn(3, *x.shape, dtype=x.dtype)
    torch.testing.assert_close(torch.func.vmap(f)(batch), torch.func.vmap(g)(batch))
    assert torch.func.grad(f)(x).abs().max() > 0


def test_double_backward_by_design(backend):
    x, params = small_args(requires_grad=True)
    assert torch.autograd.gradgradcheck(fused_inception.inception, (x, *params))
    # No fallback: the backward is differentiable through registered formulas, so autograd does not warn.
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        out = fused_inception.inception(x, *params).sum()
        (grad_x,) = torch.autograd.grad(out, x, create_graph=True)
        grad_x.square().sum().backward()
    assert not [r for r in records if "autograd kernel was not registered" in str(r.message)]
    # The block is piecewise linear in x, so only the weights see a non-zero second derivative.
    assert params[4].grad is not None and params[4].grad.abs().max() > 0


def test_module_under_functional_call_and_grad(backend):
    block = fused_block(torch.float64)
    x = make_input(1, 16, 5, 5, dtype=torch.float64)
    params = dict(block.named_parameters())
    grads = torch.func.grad(lambda p: torch.func.functional_call(block, p, (x,)).sum())(params)
    reference = make_block(BLOCK_ARGS, dtype=torch.float64)
    reference.load_state_dict(block.state_dict())
    reference(x).sum().backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)


# ---- conversion keeps what the user set -------------------------------------------------------------------

def test_fuse_keeps_frozen_parameters():
    torchvision = pytest.importorskip("torchvision")
    for model in (googlenet(num_classes=10, aux_logits=False),
                  torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False)):
        model.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith("inception4"))  # a partly frozen backbone
        fused = fuse(model)
        for name, module in fused.named_modules():
            if isinstance(module, FusedInception):
                flags = {p.requires_grad for p in module.parameters()}
                assert flags == {not name.startswith("inception4")}, (type(model).__name__, name, flags)


def test_batchnorm_in_training_mode_inside_an_eval_block_is_refused():
    torchvision = pytest.importorskip("torchvision")
    block = torchvision.models.googlenet(weights=None, init_weights=True).inception3a.eval()
    block.branch3[1].bn.train()  # only this one
    with pytest.raises(fused_inception.ConversionError, match=r"branch3\.1\.bn"):
        FusedInception.from_module(block)
    with pytest.raises(fused_inception.ConversionError, match="training mode"):
        fuse(torch.nn.Sequential(block))


# ---- backends are per thread ------------------------------------------------------------------------------

def test_backend_switch_is_thread_local():
    seen = {}
    switched, checked = threading.Event(), threading.Event()

    def other_thread():
        switched.wait(10)
        seen["other"] = ops.backend("cpu")
        checked.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with fused_inception.cpu_backend("fused"):
        seen["here"] = ops.backend("cpu")
        switched.set()
        checked.wait(10)
    thread.join(10)
    assert seen == {"here": "fused", "other": "unfused"}
