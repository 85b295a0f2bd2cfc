#!/usr/bin/env python3
"""What the built extension's kernels compile to, read from their SASS: registers, spills, and per tensor-core
inner loop its instruction count, instruction mix and SASS instructions per m16n8k16-equivalent tensor op.

    python scripts/sass_report.py [--so fused_inception/_C*.so] [--arch sm_90] [--kernel REGEX] [--json]
                                  [--max-ratio X]

Definitions (docs/performance.md explains them):
- A loop is a backward branch in the SASS: a BRA at address b to a target t <= b spans [t, b]; back edges to
  one target are one loop (up to the last of them).
- A tensor-core inner loop is a loop that issues tensor-core ops (HMMA, HGMMA, IMMA) and contains no other
  loop that does. It may contain loops that do not (a loader's copy loop): their instructions are counted
  once, as they appear in the code (a static count, not a trace).
- Tensor ops count as m16n8k16 equivalents: m * n * k / (16 * 8 * 16) of the instruction's shape, so
  HMMA.16816 = 1, HMMA.1688 = 1/2, HGMMA.64xNx16 = N/2.
- Spills: the kernel's local memory (cuobjdump -res-usage LOCAL/STACK) and its local loads and stores
  (LDL/STL) in the SASS; per tensor loop, those inside it.
- A tensor loop's pass is the innermost loop around it (run_gemm's passes over N): "pass+" counts the
  instructions that pass runs outside the tensor loop (its setup and epilogue, every path of it: static),
  and its local loads and stores there; "pass path" counts those on its fall-through path (every predicated
  branch not taken, every unconditional one taken: in this kernel, a warp with all its tiles and channels in
  use), an estimate of what one pass issues outside its K loop.

cuobjdump comes from the triton package (backends/nvidia/bin), $CUDA_HOME/bin or PATH; --cuobjdump overrides.
Exit status: 0, or 1 when --max-ratio is given and some tensor-core inner loop exceeds it, 2 when the tools
or the binary are missing.
"""

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Instruction classes of the mix, by opcode (the mnemonic before the first '.').
MIX_CLASSES = (
    ("tensor", {"HMMA", "HGMMA", "IMMA", "IGMMA", "BMMA", "DMMA"}),
    ("shared_load", {"LDS", "LDSM"}),
    ("global_load", {"LDG", "LDGSTS"}),
    ("store", {"STS", "STG", "STL", "ST", "STSM"}),
    ("integer", {"IMAD", "IADD3", "IADD", "LEA", "SHF", "SHL", "SHR", "IMUL", "IABS", "IMNMX", "LOP3", "LOP",
                 "SGXT", "BMSK", "UIMAD", "UIADD3", "ULEA", "USHF", "ULOP3"}),
    ("predicate_branch", {"ISETP", "FSETP", "PLOP3", "UISETP", "UPLOP3", "BRA", "BRX", "JMP", "BSSY", "BSYNC",
                          "EXIT", "P2R", "R2P", "VOTE", "VOTEU"}),
    ("convert", {"I2F", "F2I", "F2F", "F2FP", "I2I", "FRND", "I2FP", "F2IP"}),
)
MIX_ORDER = tuple(name for name, _ in MIX_CLASSES) + ("other",)
MIX_LABELS = {"tensor": "MMA", "shared_load": "LDS/LDSM", "global_load": "LDG/LDGSTS", "store": "ST*",
              "integer": "INT", "predicate_branch": "SETP/BRA", "convert": "CVT", "other": "other"}
TENSOR_OPCODES = MIX_CLASSES[0][1]

_INSTRUCTION = re.compile(r"/\*([0-9a-fA-F]{4,})\*/\s+([^;]*?)\s*;")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)\s*$", re.MULTILINE)
_BRANCH_TARGET = re.compile(r"0x([0-9a-fA-F]+)\s*$")
_RES_USAGE = re.compile(r"Function\s+(\S+?):\s*\n\s*(REG:.*)")


@dataclass
class Instruction:
    address: int
    text: str  # predicate, opcode and operands, without the ';'

    @property
    def opcode(self) -> str:
        """The full opcode with its modifiers (HMMA.16816.F32.BF16), without the predicate."""
        words = self.text.split()
        if words and words[0].startswith("@"):
            words = words[1:]
        return words[0] if words else ""

    @property
    def mnemonic(self) -> str:
        return self.opcode.split(".")[0]


def parse_sass(text: str) -> dict:
    """{function name: [Instruction]} from `cuobjdump -sass` or `nvdisasm` text."""
    functions = {}
    names = list(_FUNCTION.finditer(text))
    for i, match in enumerate(names):
        end = names[i + 1].start() if i + 1 < len(names) else len(text)
        body = text[match.end():end]
        functions[match.group(1)] = [Instruction(int(a, 16), t.strip()) for a, t in _INSTRUCTION.findall(body)]
    return functions


def tensor_op_equivalents(instruction: Instruction) -> float:
    """m16n8k16 equivalents of one instruction (0 for a non-tensor instruction)."""
    if instruction.mnemonic not in TENSOR_OPCODES:
        return 0.0
    parts = instruction.opcode.split(".")
    shape = parts[1] if len(parts) > 1 else ""
    dims = re.fullmatch(r"(\d+)x(\d+)x(\d+)", shape)  # HGMMA.64x128x16
    if dims:
        m, n, k = (int(d) for d in dims.groups())
    else:  # HMMA.16816, HMMA.1688, HMMA.884: m is 16 or 8, n is 8, k the rest
        digits = re.fullmatch(r"(16|8)(8)(\d+)", shape)
        if not digits:
            raise ValueError(f"unknown tensor instruction shape in {instruction.text!r}")
        m, n, k = (int(d) for d in digits.groups())
    return m * n * k / (16 * 8 * 16)


def branch_target(instruction: Instruction):
    if instruction.mnemonic != "BRA":
        return None
    match = _BRANCH_TARGET.search(instruction.text)
    return int(match.group(1), 16) if match else None


@dataclass
class Loop:
    start: int  # the branch target (the loop's first instruction)
    end: int    # the last backward branch to it
    instructions: list = field(default_factory=list)

    def contains(self, other: "Loop") -> bool:
        return self is not other and self.start <= other.start and other.end <= self.end


def find_loops(instructions: list) -> list:
    """Loops from backward branches; all back edges to one target make one loop (to the last of them)."""
    ends = {}
    for ins in instructions:
        target = branch_target(ins)
        if target is not None and target <= ins.address:
            ends[target] = max(ends.get(target, target), ins.address)
    loops = [Loop(start, end, [i for i in instructions if start <= i.address <= end]) for start, end in ends.items()]
    return sorted(loops, key=lambda loop: loop.start)


def instruction_mix(instructions: list) -> dict:
    mix = dict.fromkeys(MIX_ORDER, 0)
    for ins in instructions:
        mnemonic = ins.mnemonic
        if mnemonic == "NOP":
            continue  # alignment padding, never issued in a loop body that runs
        for name, opcodes in MIX_CLASSES:
            if mnemonic in opcodes:
                mix[name] += 1
                break
        else:
            mix["other"] += 1
    return mix


def _spills(instructions) -> int:
    return sum(i.mnemonic in ("LDL", "STL") for i in instructions)


def _guard(instruction: Instruction):
    """The instruction's predicate guard (@P0, @!UP1, ...), or None."""
    words = instruction.text.split()
    return words[0] if words and words[0].startswith("@") else None


def _always(instruction: Instruction) -> bool:
    """Whether it executes whatever the predicates: no guard, or @PT / @UPT."""
    return _guard(instruction) in (None, "@PT", "@UPT")


def _always_taken(instruction: Instruction) -> bool:
    """A branch taken whatever the predicates: unguarded (or @PT), with no predicate operand before its
    target (BRA P1, 0x...; BRA.U !UP0, 0x...), and not BRA.DIV (taken only where a warp has diverged)."""
    if not _always(instruction) or instruction.opcode.startswith("BRA.DIV"):
        return False
    operands = instruction.text.split(None, 2 if _guard(instruction) else 1)[-1]
    return not re.match(r"!?U?P\d\s*,", operands)


def fall_through_path(instructions: list, outer: Loop, inner: Loop) -> int:
    """Instructions one trip of `outer` (a pass) issues outside `inner` (its K loop) on its fall-through path:
    from the pass's first instruction, every conditional branch (and predicated EXIT) not taken and every
    unconditional one taken, the K loop entered and left once (not counted), up to the pass's back edge or an
    unconditional exit. A branch back to code already walked (a loop other than the K loop) is left, its body
    counted once; a jump to code placed outside the pass is followed. In this kernel a taken conditional branch
    skips work (an idle warp's multiply, a row outside the image, the channel-testing epilogue of a partial
    warp), so this is the path of a warp with every tile and channel in use: an estimate of the dynamic count
    the static `pass+` over-counts. NOPs are not counted."""
    by_address = {ins.address: index for index, ins in enumerate(instructions)}
    index, count, seen = by_address.get(outer.start), 0, set()
    while index is not None and index < len(instructions) and index not in seen:
        seen.add(index)
        ins = instructions[index]
        if inner.start <= ins.address <= inner.end:  # the K loop: continue after it
            index = next((i for i in range(index, len(instructions)) if instructions[i].address > inner.end), None)
            continue
        if ins.mnemonic in ("EXIT", "RET") and _always(ins):
            break
        count += ins.mnemonic != "NOP"
        if ins.address == outer.end:
            break  # the pass's back edge
        target = by_address.get(branch_target(ins)) if ins.mnemonic == "BRA" and _always_taken(ins) else None
        index = target if target is not None and target not in seen else index + 1
    return count


def tensor_inner_loops(instructions: list) -> list:
    """Per tensor-core inner loop: its span, counts, mix, local loads and stores, instructions per m16n8k16
    equivalent, and its pass: the innermost loop around it (the passes over N), with the instructions and
    local loads and stores that pass runs outside it (static counts: every path of the epilogue), or None."""
    loops = find_loops(instructions)
    tensor_ops = {id(loop): sum(tensor_op_equivalents(i) for i in loop.instructions) for loop in loops}
    report = []
    for loop in loops:
        if tensor_ops[id(loop)] == 0:
            continue
        inner = [other for other in loops if loop.contains(other)]
        if any(tensor_ops[id(other)] for other in inner):
            continue  # a loop around a tensor loop (the passes over N): not an inner loop
        mix = instruction_mix(loop.instructions)
        count = sum(mix.values())
        shapes = {}
        for ins in loop.instructions:
            if ins.mnemonic in TENSOR_OPCODES:
                shapes[ins.opcode] = shapes.get(ins.opcode, 0) + 1
        around = [other for other in loops if other.contains(loop)]
        pass_info = None
        if around:
            outer = min(around, key=lambda other: other.end - other.start)
            outside = [i for i in outer.instructions
                       if i.mnemonic != "NOP" and not loop.start <= i.address <= loop.end]
            pass_info = dict(start=f"0x{outer.start:x}", end=f"0x{outer.end:x}", instructions_outside=len(outside),
                             spill_instructions_outside=_spills(outside),
                             fall_through_outside=fall_through_path(instructions, outer, loop))
        report.append(dict(start=f"0x{loop.start:x}", end=f"0x{loop.end:x}", instructions=count,
                           nested_loops=len(inner), tensor_instructions=shapes,
                           tensor_op_equivalents=tensor_ops[id(loop)], mix=mix,
                           instructions_per_tensor_op=count / tensor_ops[id(loop)],
                           spill_instructions=_spills(loop.instructions), **{"pass": pass_info}))
    return report


def parse_resource_usage(text: str) -> dict:
    """{function: {"registers", "stack", "local", "shared"}} from `cuobjdump -res-usage`."""
    usage = {}
    for name, fields in _RES_USAGE.findall(text):
        values = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", fields))
        usage[name] = dict(registers=int(values.get("REG", 0)), stack=int(values.get("STACK", 0)),
                           local=int(values.get("LOCAL", 0)), shared=int(values.get("SHARED", 0)))
    return usage


def demangle(names: list) -> dict:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if not tool or not names:
        return {name: name for name in names}
    result = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    return dict(zip(names, lines)) if result.returncode == 0 and len(lines) == len(names) else {n: n for n in names}


def report(cuobjdump_text: str, kernel_pattern: str = "") -> list:
    """One entry per kernel whose demangled name matches `kernel_pattern` (all when empty), from the text of
    `cuobjdump -res-usage -sass` (or SASS alone: then registers and local memory are None)."""
    functions = parse_sass(cuobjdump_text)
    usage = parse_resource_usage(cuobjdump_text)
    names = demangle(list(functions))
    entries = []
    for mangled, instructions in functions.items():
        if kernel_pattern and not re.search(kernel_pattern, names[mangled]):
            continue
        resources = usage.get(mangled, {})
        local_ops = _spills(instructions)
        entries.append(dict(kernel=names[mangled], mangled=mangled, registers=resources.get("registers"),
                            stack_bytes=resources.get("stack"), local_bytes=resources.get("local"),
                            spill_instructions=local_ops, instructions=len(instructions),
                            tensor_loops=tensor_inner_loops(instructions)))
    return entries


# ---- finding the tools and the binary ---------------------------------------------------------------------


def find_cuobjdump(explicit=None):
    candidates = [explicit] if explicit else []
    triton = importlib.util.find_spec("triton")
    if triton and triton.submodule_search_locations:
        for location in triton.submodule_search_locations:
            candidates.append(os.path.join(location, "backends", "nvidia", "bin", "cuobjdump"))
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    candidates.append(shutil.which("cuobjdump"))
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_extension(explicit=None):
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    found = sorted(glob.glob(os.path.join(REPO, "fused_inception", "_C*.so")))
    if not found:  # an installed package (find_spec does not import it, so no torch)
        spec = importlib.util.find_spec("fused_inception")
        for location in (spec.submodule_search_locations or []) if spec else []:
            found = sorted(glob.glob(os.path.join(location, "_C*.so")))
            if found:
                break
    return found[0] if found else None


def dump(cuobjdump: str, so: str, arch: str) -> str:
    """SASS and resource usage of the `arch` cubins, in one pass over the binary."""
    result = subprocess.run([cuobjdump, "-arch", arch, "-res-usage", "-sass", so], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0 and "does not contain device code" in result.stderr:
        return ""  # a CPU-only build: no kernels to report
    if result.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cuobjdump)} failed: {result.stderr.strip()}")
    return result.stdout


# ---- output ---------------------------------------------------------------------------------------------------


def format_table(entries: list) -> str:
    lines = []
    for entry in entries:
        lines.append(f"{entry['kernel']}")
        lines.append(f"  registers {entry['registers']}, stack {entry['stack_bytes']} B, local "
                     f"{entry['local_bytes']} B, spill loads/stores (LDL/STL) {entry['spill_instructions']}, "
                     f"{entry['instructions']} instructions")
        if not entry["tensor_loops"]:
            lines.append("  no tensor-core loops")
            continue
        header = "  loop             instr nested  MMA-eq  instr/MMA-eq  " + " ".join(
            f"{MIX_LABELS[name]:>10}" for name in MIX_ORDER) + "    LDL/STL   pass+  pass LDL/STL  pass path"
        lines.append(header)
        for loop in entry["tensor_loops"]:
            span = f"{loop['start']}-{loop['end']}"
            around = loop["pass"]
            lines.append(f"  {span:<16} {loop['instructions']:>5} {loop['nested_loops']:>6} "
                         f"{loop['tensor_op_equivalents']:>7g} {loop['instructions_per_tensor_op']:>13.1f}  "
                         + " ".join(f"{loop['mix'][name]:>10}" for name in MIX_ORDER)
                         + f" {loop['spill_instructions']:>10} "
                         + (f"{around['instructions_outside']:>7} {around['spill_instructions_outside']:>13}"
                            f" {around['fall_through_outside']:>10}"
                            if around else f"{'-':>7} {'-':>13} {'-':>10}"))
        shapes = sorted({s for loop in entry["tensor_loops"] for s in loop["tensor_instructions"]})
        lines.append(f"  tensor instructions: {', '.join(shapes)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--so", help="the extension (default: fused_inception/_C*.so of this checkout or the "
                                     "installed package)")
    parser.add_argument("--arch", default="sm_90", help="the cubins to read (default sm_90)")
    parser.add_argument("--kernel", default="", help="only kernels whose demangled name matches this regex")
    parser.add_argument("--cuobjdump", help="path of cuobjdump (default: triton's, $CUDA_HOME's or PATH's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--max-ratio", type=float, default=None,
                        help="exit 1 if a tensor-core inner loop spends more SASS instructions per "
                             "m16n8k16-equivalent tensor op than this")
    args = parser.parse_args(argv)

    so = find_extension(args.so)
    if so is None:
        print(f"sass_report: no built extension found ({args.so or 'fused_inception/_C*.so'})", file=sys.stderr)
        return 2
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if cuobjdump is None:
        print("sass_report: cuobjdump not found (install triton or set CUDA_HOME)", file=sys.stderr)
        return 2
    try:
        text = dump(cuobjdump, so, args.arch)
    except RuntimeError as error:
        print(f"sass_report: {error}", file=sys.stderr)
        return 2
    entries = report(text, args.kernel)
    if not entries:
        print(f"sass_report: no {args.arch} kernels{' matching ' + args.kernel if args.kernel else ''} in {so}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(dict(so=so, arch=args.arch, kernels=entries), indent=1))
    else:
        print(f"{so} ({args.arch})\n")
        print(format_table(entries))
    if args.max_ratio is not None:
        over = [(e["kernel"], loop) for e in entries for loop in e["tensor_loops"]
                if loop["instructions_per_tensor_op"] > args.max_ratio]
        for kernel, loop in over:
            print(f"over --max-ratio {args.max_ratio:g}: {kernel} loop {loop['start']}-{loop['end']}: "
                  f"{loop['instructions_per_tensor_op']:.1f}", file=sys.stderr)
        if over:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
