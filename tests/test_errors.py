"""Bad input gets a clear error naming the argument and what was expected."""

import pytest
import torch
from conftest import CUDA_SKIP_REASON, make_block, make_input, op_params

import fused_inception
from fused_inception.ops import WEIGHT_NAMES

BLOCK_ARGS = (8, 4, 6, 8, 2, 4, 3)


def valid_args():
    block = make_block(BLOCK_ARGS)
    return make_input(2, 8, 5, 5), dict(zip(WEIGHT_NAMES, op_params(block)))


def with_weight(name, value):
    x, weights = valid_args()
    weights[name] = value
    return x, weights


BAD_CASES = {
    "x-wrong-channels": (lambda: (make_input(2, 7, 5, 5), valid_args()[1]), r"x has 7 channels.*in_channels = 8"),
    "x-rank-3": (lambda: (torch.randn(8, 5, 5), valid_args()[1]), r"x must be a 4-D \(N, C, H, W\) tensor, got a 3-D"),
    "x-int-dtype": (lambda: (torch.ones(2, 8, 5, 5, dtype=torch.int32), valid_args()[1]),
                    r"x must be float32, float16, bfloat16 or float64, got Int"),
    "weight-dtype-mismatch": (lambda: with_weight("w3", valid_args()[1]["w3"].double()),
                              r"w3 has dtype Double but x has dtype Float"),
    "bias-dtype-mismatch": (lambda: with_weight("bp", valid_args()[1]["bp"].half()), r"bp has dtype Half"),
    "w3-wrong-in-channels": (lambda: with_weight("w3", torch.randn(8, 5, 3, 3)),
                             r"w3 must have 6 input channels \(w3r.size\(0\)\)"),
    "w5-kernel-4": (lambda: with_weight("w5", torch.randn(4, 2, 4, 4)), r"w5 must have a 3x3 or 5x5 kernel"),
    "w5-not-square": (lambda: with_weight("w5", torch.randn(4, 2, 3, 5)), r"w5 must have a 3x3 or 5x5 kernel"),
    "w1-spatial-kernel": (lambda: with_weight("w1", torch.randn(4, 8, 3, 3)), r"w1 must have a 1x1 kernel"),
    "wp-wrong-in-channels": (lambda: with_weight("wp", torch.randn(3, 7, 1, 1)), r"wp must have 8 input channels"),
    "w3r-rank-2": (lambda: with_weight("w3r", torch.randn(6, 8)), r"w3r must be a 4-D convolution weight"),
    "b3-wrong-length": (lambda: with_weight("b3", torch.randn(7)), r"b3 must be a 1-D tensor of 8 elements"),
    "b1-rank-2": (lambda: with_weight("b1", torch.randn(4, 1)), r"b1 must be a 1-D tensor of 4 elements"),
    "w1-no-output-channels": (lambda: with_weight("w1", torch.randn(0, 8, 1, 1)),
                              r"w1 must have at least one output channel"),
}


def test_sparse_weight_named():
    x, weights = with_weight("w5r", valid_args()[1]["w5r"].to_sparse())
    with pytest.raises(ValueError, match=r"w5r must be a dense \(strided\) tensor, got torch.sparse_coo"):
        fused_inception.inception(x, *weights.values())


def test_non_tensor_weight_named():
    x, weights = with_weight("b3r", [0.0] * 6)
    with pytest.raises(TypeError, match=r"b3r must be a torch.Tensor, got list"):
        fused_inception.inception(x, *weights.values())


@pytest.mark.parametrize("case", BAD_CASES.keys())
def test_bad_input_raises_clear_error(case):
    make_args, message = BAD_CASES[case]
    x, weights = make_args()
    with pytest.raises(RuntimeError, match=message):
        fused_inception.inception(x, *weights.values())


def test_bad_grad_out_shape():
    x, weights = valid_args()
    out = fused_inception.inception(x, *weights.values())
    with pytest.raises(RuntimeError, match=r"grad_out must have shape \[2, 19, 5, 5\]"):
        torch.ops.fused_inception.inception_backward(out[:, :5], x, out, *weights.values())


def test_meta_weight_mixed_with_cpu_input():
    x, weights = valid_args()
    weights["w3"] = weights["w3"].to("meta")
    with pytest.raises(RuntimeError, match=r"w3 is on meta but x is on cpu"):
        fused_inception.inception(x, *weights.values())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_SKIP_REASON)
def test_device_mix_cuda_weight_cpu_input():
    x, weights = valid_args()
    weights["b5"] = weights["b5"].cuda()
    with pytest.raises(RuntimeError, match=r"is on cuda:0 but .* is on cpu|b5 is on cuda"):
        fused_inception.inception(x, *weights.values())


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(in_channels=0), ValueError, "in_channels must be at least 1, got 0"),
    (dict(ch5x5=2.0), TypeError, "ch5x5 must be an int, got float"),
    (dict(kernel_sizes=(3, 4)), ValueError, r"kernel_sizes entries must be among \(3, 5\)"),
    (dict(kernel_sizes=(3,)), TypeError, "kernel_sizes must be a pair of ints"),
    (dict(kernel_sizes=3), TypeError, "kernel_sizes must be a pair of ints"),
])
@pytest.mark.parametrize("cls", [fused_inception.FusedInception, fused_inception.Inception], ids=lambda c: c.__name__)
def test_module_constructor_validates(cls, kwargs, error, message):
    args = dict(zip(("in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"), BLOCK_ARGS))
    kwargs = dict(kwargs)  # shared across the parametrization
    kernel_sizes = kwargs.pop("kernel_sizes", (3, 5))
    args.update(kwargs)
    with pytest.raises(error, match=message):
        cls(**args, kernel_sizes=kernel_sizes)


def test_module_forward_rejects_non_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        fused_inception.FusedInception(*BLOCK_ARGS)([1.0, 2.0])


def test_module_forward_wrong_channels():
    with pytest.raises(RuntimeError, match=r"x has 9 channels"):
        fused_inception.FusedInception(*BLOCK_ARGS)(torch.randn(1, 9, 4, 4))
