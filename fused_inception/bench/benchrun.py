"""Running benchmark cases: building each workload once, the implementations (fused and its peers), timing
through `timing.measure`, the float64 numerics check, and the pytest-benchmark-compatible JSON document.

Used by both the pytest-benchmark suite (benchmarks/) and `python -m fused_inception bench`.
"""

import dataclasses
import datetime
import importlib.util
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field

import torch

from .._library import build_info
from ..configs import BLOCKS_BY_NAME
from ..device_support import backend_info
from ..testing import check_numerics, float64_copy
from . import roofline
from .benchcases import BASELINE, CUDA_GRAPH_IMPLS, DTYPES, MEMORY_FORMATS, NETWORK, Case
from .timing import measure, peak_memory, time_first_call

#: Input sets each case cycles through, so caches do not flatter repeated calls on one buffer.
ROTATION = 3
#: Document format of our section in the JSON ("fused_inception"); bump on incompatible changes.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """Warm-up calls and timed calls (one call per sample) per case."""

    warmup: int
    rounds: int
    heavy_rounds: int  # for the whole network and training steps, each many times a block's forward
    check_numerics: bool = True
    max_autotune: bool = False

    @classmethod
    def for_run(cls, device_type: str, profile: str, **overrides):
        if device_type == "cuda":
            base = cls(warmup=10, rounds=50, heavy_rounds=25)
        elif profile == "quick":
            base = cls(warmup=2, rounds=5, heavy_rounds=3)
        else:
            base = cls(warmup=3, rounds=10, heavy_rounds=5)
        values = {**dataclasses.asdict(base), **{k: v for k, v in overrides.items() if v is not None}}
        if values["rounds"] < 1 or values["warmup"] < 0:
            raise ValueError(f"rounds must be >= 1 and warmup >= 0, got {values['rounds']} and {values['warmup']}")
        values["heavy_rounds"] = min(values["heavy_rounds"], values["rounds"])
        return cls(**values)


@dataclass
class Outcome:
    """What running one case gave: samples (seconds per call) and extra_info, or a skip reason, or an error."""

    case: Case
    samples: list = field(default_factory=list)
    extra_info: dict = field(default_factory=dict)
    skip_reason: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        return "skipped" if self.skip_reason else "failed" if self.error else "ok"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def skip_reason(case: Case, device: torch.device, settings: Settings) -> str | None:
    """Why `case` cannot (or should not) run on `device`, or None."""
    if case.impl in CUDA_GRAPH_IMPLS and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if case.impl == "compile-max-autotune" and not settings.max_autotune:
        return "torch.compile max-autotune tunes for minutes per shape; pass --max-autotune to include it"
    if case.dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "bf16 needs a GPU of compute capability 8.0 or newer"
    if case.impl.startswith("compile") and not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    if case.impl == "cupy":
        if device.type != "cuda":
            return "the CuPy path runs on a CUDA device"
        if case.target == NETWORK:
            return "the CuPy path runs single blocks"
        if importlib.util.find_spec("cupy") is None:
            return "CuPy is not installed"
    return None


class _Workload:
    """The modules, rotated inputs and references shared by every implementation of one workload."""

    def __init__(self, case: Case, device: torch.device, want_reference: bool):
        self.case = case
        dtype, memory_format = case.torch_dtype, MEMORY_FORMATS[case.memory_format]
        training = case.mode == "training"
        torch.manual_seed(0)  # every run builds the same weights and inputs
        if case.target == NETWORK:
            from ..models import googlenet

            self.module = googlenet(aux_logits=training)
            shape = (case.batch, 3, roofline.NETWORK_IMAGE_SIZE, roofline.NETWORK_IMAGE_SIZE)
            self.flops = roofline.network_flops(case.batch, training)
            self.min_bytes = roofline.network_min_bytes(case.batch, dtype, training=training)
        else:
            from ..models import Inception

            config = BLOCKS_BY_NAME[case.target]
            self.module = Inception(*config.block_args)
            shape = (case.batch, config.in_channels, config.spatial, config.spatial)
            multiple = roofline.TRAINING_MULTIPLE if training else 1
            self.flops = config.flops(case.batch) * multiple
            self.min_bytes = roofline.block_min_bytes(config, case.batch, dtype) * multiple
        self.module = self.module.to(device=device, dtype=dtype, memory_format=memory_format).train(training)
        self.inputs = [torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=memory_format)
                       for _ in range(ROTATION)]
        if training:
            for x in self.inputs:
                x.requires_grad_(case.target != NETWORK)  # a block inside a network passes gradients back
            if case.target == NETWORK:
                self.targets = [torch.randint(0, 1000, (case.batch,), device=device) for _ in range(ROTATION)]
            else:
                out_shape = (case.batch, config.out_channels) + shape[2:]
                self.grad_outputs = [torch.randn(out_shape, device=device, dtype=dtype)
                                     .contiguous(memory_format=memory_format) for _ in range(ROTATION)]
        self.eager_output = self.reference64 = None
        if want_reference and not training:
            with torch.no_grad():
                self.eager_output = self.module(self.inputs[0])
                self.reference64 = float64_copy(self.module)(self.inputs[0].double())


def _implementation(case: Case, workload: _Workload) -> torch.nn.Module:
    module = workload.module
    if case.impl in ("fused", "fused-cudagraph"):
        from ..fuse import fuse

        fused, report = fuse(module, return_report=True)
        if not report.replaced:
            raise RuntimeError(f"fuse() replaced no block of the {case.target} workload: {report}")
        return fused
    if case.impl == "cupy":
        from ..cupy import FusedInceptionCuPy

        return FusedInceptionCuPy.from_torch(module)  # takes and returns torch tensors (DLPack)
    if case.impl.startswith("compile"):
        # A fresh Dynamo cache per case: every workload compiles Inception.forward again, and past the
        # recompile limit Dynamo would silently fall back to eager.
        torch._dynamo.reset()
        mode = "max-autotune" if case.impl == "compile-max-autotune" else None
        return torch.compile(module, mode=mode)
    return module


def _inference_step(module, inputs):
    def step(i):
        with torch.no_grad():
            return module(inputs[i % len(inputs)])

    return step


def _cuda_graph_step(module, inputs):
    """One captured graph per input set (a graph replays fixed addresses), sharing one memory pool."""
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graphs requires
            for x in inputs:
                module(x)
        torch.cuda.current_stream().wait_stream(side)
        graphs, pool = [], None
        for x in inputs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = module(x)
            pool = graph.pool()
            graphs.append((graph, out))

    def step(i):
        graph, out = graphs[i % len(graphs)]
        graph.replay()
        return out

    return step


def _training_step(case, module, workload):
    params = list(module.parameters())

    def zero_grads():
        for p in params:
            p.grad = None
        for x in workload.inputs:
            x.grad = None

    if case.target == NETWORK:
        from ..models import googlenet_loss

        def step(i):
            zero_grads()
            k = i % ROTATION
            googlenet_loss(module(workload.inputs[k]), workload.targets[k]).backward()
    else:
        def step(i):
            zero_grads()
            k = i % ROTATION
            module(workload.inputs[k]).backward(workload.grad_outputs[k])

    return step


class Workbench:
    """Runs cases on one device against its measured ceilings. Consecutive cases of one workload share it
    (modules, inputs, float64 reference), so the baseline runs right beside each peer."""

    def __init__(self, device, ceilings: roofline.Ceilings, settings: Settings):
        self.device = torch.device(device)
        self.ceilings = ceilings
        self.settings = settings
        self._workload = None

    def run(self, case: Case) -> Outcome:
        reason = skip_reason(case, self.device, self.settings)
        if reason:
            return Outcome(case, skip_reason=reason)
        try:
            return self._run(case)
        except Exception as error:  # one broken case must not lose the others' results
            self._workload = None
            if self.device.type == "cuda":
                try:
                    torch.cuda.empty_cache()  # after an out-of-memory error the next case needs the room
                except RuntimeError:
                    pass  # a sticky device error: the next cases will report it themselves
            return Outcome(case, error=f"{type(error).__name__}: {error}")

    def _run(self, case: Case) -> Outcome:
        if self._workload is None or self._workload.case.workload != case.workload:
            self._workload = None  # free the previous workload's memory first
            self._workload = _Workload(case, self.device, self.settings.check_numerics)
        workload = self._workload
        module = _implementation(case, workload)
        training = case.mode == "training"
        heavy = training or case.target == NETWORK
        rounds = self.settings.heavy_rounds if heavy else self.settings.rounds
        info = {}
        if training:
            step = _training_step(case, module, workload)
            info["first_call_s"] = time_first_call(lambda: step(0), self.device)
            info["peak_memory_bytes"] = peak_memory(lambda: step(1), self.device)
        elif case.impl in CUDA_GRAPH_IMPLS:
            captured = []
            info["first_call_s"] = time_first_call(  # the capture (and its warm-up)
                lambda: captured.append(_cuda_graph_step(module, workload.inputs)), self.device)
            step = captured[0]
        else:
            step = _inference_step(module, workload.inputs)
            info["first_call_s"] = time_first_call(lambda: step(0), self.device)  # compile, cuDNN autotuning
        timing = measure(step, self.device, warmup=self.settings.warmup, repeats=rounds)
        if workload.reference64 is not None:
            check = check_numerics(step(0).detach().clone(), workload.eager_output, workload.reference64)
            info.update(numerics_error=check.error, numerics_bound=check.bound, numerics_passed=check.passed)
        return Outcome(case, timing.samples, self._extra_info(case, workload, timing.median, info))

    def _extra_info(self, case, workload, median, info) -> dict:
        peak_flops = self.ceilings.peak_flops(case.dtype)
        peak_bytes = self.ceilings.copy_bytes_per_s
        floor = roofline.floor(workload.flops, workload.min_bytes, peak_flops, peak_bytes)
        return {**case.as_dict(), "case": case.id, "device": str(self.device), "rotation": ROTATION,
                "flops": workload.flops, "min_bytes": workload.min_bytes, "peak_flops_per_s": peak_flops,
                "peak_bytes_per_s": peak_bytes, "floor_s": floor.seconds, "bound": floor.bound,
                "roofline_fraction": floor.fraction(median), **info}


def _backend_description(device):
    """What runs the op on ``device`` and why, as one line (the per-device decision: see backend_info)."""
    info = backend_info(device)
    return f"{info.backend}: {info.reason}"


def environment(device) -> dict:
    """GPU, versions, commit and date: what a result needs to be compared with another."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    info = build_info()
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))) if cuda else None,
        "multiprocessors": torch.cuda.get_device_properties(device).multi_processor_count if cuda else None,
        "device_memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)
        if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "fused_inception_backend": _backend_description(device),
        "extension_cuda_arch": ", ".join(info["cuda_archs"]) if info.get("with_cuda") else None,
        "commit": commit_id(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit_id() -> str:
    """$COMMIT (the device check passes it; .git may not travel), else git's HEAD of this checkout."""
    if os.environ.get("COMMIT"):
        return os.environ["COMMIT"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def benchmark_entry(outcome: Outcome, fullname_prefix: str = "fused_inception bench::") -> dict:
    """One entry of pytest-benchmark's "benchmarks" list (its JSON layout, stats computed by its Stats)."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for sample in outcome.samples:
        stats.update(sample)
    case = outcome.case
    return {"group": group_name(case), "name": case.id, "fullname": fullname_prefix + case.id,
            "params": {"case": case.id}, "param": case.id, "extra_info": outcome.extra_info,
            "options": {"warmup": True, "timer": "torch.cuda.Event" if outcome.extra_info.get("device", "")
                        .startswith("cuda") else "time.perf_counter"},
            "stats": {**stats.as_dict(), "data": list(outcome.samples), "iterations": 1}}


def group_name(case: Case) -> str:
    """pytest-benchmark groups the implementations of one workload together, so `compare` lines them up."""
    return f"{case.target} {case.mode} {case.dtype} {case.memory_format} batch {case.batch}"


def section(env, ceilings, settings, profile, not_run, elapsed_s=None, budget_s=None) -> dict:
    """Our part of the JSON document (key "fused_inception"): environment, ceilings, settings, and every
    case that did not produce a timing (skipped or failed) with its reason."""
    return {"schema": SCHEMA_VERSION, "environment": env, "ceilings": ceilings.as_dict(),
            "settings": {**dataclasses.asdict(settings), "rotation": ROTATION, "baseline": BASELINE},
            "profile": profile,
            "not_run": [{**o.case.as_dict(), "case": o.case.id, "status": o.status,
                         "reason": o.skip_reason or o.error} for o in not_run],
            "elapsed_s": elapsed_s, "budget_s": budget_s}


def document(outcomes, env, ceilings, settings, profile, elapsed_s=None, budget_s=None) -> dict:
    """The whole JSON file, laid out as pytest-benchmark writes it (so `pytest-benchmark compare` reads it)."""
    done = [o for o in outcomes if o.status == "ok"]
    machine = {"node": platform.node(), "processor": platform.processor(), "machine": platform.machine(),
               "python_implementation": platform.python_implementation(),
               "python_version": platform.python_version(), "release": platform.release(),
               "system": platform.system()}
    commit = env["commit"]
    return {"machine_info": machine,
            "commit_info": {"id": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty"),
                            "project": "fused_inception"},
            "benchmarks": [benchmark_entry(o) for o in done],
            "datetime": env["date"], "version": _pytest_benchmark_version(),
            "fused_inception": section(env, ceilings, settings, profile, [o for o in outcomes if o.status != "ok"],
                                       elapsed_s, budget_s)}


def _pytest_benchmark_version() -> str:
    import pytest_benchmark

    return pytest_benchmark.__version__


def ceilings_for(cases, device) -> roofline.Ceilings:
    """Measures the ceilings for the dtypes `cases` use (bf16 always: the headline rate)."""
    labels = {"bf16"} | {case.dtype for case in cases}
    if torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        labels.discard("bf16")
    return roofline.measure_ceilings(device, {label: DTYPES[label] for label in sorted(labels)})
