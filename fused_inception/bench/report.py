"""`python -m fused_inception report FILE.json`: a saved benchmark JSON (from `bench` or from the
pytest-benchmark suite with --benchmark-json) as a markdown table and PNG plots, so results from a GPU
machine can be rendered anywhere.

Every number comes from the JSON: medians from pytest-benchmark's stats, FLOPs, minimum bytes and the
measured ceilings from each entry's extra_info; speedups and roofline fractions are computed here.
"""

import argparse
import json
import math
import os
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass

from . import roofline
from .benchcases import BASELINE, DTYPES, IMPLS, TARGETS

FORMATS = ("json", "md", "png")
MARKDOWN_NAME = "bench.md"
SPEEDUP_PNG = "speedup.png"
ROOFLINE_PNG = "roofline.png"
IMPL_LABELS = {"fused": "fused", "fused-cudagraph": "fused + CUDA graph", "eager": "eager",
               "eager-cudagraph": "eager + CUDA graph",
               "compile": "torch.compile", "compile-max-autotune": "compile max-autotune", "cupy": "CuPy fused"}
# One label per benchmarked implementation (a missing one broke the first GPU report, 2026-11-28).
assert set(IMPL_LABELS) == set(IMPLS), f"IMPL_LABELS and benchcases.IMPLS differ: {set(IMPL_LABELS) ^ set(IMPLS)}"
LAYOUT_LABELS = {"nhwc": "channels_last", "nchw": "NCHW"}
#: extra_info fields a record needs (the case, its FLOPs and bytes, and the ceilings it was measured with).
REQUIRED = ("target", "mode", "impl", "batch", "dtype", "memory_format", "flops", "min_bytes",
            "peak_flops_per_s", "peak_bytes_per_s")


class ReportError(ValueError):
    """A JSON file that is not a fused_inception benchmark result; the message says what is wrong."""


@dataclass
class Record:
    info: dict  # the entry's extra_info
    median_s: float
    rounds: int

    def __getattr__(self, name):  # record.target, record.batch, ... read the case fields
        try:
            return self.__dict__["info"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def floor(self) -> roofline.Floor:
        return roofline.floor(self.flops, self.min_bytes, self.peak_flops_per_s, self.peak_bytes_per_s)

    @property
    def fraction(self) -> float:
        return self.floor.fraction(self.median_s)

    @property
    def workload(self) -> tuple:
        return (self.target, self.mode, self.batch, self.dtype, self.memory_format)


@dataclass
class Results:
    records: list
    meta: dict  # the "fused_inception" section: environment, ceilings, settings, cases not run

    def __post_init__(self):
        self._baselines = {r.workload: r for r in self.records if r.impl == BASELINE}

    def speedup(self, record):
        """Eager's median over this record's, for the same workload (None without an eager record)."""
        base = self._baselines.get(record.workload)
        return base.median_s / record.median_s if base else None

    @property
    def not_run(self) -> list:
        return self.meta.get("not_run", [])

    @property
    def environment(self) -> dict:
        return self.meta.get("environment", {})


def load(path: str) -> Results:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from None
    return from_document(data, path)


def from_document(data, path: str = "<document>") -> Results:
    """Results from a parsed JSON document (`path` only names it in error messages)."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    records = []
    for entry in data["benchmarks"]:
        info = entry.get("extra_info") or {}
        if "case" not in info:
            continue  # another suite's benchmark in the same file
        missing = [key for key in REQUIRED if key not in info]
        if missing:
            raise ReportError(f"{path}: benchmark {entry.get('name')!r} lacks {', '.join(missing)} in extra_info")
        stats = entry.get("stats") or {}
        if not isinstance(stats.get("median"), (int, float)) or stats["median"] <= 0:
            raise ReportError(f"{path}: benchmark {entry.get('name')!r} has no positive stats.median")
        records.append(Record(info, float(stats["median"]), int(stats.get("rounds", 0))))
    meta = data.get("fused_inception") or {}
    if not records and not meta.get("not_run"):
        raise ReportError(f"{path}: no fused_inception benchmark in it (entries need extra_info['case'])")
    return Results(records, meta)


# ---------------------------------------------------------------------------------------------- markdown


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_rate(value: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.2g}%" if fraction < 0.1 else f"{fraction * 100:.0f}%"


def _sections(results):
    """(mode, dtype, memory_format) -> records, the section with the most records first (the headline)."""
    groups = defaultdict(list)
    for record in results.records:
        groups[(record.mode, record.dtype, record.memory_format)].append(record)
    for item in results.not_run:
        groups.setdefault((item["mode"], item["dtype"], item["memory_format"]), [])
    order = {name: i for i, name in enumerate(DTYPES)}
    return sorted(groups.items(), key=lambda kv: (kv[0][0] != "inference", -len(kv[1]), order[kv[0][1]],
                                                  kv[0][2]))


def _cell(results, record):
    if record is None:
        return "—"
    speedup = results.speedup(record)
    parts = [format_seconds(record.median_s), f"{speedup:.2f}x" if speedup else "no eager",
             format_percent(record.fraction)]
    if record.impl != BASELINE and record.info.get("numerics_passed") is False:
        parts.append("**numerics FAIL**")
    return " · ".join(parts)


def _memory(record):
    value = record.info.get("peak_memory_bytes") if record else None
    return "—" if value is None else f"{value / 2 ** 20:.0f} MiB"


def _table(results, mode, dtype, memory_format, records):
    not_run = [n for n in results.not_run if (n["mode"], n["dtype"], n["memory_format"]) == (mode, dtype,
                                                                                            memory_format)]
    impls = [i for i in IMPLS if any(r.impl == i for r in records) or any(n["impl"] == i for n in not_run)]
    by_workload = defaultdict(dict)
    for record in records:
        by_workload[(record.target, record.batch)][record.impl] = record
    for item in not_run:
        by_workload.setdefault((item["target"], item["batch"]), {})
    header = ["block", "batch", "floor"] + [IMPL_LABELS[i] for i in impls]
    # Peak memory is measured for training steps on CUDA (the caching allocator's statistics).
    memory = [i for i in impls if any(r.impl == i and r.info.get("peak_memory_bytes") is not None
                                      for r in records)]
    header += [f"{IMPL_LABELS[i]} peak memory" for i in memory]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for target, batch in sorted(by_workload, key=lambda key: (TARGETS.index(key[0]), key[1])):
        row = by_workload[(target, batch)]
        any_record = next(iter(row.values()), None)
        floor = (f"{format_seconds(any_record.floor.seconds)} ({any_record.floor.bound[0]})"
                 if any_record else "—")
        cells = [target, str(batch), floor] + [_cell(results, row.get(i)) for i in impls]
        cells += [_memory(row.get(i)) for i in memory]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(results):
    env, ceilings = results.environment, results.meta.get("ceilings") or {}
    device = env.get("device", "?")
    title = f"GPU: {env.get('device_name')}" if device.startswith("cuda") else f"CPU: {env.get('device_name')}"
    lines = [f"# fused_inception benchmarks — {title}", ""]
    if env:
        commit = str(env.get("commit"))
        commit = f"`{commit[:12]}`" + (" with uncommitted changes" if commit.endswith("+dirty") else "")
        lines.append(f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, Python "
                     f"{env.get('python')}; commit {commit}; {env.get('date')}; profile "
                     f"`{results.meta.get('profile')}`; {env.get('cpu_threads')} CPU threads.")
        lines.append(f"The op's implementation here: {env.get('fused_inception_backend')}.")
    if ceilings:
        rates = ", ".join(f"{label} {format_rate(rate, 'FLOP/s')}"
                          for label, rate in ceilings["matmul_flops_per_s"].items())
        tf32 = " (fp32 with TF32, as cuDNN convolutions run)" if ceilings.get("fp32_matmul_tf32") else ""
        lines.append(f"Ceilings measured in this run: {ceilings['matmul_size']}^3 matmul {rates}{tf32}; "
                     f"{ceilings['copy_bytes'] >> 20} MiB copy {format_rate(ceilings['copy_bytes_per_s'], 'B/s')} "
                     "(read + write).")
    settings = results.meta.get("settings")
    if settings:
        lines.append(f"Each case: {settings['warmup']} warm-up calls, then the median of {settings['rounds']} "
                     f"timed calls ({settings['heavy_rounds']} for the network and training steps), "
                     f"{settings['rotation']} input sets in rotation; eager runs in the same process.")
    lines += ["", "Each cell: median time per call · speedup over eager PyTorch (higher is faster) · fraction of "
              "the roofline floor reached. Floor = max(FLOPs / matmul rate, minimum bytes / copy rate), marked "
              "(c)ompute- or (m)emory-bound; minimum bytes = input + output + weights once. — : not run (reasons "
              "below)."]
    return lines


def markdown(results: Results) -> str:
    lines = _header(results)
    for (mode, dtype, memory_format), records in _sections(results):
        title = "Inference (forward)" if mode == "inference" else "Training step (forward + backward)"
        lines += ["", f"## {title}, {dtype}, {LAYOUT_LABELS[memory_format]}", ""]
        lines += _table(results, mode, dtype, memory_format, records)
    checked = [r for r in results.records if "numerics_passed" in r.info]
    failed = [r for r in checked if not r.info["numerics_passed"]]
    if checked:
        lines += ["", f"Numerics: {len(checked) - len(failed)} of {len(checked)} inference results within the "
                  "project's bound against float64 (2x eager's error in the same dtype)."]
        lines += [f"- FAIL {r.case}: error {r.numerics_error:.3g} > bound {r.numerics_bound:.3g}" for r in failed]
    if results.not_run:
        lines += ["", "## Not run", ""]
        reasons = Counter((n["status"], n["impl"], n["reason"]) for n in results.not_run)
        lines += [f"- {count} {IMPL_LABELS[impl]} case(s) {status}: {reason}"
                  for (status, impl, reason), count in reasons.most_common()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- plots


def _headline(results):
    """(dtype, memory_format) of the inference section with the most records, or None."""
    counts = Counter((r.dtype, r.memory_format) for r in results.records if r.mode == "inference")
    return counts.most_common(1)[0][0] if counts else None


def _device_title(results):
    env = results.environment
    kind = "GPU" if env.get("device", "").startswith("cuda") else "CPU"
    return f"{kind}: {env.get('device_name', '?')}"


def _new_figure(width, height):
    # The object-oriented API with the Agg canvas: no pyplot, no global backend switch, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colors():
    return {impl: f"C{i}" for i, impl in enumerate(IMPLS)}


def plot_speedup(results: Results, path: str) -> bool:
    """Speedup over eager vs batch, one panel per block (and the network). False if nothing to plot."""
    headline = _headline(results)
    if headline is None:
        return False
    dtype, memory_format = headline
    records = [r for r in results.records
               if (r.mode, r.dtype, r.memory_format) == ("inference", dtype, memory_format) and r.impl != BASELINE
               and results.speedup(r)]
    targets = [t for t in TARGETS if any(r.target == t for r in records)]
    if not targets:
        return False
    columns = min(5, len(targets))
    rows = math.ceil(len(targets) / columns)
    figure = _new_figure(3.0 * columns, 2.6 * rows + 0.8)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    colors = _colors()
    batches = sorted({r.batch for r in records})
    for ax, target in zip(axes.flat, targets):
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="eager (baseline)")
        for impl in IMPLS:
            points = sorted((r.batch, results.speedup(r)) for r in records if r.target == target and r.impl == impl)
            if points:
                ax.plot(*zip(*points), marker="o", color=colors[impl], label=IMPL_LABELS[impl])
        ax.set_title("whole network" if target == "network" else f"block {target}", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("speedup over eager (x)")
    for ax in axes[-1, :]:
        ax.set_xlabel("batch size")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:len(targets)]:  # impls missing from the first panel
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    figure.suptitle(f"Inference speedup over eager PyTorch, {dtype} {LAYOUT_LABELS[memory_format]} — "
                    f"{_device_title(results)}", fontsize=11)
    figure.savefig(path)
    return True


def plot_roofline(results: Results, path: str) -> bool:
    """Left: achieved FLOP/s against arithmetic intensity under the measured roof. Right: fraction of the
    floor reached vs batch, per implementation (median over the nine blocks, band from min to max)."""
    headline = _headline(results)
    if headline is None:
        return False
    dtype, memory_format = headline
    records = [r for r in results.records if (r.mode, r.dtype, r.memory_format) == ("inference", dtype,
                                                                                      memory_format)]
    figure = _new_figure(12, 4.8)
    left, right = figure.subplots(1, 2)
    colors = _colors()
    peak_flops, peak_bytes = records[0].peak_flops_per_s, records[0].peak_bytes_per_s
    ridge = peak_flops / peak_bytes  # the intensity where the roof turns from bandwidth to compute
    intensities = [r.flops / r.min_bytes for r in records]
    low, high = min(min(intensities), ridge) / 2, max(max(intensities), ridge) * 2
    prefix, scale = ("T", 1e12) if peak_flops >= 1e13 else ("G", 1e9)
    left.plot([low, ridge, high], [low * peak_bytes / scale, peak_flops / scale, peak_flops / scale],
              color="black", linewidth=1.5,
              label=f"roof: {format_rate(peak_flops, 'FLOP/s')}, {format_rate(peak_bytes, 'B/s')}")
    for impl in IMPLS:
        mine = [r for r in records if r.impl == impl]
        if mine:
            left.scatter([r.flops / r.min_bytes for r in mine], [r.flops / r.median_s / scale for r in mine],
                         s=[12 + 6 * math.log2(r.batch) for r in mine], color=colors[impl], alpha=0.75,
                         label=IMPL_LABELS[impl])
    left.set_xscale("log")
    left.set_yscale("log")
    _plain_log_labels(left.yaxis)
    left.set_xlabel("arithmetic intensity (FLOPs / minimum bytes)")
    left.set_ylabel(f"achieved {prefix}FLOP/s")
    left.set_title("Roofline (marker size grows with batch)", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)

    blocks = [r for r in records if r.target != "network"]
    for impl in IMPLS:
        per_batch = defaultdict(list)
        for r in blocks:
            if r.impl == impl:
                per_batch[r.batch].append(100 * r.fraction)
        if not per_batch:
            continue
        batches = sorted(per_batch)
        medians = [statistics.median(per_batch[b]) for b in batches]
        right.plot(batches, medians, marker="o", color=colors[impl], label=IMPL_LABELS[impl])
        right.fill_between(batches, [min(per_batch[b]) for b in batches], [max(per_batch[b]) for b in batches],
                           color=colors[impl], alpha=0.15)
    all_batches = sorted({r.batch for r in blocks})
    right.set_xscale("log", base=2)
    right.set_xticks(all_batches, [str(b) for b in all_batches])
    right.set_yscale("log")
    _plain_log_labels(right.yaxis, suffix="%")
    right.set_xlabel("batch size")
    right.set_ylabel("% of the roofline floor reached")
    right.set_title("Blocks: median over the nine (band: min to max)", fontsize=10)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    figure.suptitle(f"Fraction of roofline, inference {dtype} {LAYOUT_LABELS[memory_format]} — "
                    f"{_device_title(results)}", fontsize=11)
    figure.savefig(path)
    return True


def _plain_log_labels(axis, suffix=""):
    """Log-axis labels as plain numbers (0.5, 2, 300) instead of powers of ten. Minor ticks are labelled as
    the axis needs: all of them within one decade, 2x, 3x and 5x within two, none beyond (crowded)."""
    from matplotlib.ticker import FuncFormatter

    def label(value, _, minor):
        if value <= 0:
            return ""
        low, high = axis.get_view_interval()
        decades = math.log10(high / low) if low > 0 else math.inf
        leading = round(value / 10 ** math.floor(math.log10(value)), 6)
        if minor and (decades > 2 or (decades > 1 and leading not in (2, 3, 5))):
            return ""
        return f"{value:g}{suffix}"

    axis.set_major_formatter(FuncFormatter(lambda value, pos: label(value, pos, minor=False)))
    axis.set_minor_formatter(FuncFormatter(lambda value, pos: label(value, pos, minor=True)))


# ---------------------------------------------------------------------------------------------------- CLI


def parse_formats(text: str) -> tuple:
    """"json,md,png" -> ("json", "md", "png"); argparse type: unknown names are a clear usage error."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, comma-separated; got {text!r}")
    return names


def write(results: Results, out_dir: str, formats=("md", "png")):
    """Writes the markdown table and the plots (as `formats` ask) into out_dir. Returns (paths written,
    problems): a plot that cannot be drawn is a problem, named with its cause, not a lost table."""
    os.makedirs(out_dir, exist_ok=True)
    written, problems = [], []
    if "md" in formats:
        path = os.path.join(out_dir, MARKDOWN_NAME)
        with open(path, "w") as handle:
            handle.write(markdown(results))
        written.append(path)
    if "png" in formats:
        for name, plot in ((SPEEDUP_PNG, plot_speedup), (ROOFLINE_PNG, plot_roofline)):
            path = os.path.join(out_dir, name)
            try:
                if plot(results, path):
                    written.append(path)
            except ImportError as error:
                problems.append(f"{name} not drawn: the plots need matplotlib (pip install "
                                f"'fused_inception[bench]'): {error}")
            except Exception as error:  # noqa: BLE001 - the table and the other plot still get written
                problems.append(f"{name} not drawn: {type(error).__name__}: {error}")
    return written, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_inception report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="a JSON file written by `bench` or by pytest benchmarks --benchmark-json")
    parser.add_argument("--out", help="folder for bench.md and the plots (default: the JSON's folder)")
    parser.add_argument("--formats", type=parse_formats, default=("md", "png"),
                        help="what to write: md, png, comma-separated (default md,png)")
    args = parser.parse_args(argv)
    if "json" in args.formats:
        parser.error("--formats: report reads JSON and writes md and png")
    try:
        results = load(args.json)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or os.path.dirname(os.path.abspath(args.json))
    written, problems = write(results, out_dir, args.formats)
    print(markdown(results))
    print("wrote " + ", ".join(written) if written else "nothing to write", file=sys.stderr)
    for problem in problems:
        print(f"report: {problem}", file=sys.stderr)
    return 1 if problems else 0
