"""The project's numerics rule and reference helpers, shared by the tests, the demo and the benchmarks.

Rule: compare against an unfused PyTorch reference computed in float64. The fused result's error may be at
most TOLERANCE_FACTOR times the error of unfused PyTorch in the same dtype, with a floor for when unfused
PyTorch happens to be exact: the rounding of the output itself (half an epsilon of its largest magnitude).
Float64 results are the exception: there the reference *is* unfused PyTorch, its error is 0 by
construction, and the floor is what another summation order (or BatchNorm folding) costs in float64.
"""

import contextlib
import copy
import os
from dataclasses import dataclass

import torch

from . import _library  # noqa: F401

#: The fused error may be at most this multiple of unfused PyTorch's error in the same dtype.
TOLERANCE_FACTOR = 2.0
#: Floor of the bound, in units of the dtype's epsilon times the reference's largest magnitude.
FLOOR_EPS = 0.5
FLOOR_EPS_FLOAT64 = 64.0


@contextlib.contextmanager
def poison_outputs(enabled: bool = True):
    """While active, the op fills its output with NaN before computing it, so unwritten elements show."""
    previous = torch.ops.fused_inception._set_poison_outputs(enabled)
    try:
        yield
    finally:
        torch.ops.fused_inception._set_poison_outputs(previous)


@contextlib.contextmanager
def simt_orders(*orders: str, seed: int = 0x5EED):
    """While active, every emulated launch runs once per schedule and, with two or more, must produce the same
    output bits (the emulator's racecheck). A schedule is a fiber order, "forward", "reverse", "shuffle" or
    "shuffle:SEED" (a fresh random order per stretch between barriers; a bare "shuffle" is seeded with `seed`
    plus its position), with "@issue" appended to land cp.async copies at their issue instead of at their
    wait ("reverse@issue")."""
    previous = torch.ops.fused_inception._simt_get_orders()
    torch.ops.fused_inception._simt_set_orders(list(orders), seed)
    try:
        yield
    finally:
        torch.ops.fused_inception._simt_set_orders(previous, seed)


#: Environment variable: how many schedules the racecheck runs per emulated launch (default 2).
RACECHECK_ENV = "FUSED_INCEPTION_RACECHECK"
RACECHECK_DEFAULT = 2
# The first two take the extremes of both freedoms: forward order with copies landing at their wait (a
# missing or too weak cp.async wait reads stale bytes) and reverse order with copies landing at their issue
# (a buffer refilled before every thread has finished reading it). Shuffles follow.
_RACECHECK_SCHEDULES = ("forward", "reverse@issue", "shuffle:1@issue", "shuffle:2", "reverse", "forward@issue")


def racecheck_schedules(count: int | None = None) -> list[str]:
    """The racecheck's first `count` schedules (default: $FUSED_INCEPTION_RACECHECK, else 2); past the fixed
    ones, more seeded shuffles alternating between copies landing at issue and at the wait."""
    if count is None:
        raw = os.environ.get(RACECHECK_ENV, "")
        try:
            count = int(raw) if raw else RACECHECK_DEFAULT
        except ValueError:
            raise ValueError(f"{RACECHECK_ENV} must be a whole number of schedules, got {raw!r}") from None
    if count < 1:
        raise ValueError(f"the racecheck needs at least one schedule, got {count}")
    schedules = list(_RACECHECK_SCHEDULES[:count])
    seed = 3
    while len(schedules) < count:
        schedules.append(f"shuffle:{seed}" + ("@issue" if seed % 2 else ""))
        seed += 1
    return schedules


def racecheck():
    """simt_orders over racecheck_schedules(): what the kernel tests run every emulated launch under."""
    return simt_orders(*racecheck_schedules())


def simt_launch_count() -> int:
    """Emulated kernel launches since the process started."""
    return torch.ops.fused_inception._simt_launch_count()


def round_to_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32 (10 mantissa bits; nearest, ties away from zero: cvt.rna.tf32.f32)."""
    bits = t.detach().float().contiguous().view(torch.int32)
    finite = torch.isfinite(t.float())
    rounded = torch.where(finite, (bits + 0x1000) & ~0x1FFF, bits)
    return rounded.view(torch.float32)


def unfused_tf32(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Unfused PyTorch "in TF32", for machines whose PyTorch has no TF32 convolutions (the CPU): each
    convolution rounds its input and weight to TF32 and sums exactly, and every intermediate is a float32
    tensor, as a TF32 cuDNN convolution would give. The baseline of the numerics rule for the TF32 path."""
    import torch.nn.functional as F

    def conv_relu(inp, conv):
        out = F.conv2d(round_to_tf32(inp).double(), round_to_tf32(conv.weight).double(), conv.bias.double(),
                       padding=conv.padding)
        return F.relu(out).float()

    b1, (b2r, b2), (b3r, b3), (_, b4) = block.branch1, block.branch2, block.branch3, block.branch4
    with torch.no_grad():
        pooled = F.max_pool2d(x.float(), 3, stride=1, padding=1)
        branches = [conv_relu(x, b1.conv), conv_relu(conv_relu(x, b2r.conv), b2.conv),
                    conv_relu(conv_relu(x, b3r.conv), b3.conv), conv_relu(pooled, b4.conv)]
    return torch.cat(branches, 1)


def float64_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of an unfused module, for the reference computation."""
    return copy.deepcopy(module).double()


def max_abs_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest |actual - reference| over elements where the reference is not NaN (0.0 for empty tensors)."""
    if actual.shape != reference.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != reference shape {tuple(reference.shape)}")
    if actual.numel() == 0:
        return 0.0
    diff = (actual.detach().double().cpu() - reference.detach().double().cpu()).abs()
    nan_in_reference = torch.isnan(reference.detach().cpu())
    if not torch.equal(torch.isnan(actual.detach().cpu()), nan_in_reference):
        return float("inf")  # a NaN where the reference has none (or the other way round)
    diff = diff[~nan_in_reference]
    return diff.max().item() if diff.numel() else 0.0


@dataclass
class NumericsCheck:
    error: float  # max |result - float64 reference|
    baseline_error: float  # max |unfused PyTorch in the same dtype - float64 reference|
    bound: float

    @property
    def passed(self) -> bool:
        return self.error <= self.bound

    def __str__(self):
        verdict = "ok" if self.passed else "FAIL"
        return f"error {self.error:.3g} (unfused {self.baseline_error:.3g}, bound {self.bound:.3g}) {verdict}"


def check_numerics(result: torch.Tensor, unfused: torch.Tensor, reference64: torch.Tensor) -> NumericsCheck:
    """Applies the numerics rule to `result`, given unfused PyTorch's output in the same dtype."""
    if result.dtype != unfused.dtype:
        raise AssertionError(f"result dtype {result.dtype} != unfused dtype {unfused.dtype}")
    finite = reference64[torch.isfinite(reference64)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    baseline = max_abs_error(unfused, reference64)
    floor_eps = FLOOR_EPS_FLOAT64 if result.dtype == torch.float64 else FLOOR_EPS
    floor = floor_eps * torch.finfo(result.dtype).eps * scale
    return NumericsCheck(max_abs_error(result, reference64), baseline, max(TOLERANCE_FACTOR * baseline, floor))


def assert_numerics(result, unfused, reference64, what: str = "output") -> NumericsCheck:
    check = check_numerics(result, unfused, reference64)
    if not check.passed:
        raise AssertionError(f"{what}: {check}")
    return check


def relative_l2_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """||actual - reference|| / ||reference|| in float64 (the difference's norm when the reference is 0)."""
    if actual.shape != reference.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != reference shape {tuple(reference.shape)}")
    diff = (actual.detach().double().cpu() - reference.detach().double().cpu()).norm().item()
    scale = reference.detach().double().cpu().norm().item()
    return diff / scale if scale > 0 else diff


def assert_network_gradient_numerics(result: dict, unfused: list, reference64: dict) -> None:
    """The numerics rule for a whole network's parameter gradients ({name: grad} each), against unfused PyTorch
    in the same dtype run more than one way (`unfused`: e.g. NCHW and channels_last).

    Per-tensor max errors do not measure a deep network's gradient: a ReLU or max-pool decision that flips
    between two float32 summation orders moves a small gradient tensor by a whole element's contribution.
    On an H200 (2026-11-28, 8 seeds of the 224-pixel GoogLeNet, exact FP32), unfused PyTorch in channels_last
    missed the per-tensor rule against unfused NCHW on 14 tensors, by up to 155x; the fused network on 15.
    So unfused PyTorch's error is the worse of its runs, and the rule applies to (1) the whole gradient's
    relative L2 error and (2) each tensor's relative L2 error against the worst tensor of unfused PyTorch.
    Both still catch a wrong or missing gradient (relative error near 1)."""
    names = list(reference64)
    if set(result) != set(names) or any(set(grads) != set(names) for grads in unfused):
        raise AssertionError("the networks' parameter names differ")

    def whole(grads):
        return relative_l2_error(torch.cat([grads[n].detach().double().cpu().flatten() for n in names]),
                                 torch.cat([reference64[n].detach().double().cpu().flatten() for n in names]))

    def worst_tensor(grads):
        return max(relative_l2_error(grads[n], reference64[n]) for n in names)

    floor = FLOOR_EPS * torch.finfo(next(iter(result.values())).dtype).eps
    bound = max(TOLERANCE_FACTOR * max(whole(g) for g in unfused), floor)
    error = whole(result)
    if not error <= bound:
        raise AssertionError(f"whole gradient: relative L2 error {error:.3g}, bound {bound:.3g} FAIL")
    tensor_bound = max(TOLERANCE_FACTOR * max(worst_tensor(g) for g in unfused), floor)
    for name in names:
        error = relative_l2_error(result[name], reference64[name])
        if not error <= tensor_bound:
            raise AssertionError(f"grad {name}: relative L2 error {error:.3g}, bound {tensor_bound:.3g} "
                                 f"(twice unfused PyTorch's worst tensor) FAIL")
