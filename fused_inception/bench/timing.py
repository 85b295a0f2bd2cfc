"""Timing helpers shared by the demo and the benchmarks: warm-up, medians, device-side timers on CUDA."""

import statistics
import time
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    """Seconds per call: the median of `samples` (each sample times `calls_per_sample` calls)."""

    samples: list = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device, *, warmup: int = 3, repeats: int = 20, calls_per_sample: int = 1) -> Timing:
    """Times fn() on `device`. CUDA: events around each sample; CPU: perf_counter. Returns seconds per call.

    `fn` receives the call index, so it can rotate through several input sets (L2 should not flatter).
    """
    device = torch.device(device)
    for i in range(warmup):
        fn(i)
    synchronize(device)
    timing = Timing()
    call = 0
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls_per_sample):
                fn(call)
                call += 1
            end.record()
            end.synchronize()
            timing.samples.append(start.elapsed_time(end) / 1e3 / calls_per_sample)
        else:
            begin = time.perf_counter()
            for _ in range(calls_per_sample):
                fn(call)
                call += 1
            timing.samples.append((time.perf_counter() - begin) / calls_per_sample)
    return timing


def peak_memory(fn, device) -> int | None:
    """Bytes the caching allocator's peak rises above what was allocated before one fn() call, on CUDA: the
    activations, gradients and workspaces that call needs. None on other devices (no allocator statistics)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def time_first_call(fn, device) -> float:
    """Host seconds of one fn() call until the device is idle: a first call's compile, capture or autotuning."""
    synchronize(device)
    begin = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - begin
