"""The benchmark case table: one list, read by the pytest-benchmark suite (benchmarks/) and by
`python -m fused_inception bench`, so both time exactly the same cases.

A case is (target, mode, impl, batch, dtype, memory format). Profiles order their cases by priority, so a
run cut short by its time budget still has the cases that matter most: on CUDA the nine blocks in bf16
channels_last at batch 1, 32 and 256 against eager and eager under a CUDA graph come first.
"""

from dataclasses import dataclass, fields

import torch

from ..configs import GOOGLENET_BLOCKS

NETWORK = "network"
BLOCKS = tuple(config.name for config in GOOGLENET_BLOCKS)
TARGETS = BLOCKS + (NETWORK,)
MODES = ("inference", "training")
#: fused: this project's op / FusedInception. eager: the unfused reference modules (cuDNN on CUDA).
#: fused-cudagraph, eager-cudagraph: each replayed from a captured CUDA graph (no host or launch overhead:
#: how latency-bound inference deploys, and the only fair small-batch comparison of the two). compile*: torch.compile
#: of the eager modules (Inductor), default mode and max-autotune. cupy: the same kernel through
#: fused_inception.cupy (NVRTC; its first call, timed apart, is the compile).
IMPLS = ("fused", "fused-cudagraph", "eager", "eager-cudagraph", "compile", "compile-max-autotune", "cupy")
#: Replayed from a captured CUDA graph.
CUDA_GRAPH_IMPLS = ("fused-cudagraph", "eager-cudagraph")
TRAINING_IMPLS = ("fused", "eager")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MEMORY_FORMATS = {"nhwc": torch.channels_last, "nchw": torch.contiguous_format}
PROFILES = ("quick", "default", "full")
BASELINE = "eager"


@dataclass(frozen=True)
class Case:
    target: str  # a block name ("3a" .. "5b") or "network" (the whole GoogLeNet at 224x224)
    mode: str  # "inference" (forward, no grad) or "training" (forward + backward)
    impl: str
    batch: int
    dtype: str  # a key of DTYPES
    memory_format: str  # a key of MEMORY_FORMATS

    def __post_init__(self):
        for name, allowed in (("target", TARGETS), ("mode", MODES), ("impl", IMPLS), ("dtype", DTYPES),
                              ("memory_format", MEMORY_FORMATS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Case.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.mode == "training" and self.impl not in TRAINING_IMPLS:
            raise ValueError(f"training cases compare {' and '.join(TRAINING_IMPLS)}, got impl {self.impl!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"Case.batch must be a positive int, got {self.batch!r}")

    @property
    def id(self) -> str:
        """Unique and stable, e.g. "3a-inference-bf16-nhwc-b32-fused" (pytest ids, JSON names)."""
        return f"{self.target}-{self.mode}-{self.dtype}-{self.memory_format}-b{self.batch}-{self.impl}"

    @property
    def workload(self) -> tuple:
        """Everything but the implementation: cases with one workload share modules, inputs and reference."""
        return (self.target, self.mode, self.batch, self.dtype, self.memory_format)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def product(targets, modes, batches, dtypes, memory_formats, impls):
    """Cases in workload-major order (implementations innermost, so a workload's cases run back to back and
    the baseline is measured right beside each peer); training keeps only TRAINING_IMPLS."""
    return [Case(target, mode, impl, batch, dtype, memory_format)
            for mode in modes for dtype in dtypes for memory_format in memory_formats for target in targets
            for batch in batches for impl in impls if mode == "inference" or impl in TRAINING_IMPLS]


def _unique(cases):
    seen, ordered = set(), []
    for case in cases:
        if case not in seen:
            seen.add(case)
            ordered.append(case)
    return ordered


def _gpu_default():
    """About 2 minutes on an H100 without max-autotune, most important first (see the README's budget)."""
    inference, training = ["inference"], ["training"]
    peers = ["fused", "fused-cudagraph", "eager", "eager-cudagraph"]
    return _unique(
        # The headline: every block and the network, bf16 channels_last, small / medium / large batch.
        product(BLOCKS, inference, [1, 32, 256], ["bf16"], ["nhwc"], peers)
        + product([NETWORK], inference, [1, 32, 256], ["bf16"], ["nhwc"], peers)
        # The routed cases (docs/performance.md, change 21): NCHW through a channels_last copy from batch 32
        # (batch 1: the NCHW kernel, for the threshold), and float32 (TF32) through cuDNN at batch 256.
        + product(BLOCKS, inference, [1, 32, 256], ["bf16"], ["nchw"], ["fused", "eager"])
        + product(BLOCKS, inference, [32, 256], ["fp32"], ["nhwc"], ["fused", "eager"])
        # Training step and its peak memory.
        + product(TARGETS, training, [32], ["bf16"], ["nhwc"], TRAINING_IMPLS)
        # torch.compile on two blocks before the long tail, so it is measured even when the budget runs out.
        + product(["3a", "4e"], inference, [32], ["bf16"], ["nhwc"], ["eager", "compile"])
        # The batch curve filled in.
        + product(BLOCKS, inference, [8, 128], ["bf16"], ["nhwc"], peers)
        # Other dtypes and NCHW (PyTorch's default layout).
        + product(TARGETS, inference, [32, 256], ["fp16", "fp32"], ["nhwc"], ["fused", "eager"])
        + product(TARGETS, inference, [32, 256], ["bf16"], ["nchw"], ["fused", "eager"])
        + product([NETWORK], inference, [32], ["bf16"], ["nhwc"], ["eager", "compile"])
        # The CuPy path: its compile (first call) and cached calls, beside the extension.
        + product(["3a", "5b"], inference, [1, 32], ["bf16"], ["nhwc"], ["fused", "cupy"])
        # max-autotune compiles for minutes per shape: skipped unless asked for (--max-autotune).
        + product(["3a", "4e"], inference, [32], ["bf16"], ["nhwc"], ["eager", "compile-max-autotune"])
    )


def _cpu_default():
    inference, training = ["inference"], ["training"]
    return _unique(
        product(TARGETS, inference, [1, 8], ["fp32"], ["nhwc"], ["fused", "eager", "eager-cudagraph"])
        + product(["3a", "4e", NETWORK], training, [2], ["fp32"], ["nhwc"], TRAINING_IMPLS)
        + product(BLOCKS, inference, [8], ["bf16"], ["nhwc", "nchw"], ["fused", "eager"])
        + product(BLOCKS, inference, [8], ["fp32"], ["nchw"], ["fused", "eager"])
        + product(["3a", "4e"], inference, [8], ["fp32"], ["nhwc"], ["eager", "compile", "compile-max-autotune"])
    )


def _quick():
    """CI on a 2-core CPU in well under a minute: every block and the network once, every mode, dtype and
    layout at least once, and the CUDA-only peer, which skips with its reason there."""
    inference, training = ["inference"], ["training"]
    return _unique(
        product(TARGETS, inference, [1, 4], ["fp32"], ["nhwc"], ["fused", "eager", "eager-cudagraph"])
        + product(["3a", NETWORK], training, [1], ["fp32"], ["nhwc"], TRAINING_IMPLS)
        + product(["3a"], inference, [4], ["bf16", "fp16"], ["nhwc"], ["fused", "eager"])
        + product(["3a"], inference, [4], ["fp32"], ["nchw"], ["fused", "eager"])
    )


def _full(device_type):
    batches = [1, 8, 32, 128, 256] if device_type == "cuda" else [1, 8]
    return _unique(product(TARGETS, ["inference"], batches, list(DTYPES), list(MEMORY_FORMATS), IMPLS)
                   + product(TARGETS, ["training"], batches, list(DTYPES), list(MEMORY_FORMATS), TRAINING_IMPLS))


def grid(profile: str, device_type: str) -> list:
    """The profile's cases for a device type ("cuda" or another), in the order they should run."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if profile == "quick":
        return _quick()
    if profile == "full":
        return _full(device_type)
    return _gpu_default() if device_type == "cuda" else _cpu_default()


def select(cases, *, targets=None, modes=None, impls=None, batches=None, dtypes=None, memory_formats=None,
           contains=None):
    """The cases matching every given filter (None: no filter on that field), order kept."""
    def keep(case):
        return ((targets is None or case.target in targets) and (modes is None or case.mode in modes)
                and (impls is None or case.impl in impls) and (batches is None or case.batch in batches)
                and (dtypes is None or case.dtype in dtypes)
                and (memory_formats is None or case.memory_format in memory_formats)
                and (contains is None or contains in case.id))

    return [case for case in cases if keep(case)]
