"""`python -m fused_inception demo`: fuses the reference GoogLeNet and torchvision's GoogLeNet, checks every
fused block and the final logits against the unfused models, and times fused against unfused forwards."""

import argparse
import copy
import sys
import time

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ._library import build_info
from .bench.timing import measure
from .configs import GOOGLENET_BLOCKS
from .device_support import backend_info
from .fuse import fuse
from .models import googlenet
from .testing import check_numerics, float64_copy, max_abs_error

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHECK_BATCH = 2
MIN_IMAGE_SIZE = 31  # the smallest input the reference GoogLeNet's pools accept
CALIBRATION_BATCH = 4


def describe_environment(device: torch.device) -> str:
    build = build_info()
    cuda_build = f"yes ({', '.join(build['cuda_archs'])})" if build["with_cuda"] else "no"
    info = backend_info(device)
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    elif not torch.cuda.is_available():
        where += " (no CUDA device found)"
    return (f"fused_inception: torch {torch.__version__}, extension built with CUDA: {cuda_build}\n"
            f"device: {where}; backend: {info.backend}, {info.reason}")


def calibrate_batchnorm(model: nn.Module, image_size: int) -> None:
    """Sets BatchNorm running statistics to those of one random batch, so folding meets real statistics
    (a freshly initialised torchvision model has mean 0, variance 1, which folds to almost nothing)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    was_training = model.training
    with torch.no_grad():
        model.train()(torch.randn(CALIBRATION_BATCH, 3, image_size, image_size))
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    model.train(was_training)


def build_models(image_size):
    """[(label, unfused model)] in eval mode on the CPU in float32: the reference and torchvision's GoogLeNet."""
    torch.manual_seed(0)
    models = [("reference", googlenet().eval())]
    try:
        import torchvision
    except ImportError:
        print("torchvision is not installed: its GoogLeNet is skipped (pip install torchvision)", flush=True)
        return models
    torch.manual_seed(0)
    tv_model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    calibrate_batchnorm(tv_model, image_size)
    models.append(("torchvision", tv_model.eval()))
    return models


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with each conv -> BatchNorm pair folded into the conv, as fuse() folds
    them in the blocks: the like-for-like unfused baseline for timing a torchvision model."""
    model = copy.deepcopy(model)
    for module in model.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv, module.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def check_rows(unfused, fused, block_names, x):
    """Yields (module, max abs error, max relative error, NumericsCheck) for each fused block, then the logits.

    Each block is checked on the same input (what it receives in the unfused model), so errors of earlier
    blocks do not pile up in later rows; the logits row compares whole networks.
    """
    reference64 = float64_copy(unfused)
    block_inputs = {}
    hooks = [unfused.get_submodule(name).register_forward_pre_hook(
        lambda module, args, name=name: block_inputs.__setitem__(name, args[0])) for name in block_names]
    try:
        with torch.no_grad():
            logits = unfused(x)
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for name in block_names:
            inp = block_inputs[name]
            yield (name, *_compare(fused.get_submodule(name)(inp), unfused.get_submodule(name)(inp),
                                   reference64.get_submodule(name)(inp.double())))
        yield ("logits", *_compare(fused(x), logits, reference64(x.double())))


def _compare(result, unfused, reference64):
    error = max_abs_error(result, unfused)
    scale = unfused.abs().max().item() or 1.0
    return error, error / scale, check_numerics(result, unfused, reference64)


def time_forward(model, device, dtype, batch, image_size, repeats):
    inputs = [torch.randn(batch, 3, image_size, image_size, device=device, dtype=dtype)
              .contiguous(memory_format=torch.channels_last) for _ in range(3)]  # rotated: caches do not flatter
    with torch.no_grad():
        return measure(lambda i: model(inputs[i % 3]), device, warmup=2, repeats=repeats).median


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_device(parser, text):
    """The --device argument as a torch.device, or a usage error (exit 2) when it is none this machine runs."""
    try:
        device = torch.device(text)
    except RuntimeError:
        parser.error(f"--device {text}: not a device (cpu, cuda, cuda:N)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {text}: the demo runs on cpu or cuda only")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {text}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            parser.error(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def image_size_arg(text):
    value = int(text)
    if value < MIN_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_IMAGE_SIZE}, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_inception demo", description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--image-size", type=image_size_arg, default=224, help="input height and width (224)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=None,
                        help="batch sizes to time (default: 1 8 on CPU, 1 32 256 on CUDA)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed repeats per case, median reported (default: 5 on CPU, 30 on CUDA)")
    args = parser.parse_args(argv)
    device, dtype, size = parse_device(parser, args.device), DTYPES[args.dtype], args.image_size
    batch_sizes = args.batch_sizes or ([1, 32, 256] if device.type == "cuda" else [1, 8])
    repeats = args.repeats if args.repeats is not None else (30 if device.type == "cuda" else 5)
    started = time.perf_counter()
    print(describe_environment(device), flush=True)

    print("\nbuilding the reference GoogLeNet (paper, Table 1) and torchvision's GoogLeNet (random init, BatchNorm "
          "statistics from one random batch), fusing both with fused_inception.fuse()", flush=True)
    failures = []
    pairs = []
    for label, unfused in build_models(size):
        # The timing baseline has its BatchNorm folded too (torchvision's), so both sides do the same math.
        baseline = fold_batchnorm(unfused).to(device=device, dtype=dtype, memory_format=torch.channels_last)
        unfused = unfused.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        fused, report = fuse(unfused, return_report=True)
        print(f"\n[{label}] {report}", flush=True)
        if len(report.replaced) != len(GOOGLENET_BLOCKS):
            failures.append(f"{label}: fuse() replaced {len(report.replaced)} of {len(GOOGLENET_BLOCKS)} blocks")
        pairs.append((label, unfused, fused, [r.name for r in report.replaced], baseline))

    print(f"\nnumerics, {args.dtype} channels_last, batch {CHECK_BATCH} at {size}x{size}. Fused against unfused: "
          "max abs err, max rel err (abs / max |unfused|).\nRule: fused error against float64 <= bound "
          "(2x unfused PyTorch's error against float64, in the same dtype)")
    header = (f"{'model':<12} {'module':<12} {'max abs err':>12} {'max rel err':>12} {'err vs f64':>11} "
              f"{'bound':>9} {'rule':>5}")
    print(header + "\n" + "-" * len(header), flush=True)
    for label, unfused, fused, block_names, _ in pairs:
        x = torch.randn(CHECK_BATCH, 3, size, size, device=device, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        for name, abs_error, rel_error, check in check_rows(unfused, fused, block_names, x):
            if not check.passed:
                failures.append(f"{label} {name}: {check}")
            print(f"{label:<12} {name:<12} {abs_error:>12.3g} {rel_error:>12.3g} {check.error:>11.3g} "
                  f"{check.bound:>9.3g} {'ok' if check.passed else 'FAIL':>5}", flush=True)

    print(f"\nforward time on {device}, {args.dtype} channels_last {size}x{size}, median of {repeats} "
          "(speedup = unfused / fused).\nBoth sides without BatchNorm: torchvision's unfused model is timed with "
          "its BatchNorm folded into the convolutions (torch.nn.utils.fuse_conv_bn_eval), as fuse() folds it")
    header = f"{'model':<12} {'batch':>5} {'unfused ms':>11} {'fused ms':>9} {'speedup':>8}"
    print(header + "\n" + "-" * len(header), flush=True)
    for label, _, fused, _, baseline in pairs:
        for batch in batch_sizes:
            unfused_time = time_forward(baseline, device, dtype, batch, size, repeats)
            fused_time = time_forward(fused, device, dtype, batch, size, repeats)
            print(f"{label:<12} {batch:>5} {unfused_time * 1e3:>11.2f} {fused_time * 1e3:>9.2f} "
                  f"{unfused_time / fused_time:>7.2f}x", flush=True)

    elapsed = time.perf_counter() - started
    if failures:
        print(f"\n{len(failures)} check(s) FAILED ({elapsed:.0f} s):\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall checks passed ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
