"""scripts/sass_report.py: the loop finder, mix and ratio on a hand-written SASS fixture, the exit status of
--max-ratio through a stand-in cuobjdump, and the report of the built extension where cuobjdump is here."""

import importlib.util
import json
import os
import stat

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "sass_report.py")
_spec = importlib.util.spec_from_file_location("sass_report", SCRIPT)
sass_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass_report)

# One kernel: a pass loop [0x40, 0x1c0] around a K loop [0x60, 0x1a0], which holds a copy loop [0x80, 0xa0]
# (no tensor ops) and four tensor instructions; a second tensor loop [0x1e0, 0x220] of TF32 ops with two back
# edges to one target; a self-loop trap at the end. Resource usage lines as cuobjdump -res-usage prints them.
FIXTURE = """
 Function _Z6kernelv:
  REG:161 STACK:16 SHARED:1024 LOCAL:8 CONSTANT[0]:816 TEXTURE:0 SURFACE:0 SAMPLER:0

\tcode for sm_90
\t\tFunction : _Z6kernelv
\t.headerflags\t@"EF_CUDA_SM90"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
                                                                          /* 0x000ff00000000800 */
        /*0010*/                   S2R R0, SR_TID.X ;
        /*0020*/                   ISETP.GE.AND P0, PT, R0, 0x10, PT ;
        /*0030*/               @P0 BRA 0x240 ;
        /*0040*/                   IMAD.MOV.U32 R2, RZ, RZ, RZ ;
        /*0050*/                   STL [R1], R2 ;
        /*0060*/                   IADD3 R3, R3, 0x1, RZ ;
        /*0070*/                   LDGSTS.E.BYPASS.128 [R4], desc[UR4][R6.64] ;
        /*0080*/                   LDG.E R8, desc[UR4][R6.64] ;
        /*0090*/                   ISETP.NE.AND P1, PT, R8, RZ, PT ;
        /*00a0*/               @P1 BRA 0x80 ;
        /*00b0*/                   LDSM.16.M88.4 R12, [R9] ;
        /*00c0*/                   LDS R16, [R9+0x10] ;
        /*00d0*/                   HMMA.16816.F32.BF16 R20, R12, R16, R20 ;
        /*00e0*/              @!P2 HMMA.16816.F32.BF16 R24, R12, R17, R24 ;
        /*00f0*/                   HMMA.16816.F32.BF16 R28, R14, R16, R28 ;
        /*0100*/                   HMMA.16816.F32.BF16 R32, R14, R17, R32 ;
        /*0110*/                   SHF.R.S32.HI R5, RZ, 0x1f, R3 ;
        /*0120*/                   I2F.S64 R6, R4 ;
        /*0130*/                   F2FP.BF16.F32.PACK_AB R7, R6, R6 ;
        /*0140*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0150*/                   STS [R9], R7 ;
        /*0160*/                   NOP ;
        /*0170*/                   LEA R9, R3, R9, 0x2 ;
        /*0180*/                   ISETP.GE.AND P3, PT, R3, R10, PT ;
        /*0190*/                   MOV R11, R3 ;
        /*01a0*/              @!P3 BRA 0x60 ;
        /*01b0*/                   ISETP.NE.AND P4, PT, R11, RZ, PT ;
        /*01c0*/               @P4 BRA 0x40 ;
        /*01d0*/                   IMAD R2, R2, 0x2, RZ ;
        /*01e0*/                   HMMA.1688.F32.TF32 R40, R12, R16, R40 ;
        /*01f0*/                   HMMA.1688.F32.TF32 R44, R12, R17, R44 ;
        /*0200*/               @P5 BRA 0x1e0 ;
        /*0210*/                   IADD3 R2, R2, 0x1, RZ ;
        /*0220*/               @P6 BRA P1, 0x1e0 ;
        /*0230*/                   EXIT ;
        /*0240*/                   BRA 0x240 ;
        /*0250*/                   NOP ;
        ..........
"""


def test_instructions_are_parsed_with_addresses_and_opcodes():
    functions = sass_report.parse_sass(FIXTURE)
    assert list(functions) == ["_Z6kernelv"]
    instructions = functions["_Z6kernelv"]
    assert len(instructions) == 38
    assert instructions[0].address == 0 and instructions[0].mnemonic == "LDC"
    by_address = {i.address: i for i in instructions}
    assert by_address[0xE0].opcode == "HMMA.16816.F32.BF16"  # the predicate is not the opcode
    assert sass_report.branch_target(by_address[0x220]) == 0x1E0  # a branch with a predicate operand
    assert sass_report.branch_target(by_address[0xE0]) is None


def test_loops_are_backward_branches_merged_per_target():
    loops = sass_report.find_loops(sass_report.parse_sass(FIXTURE)["_Z6kernelv"])
    spans = [(loop.start, loop.end) for loop in loops]
    # the forward branch 0x30 -> 0x240 is no loop; the two back edges to 0x1e0 are one loop up to the last
    assert spans == [(0x40, 0x1C0), (0x60, 0x1A0), (0x80, 0xA0), (0x1E0, 0x220), (0x240, 0x240)]


@pytest.mark.parametrize("opcode, equivalents", [
    ("HMMA.16816.F32.BF16", 1.0), ("HMMA.16816.F32", 1.0), ("HMMA.1688.F32.TF32", 0.5), ("HMMA.884.F32", 0.125),
    ("HGMMA.64x128x16.F32.BF16", 64.0), ("HGMMA.64x8x16.F32", 4.0), ("LDSM.16.M88.4", 0.0), ("IMAD.WIDE", 0.0)])
def test_tensor_ops_count_as_m16n8k16_equivalents(opcode, equivalents):
    assert sass_report.tensor_op_equivalents(sass_report.Instruction(0, f"{opcode} R0, R1, R2, R3")) == equivalents


def test_tensor_inner_loops_their_mix_and_ratio():
    loops = sass_report.tensor_inner_loops(sass_report.parse_sass(FIXTURE)["_Z6kernelv"])
    # The pass loop [0x40, 0x1c0] holds the K loop, which issues tensor ops: it is not an inner loop. The K
    # loop holds only a copy loop (no tensor ops), so it is one, the copy loop's instructions counted once.
    assert [(loop["start"], loop["end"]) for loop in loops] == [("0x60", "0x1a0"), ("0x1e0", "0x220")]
    k_loop, tf32_loop = loops
    # 0x60..0x1a0 is 21 instructions, less the NOP at 0x160: 20.
    assert k_loop["instructions"] == 20
    assert k_loop["nested_loops"] == 1
    assert k_loop["tensor_op_equivalents"] == 4
    assert k_loop["instructions_per_tensor_op"] == 5.0
    assert k_loop["tensor_instructions"] == {"HMMA.16816.F32.BF16": 4}
    assert k_loop["mix"] == dict(tensor=4, shared_load=2, global_load=2, store=1,
                                 integer=3,           # IADD3, SHF, LEA
                                 predicate_branch=4,  # ISETP x2, BRA x2
                                 convert=2,           # I2F, F2FP
                                 other=2)             # BAR, MOV
    assert tf32_loop["instructions"] == 5 and tf32_loop["tensor_op_equivalents"] == 1.0
    assert tf32_loop["instructions_per_tensor_op"] == 5.0
    assert tf32_loop["nested_loops"] == 0
    # The K loop's pass [0x40, 0x1c0]: 24 instructions (no NOP there but the K loop's), 20 of them the K loop's;
    # outside it IMAD, the STL, ISETP and BRA. The TF32 loop has no loop around it.
    assert k_loop["spill_instructions"] == 0
    assert k_loop["pass"] == dict(start="0x40", end="0x1c0", instructions_outside=4, spill_instructions_outside=1,
                                  fall_through_outside=4)
    assert tf32_loop["pass"] is None and tf32_loop["spill_instructions"] == 0


# A pass [0x0, 0x100] around a K loop [0x60, 0x90] whose code branches: a predicated branch over one path, an
# unconditional branch over the other, a predicated skip of a store after the loop.
BRANCHY_PASS = """
\t\tFunction : _Z4passv
        /*0000*/                   IMAD.MOV.U32 R2, RZ, RZ, RZ ;
        /*0010*/               @P0 BRA 0x40 ;
        /*0020*/                   FADD R3, R3, R4 ;
        /*0030*/                   BRA 0x60 ;
        /*0040*/                   FMUL R3, R3, R4 ;
        /*0050*/                   FMUL R3, R3, R5 ;
        /*0060*/                   HMMA.16816.F32.BF16 R20, R12, R16, R20 ;
        /*0070*/                   HMMA.16816.F32.BF16 R24, R12, R17, R24 ;
        /*0080*/                   NOP ;
        /*0090*/               @P1 BRA 0x60 ;
        /*00a0*/               @P2 BRA 0xd0 ;
        /*00b0*/                   STG.E desc[UR4][R6.64], R20 ;
        /*00c0*/                   NOP ;
        /*00d0*/                   IADD3 R2, R2, 0x1, RZ ;
        /*00e0*/                   BRA 0xf0 ;
        /*00f0*/                   ISETP.GE.AND P3, PT, R2, R10, PT ;
        /*0100*/              @!P3 BRA 0x0 ;
        /*0110*/                   EXIT ;
"""


def test_a_pass_fall_through_path_takes_every_unconditional_branch_and_no_conditional_one():
    (k_loop,) = sass_report.tensor_inner_loops(sass_report.parse_sass(BRANCHY_PASS)["_Z4passv"])
    assert (k_loop["start"], k_loop["end"]) == ("0x60", "0x90")
    # Static: every instruction of the pass outside the K loop but the NOP (both FMULs included): 12. The path:
    # IMAD, the @P0 BRA not taken, FADD, BRA 0x60 taken (the FMULs skipped), the K loop not counted, the @P2
    # BRA not taken, STG (the NOP not counted), IADD3, BRA 0xf0, ISETP and the back edge: 10.
    assert k_loop["pass"]["instructions_outside"] == 12
    assert k_loop["pass"]["fall_through_outside"] == 10


# A pass [0x0, 0xf0] whose fall-through path meets each kind of branch: a predicated EXIT, branches with a
# predicate operand and BRA.DIV (conditional), @PT (taken), a top-tested loop other than the K loop, and a jump
# to out-of-line code placed after the pass, which jumps back.
BRANCH_KINDS = """
\t\tFunction : _Z5kindsv
        /*0000*/                   IMAD.MOV.U32 R2, RZ, RZ, RZ ;
        /*0010*/               @P3 EXIT ;
        /*0020*/                   BRA.U !UP0, 0x50 ;
        /*0030*/                   BRA.DIV UR4, 0x50 ;
        /*0040*/               @PT BRA 0x60 ;
        /*0050*/                   FMUL R3, R3, R4 ;
        /*0060*/               @P4 BRA 0x90 ;
        /*0070*/                   IADD3 R2, R2, 0x1, RZ ;
        /*0080*/                   BRA 0x60 ;
        /*0090*/                   HMMA.16816.F32.BF16 R20, R12, R16, R20 ;
        /*00a0*/                   HMMA.16816.F32.BF16 R24, R12, R17, R24 ;
        /*00b0*/               @P1 BRA 0x90 ;
        /*00c0*/                   BRA 0x110 ;
        /*00d0*/                   STG.E desc[UR4][R6.64], R20 ;
        /*00e0*/                   ISETP.GE.AND P5, PT, R2, R10, PT ;
        /*00f0*/              @!P5 BRA 0x0 ;
        /*0100*/                   EXIT ;
        /*0110*/                   FADD R3, R3, R4 ;
        /*0120*/                   BRA 0xd0 ;
"""


def test_the_fall_through_path_through_each_kind_of_branch():
    (k_loop,) = sass_report.tensor_inner_loops(sass_report.parse_sass(BRANCH_KINDS)["_Z5kindsv"])
    assert (k_loop["start"], k_loop["end"]) == ("0x90", "0xb0")
    assert (k_loop["pass"]["start"], k_loop["pass"]["end"]) == ("0x0", "0xf0")
    # IMAD, @P3 EXIT (not taken), BRA.U !UP0 and BRA.DIV (not taken), @PT BRA (taken: FMUL skipped), the
    # top-tested loop once (@P4 BRA, IADD3, BRA 0x60 back to walked code: left), the K loop, BRA 0x110 out of
    # the pass, FADD and BRA 0xd0 back, STG, ISETP and the back edge: 14. Statically the pass holds 13
    # instructions outside the K loop (the out-of-line FADD and BRA lie past it).
    assert k_loop["pass"]["instructions_outside"] == 13
    assert k_loop["pass"]["fall_through_outside"] == 14


def test_resource_usage_and_spills_enter_the_report():
    (entry,) = sass_report.report(FIXTURE)
    assert (entry["registers"], entry["stack_bytes"], entry["local_bytes"]) == (161, 16, 8)
    assert entry["spill_instructions"] == 1  # the STL
    assert entry["kernel"] == "kernel()"      # demangled (c++filt is part of binutils)
    assert sass_report.report(FIXTURE, kernel_pattern="no_such_kernel") == []


@pytest.fixture
def fake_cuobjdump(tmp_path):
    """A stand-in cuobjdump that prints the fixture, and a file to pass as the extension."""
    fixture = tmp_path / "fixture.txt"
    fixture.write_text(FIXTURE)
    tool = tmp_path / "cuobjdump"
    tool.write_text(f"#!/bin/sh\ncat '{fixture}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    so = tmp_path / "_C.so"
    so.write_bytes(b"")
    return str(tool), str(so)


@pytest.mark.parametrize("max_ratio, status", [(None, 0), (5.0, 0), (4.9, 1)])
def test_max_ratio_sets_the_exit_status(fake_cuobjdump, capsys, max_ratio, status):
    tool, so = fake_cuobjdump
    args = ["--so", so, "--cuobjdump", tool, "--json"] + ([] if max_ratio is None else ["--max-ratio", str(max_ratio)])
    assert sass_report.main(args) == status
    out, err = capsys.readouterr()
    assert json.loads(out)["kernels"][0]["tensor_loops"][0]["instructions_per_tensor_op"] == 5.0
    assert ("over --max-ratio" in err) == (status == 1)


def test_missing_extension_is_a_clear_error(tmp_path, capsys):
    assert sass_report.main(["--so", str(tmp_path / "missing.so")]) == 2
    assert "no built extension" in capsys.readouterr().err


# ---- the built extension ---------------------------------------------------------------------------------------

_SO = sass_report.find_extension()
_CUOBJDUMP = sass_report.find_cuobjdump()


def built_report_by_mode(capsys) -> dict:
    """The built extension's inception_kernel instantiations from the SASS report, by MathMode value (skips
    where the extension has no sm_90 cubins)."""
    status = sass_report.main(["--so", _SO, "--kernel", "inception_kernel", "--json"])
    out, err = capsys.readouterr()
    if status == 2 and "no sm_90 kernels" in err:
        pytest.skip(f"the extension has no sm_90 cubins: {err.strip()}")
    assert status == 0, err
    modes = {}
    for entry in json.loads(out)["kernels"]:
        assert "inception_kernel<(fused_inception::MathMode)" in entry["kernel"]
        modes[int(entry["kernel"].split("MathMode)")[1][0])] = entry
    return modes


@pytest.mark.build
@pytest.mark.skipif(_SO is None, reason="no built extension (fused_inception/_C*.so)")
@pytest.mark.skipif(_CUOBJDUMP is None, reason="no cuobjdump (it ships with triton)")
def test_report_of_the_built_extension(capsys):
    modes = built_report_by_mode(capsys)
    assert sorted(modes) == [0, 1, 2, 3]  # F16, BF16, TF32, F32
    for mode, entry in modes.items():
        assert entry["registers"] > 0 and entry["local_bytes"] is not None
        if mode == 3:  # exact float32: FMA, no tensor cores
            assert entry["tensor_loops"] == []
            continue
        assert entry["tensor_loops"], f"mode {mode}: no tensor-core inner loop found"
        expected = "HMMA.1688" if mode == 2 else "HMMA.16816"
        for loop in entry["tensor_loops"]:
            assert all(opcode.startswith(expected) for opcode in loop["tensor_instructions"])
            assert loop["instructions"] == sum(loop["mix"].values())
            assert loop["mix"]["tensor"] == sum(loop["tensor_instructions"].values())
            assert loop["instructions_per_tensor_op"] == pytest.approx(
                loop["instructions"] / loop["tensor_op_equivalents"])
            assert loop["instructions_per_tensor_op"] >= 1


@pytest.mark.build
@pytest.mark.skipif(_SO is None, reason="no built extension (fused_inception/_C*.so)")
@pytest.mark.skipif(_CUOBJDUMP is None, reason="no cuobjdump (it ships with triton)")
def test_plan_loop_counts_are_the_built_kernels(capsys):
    # plan.MEASURED_SASS records, per dtype, each loop's instructions per K step and the registers: every
    # recorded loop must be one of the built instantiation's tensor loops, with that loop's tensor work, so the
    # model cannot silently describe an older kernel (update the table with the kernel).
    from fused_inception import plan

    modes = built_report_by_mode(capsys)
    for dtype, (_, mode) in plan.DTYPES.items():
        recorded, built = plan.MEASURED_SASS[dtype], modes[mode]
        assert recorded["registers"] == built["registers"], dtype
        if recorded["loop_instructions"] is None:
            assert built["tensor_loops"] == [], dtype
            continue
        loops = {(loop["instructions"], loop["tensor_op_equivalents"]) for loop in built["tensor_loops"]}
        for kind, count in recorded["loop_instructions"].items():
            assert (count, plan.loop_tensor_ops(kind, dtype)) in loops, (dtype, kind, count, sorted(loops))
        # Each loop's pass: what it issues outside the loop on a full warp's path (the model charges it per pass).
        for kind, count in recorded["pass_instructions"].items():
            paths = [loop["pass"]["fall_through_outside"] for loop in built["tensor_loops"] if loop["pass"] and
                     (loop["instructions"], loop["tensor_op_equivalents"]) ==
                     (recorded["loop_instructions"][kind], plan.loop_tensor_ops(kind, dtype))]
            assert count in paths, (dtype, kind, count, paths)
        # And each count labels the right loop, by what that loop must contain: the 1x1 loop streams x (more
        # global copies than the k x k loop, which reads A in place), the pool loop stores its max into the A
        # stage and loads 9 neighbours (a store, more shared loads than the 1x1 loop). In 16 bits neither the
        # 1x1 nor the k x k loop stores anything; in TF32 both store their rounded weight stage, and the 1x1
        # loop its rounded x stage too (the k x k loop's A is the reduction, rounded when it was stored).
        mix = {kind: next(loop["mix"] for loop in built["tensor_loops"]
                          if loop["instructions"] == count and loop["tensor_op_equivalents"] == plan.loop_tensor_ops(kind, dtype))
               for kind, count in recorded["loop_instructions"].items()}
        if dtype == "tf32":
            assert mix["1x1"]["store"] > mix["window"]["store"] >= 1, dtype
        else:
            assert mix["1x1"]["store"] == mix["window"]["store"] == 0, dtype
        assert mix["pool"]["store"] >= 1, dtype
        # An NCHW block's loops: element-wise x loads more from global memory than the 16-byte stream of the same
        # GEMM, and the staged k x k loop stores the windows it gathers (the in-place one reads the reduction).
        for kind in ("1x1", "pool", "reduction"):
            assert mix[f"{kind} element"]["global_load"] > mix[kind]["global_load"], (dtype, kind)
        assert mix["window staged"]["store"] > mix["window"]["store"], dtype
        assert mix["1x1"]["global_load"] > mix["window"]["global_load"], dtype
        assert mix["pool"]["shared_load"] > mix["1x1"]["shared_load"], dtype
