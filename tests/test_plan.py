"""`python -m fused_inception plan`: its JSON, a case computed by hand from the kernel's plan, the model's
arithmetic, the warp tiling against inception_params.h, and that it runs without torch."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

import fused_inception.kernel.launch as launch
import fused_inception.plan as plan
from fused_inception.configs import BLOCKS_BY_NAME, GOOGLENET_BLOCKS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_KEYS = {"block", "batch", "dtype", "ctas", "waves", "work_multiplier", "longest_cta_ksteps", "dram_bytes",
             "min_dram_bytes"}


def test_json_has_the_keys_per_block_batch_and_dtype(capsys):
    assert plan.main(["--block", "3a,5b", "--batch", "1,256", "--dtype", "bf16,tf32", "--json"]) == 0
    cases = json.loads(capsys.readouterr().out)
    assert [(c["block"], c["dtype"], c["batch"]) for c in cases] == [
        (b, d, n) for b in ("3a", "5b") for d in ("bf16", "tf32") for n in (1, 256)]
    for case in cases:
        assert JSON_KEYS <= set(case)
        # every tile's tasks in groups of a cluster's CTAs, the last group padded to a whole cluster
        clusters = -(-case["grid"][1] // case["cluster_ctas"])
        assert case["ctas"] == case["grid"][0] * clusters * case["cluster_ctas"]


def test_layouts(capsys):
    # An NCHW block (x and the model as PyTorch makes them) runs the element-wise and staged loops, which cost
    # more than the channels_last ones: the same plan, a longer modeled time. At batch 256 the op routes it to
    # the channels_last kernel on copies, which the model charges on top of that kernel.
    assert plan.main(["--block", "4e", "--batch", "1,256", "--layout", "nhwc,nchw", "--json"]) == 0
    cases = json.loads(capsys.readouterr().out)
    assert [(c["layout"], c["batch"]) for c in cases] == [("nhwc", 1), ("nhwc", 256), ("nchw", 1), ("nchw", 256)]
    unrouted = plan.plan_case(BLOCKS_BY_NAME["4e"], 256, "bf16", layout="nchw", routing=False)
    assert cases[2]["route"] == "kernel"  # 196 pixels: under the routing threshold
    for nhwc, nchw in ((cases[0], cases[2]), (cases[1], asdict(unrouted))):
        # The same grid; an NCHW x's right-edge tiles keep the image's frame (tile_frames), so they compute
        # rows outside the image that a channels_last block's transposed ones skip.
        assert nchw["ctas"] == nhwc["ctas"] and nchw["work_multiplier"] > nhwc["work_multiplier"]
        assert nchw["model_us"] > nhwc["model_us"] and nchw["copy_us"] == 0
    routed, nhwc = cases[3], cases[1]
    assert routed["route"] == "kernel_on_channels_last_copy" and unrouted.route == routed["route"]
    # x (784 pixels x 528 channels), the output (832) and the 3x3 and 5x5 weights, each read and written once.
    config = BLOCKS_BY_NAME["4e"]
    copied = 2 * 2 * (256 * 196 * (528 + 832) + 320 * 160 * 9 + 128 * 32 * 25)
    assert routed["copy_us"] == pytest.approx(copied / plan.Device().dram_bytes_per_s * 1e6)
    assert routed["work_multiplier"] == nhwc["work_multiplier"] and config.in_channels == 528
    assert routed["model_us"] == pytest.approx(nhwc["model_us"] + routed["copy_us"])
    assert routed["model_us"] < unrouted.model_us
    for config in GOOGLENET_BLOCKS:
        kinds = {g.kind for t in plan.tasks(plan.block_shape(config), 128, layout="nchw") for g in t.gemms}
        assert kinds == {"1x1 element", "pool element", "reduction element", "window staged"}
    with pytest.raises(SystemExit):
        plan.main(["--layout", "nwhc"])
    with pytest.raises(ValueError, match="layout must be one of"):
        plan.plan_case(BLOCKS_BY_NAME["3a"], 1, "bf16", layout="NCHW")


def test_a_channels_last_input_to_an_unconverted_block(capsys):
    # nhwc_oihw: a channels_last x, the block not converted (its k x k weights OIHW). Below 1568 pixels the
    # kernel stages their windows: a longer modeled time than the converted block's, nothing copied. From there
    # on the op reads channels_last copies of them (change 29): the converted block's kernel plus the copies,
    # each weight read and written once; routing off (the Nsight Compute program), the staged kernel again.
    config = BLOCKS_BY_NAME["5b"]
    small, converted_small = plan.plan_case(config, 31, "bf16", layout="nhwc_oihw"), plan.plan_case(config, 31, "bf16")
    assert 31 * 49 < plan.CHANNELS_LAST_COPY_MIN_PIXELS <= 32 * 49
    assert not small.weights_copied and small.copy_us == 0 and small.model_us > converted_small.model_us
    large, converted = plan.plan_case(config, 32, "bf16", layout="nhwc_oihw"), plan.plan_case(config, 32, "bf16")
    assert large.weights_copied and large.route == "kernel" and not converted.weights_copied
    copied = 2 * 2 * (384 * 192 * 9 + 128 * 48 * 25)
    assert large.copy_us == pytest.approx(copied / plan.Device().dram_bytes_per_s * 1e6)
    assert large.model_us == pytest.approx(converted.model_us + large.copy_us)
    unrouted = plan.plan_case(config, 32, "bf16", layout="nhwc_oihw", routing=False)
    assert not unrouted.weights_copied and unrouted.model_us > converted.model_us
    assert not plan.plan_case(config, 32, "f32", layout="nhwc_oihw").weights_copied  # exact FP32 stages anyway
    # The NCHW route copies the weights too, with x and the output.
    assert plan.plan_case(config, 32, "bf16", layout="nchw").weights_copied
    assert plan.main(["--block", "5b", "--batch", "1,32", "--layout", "nhwc_oihw"]) == 0
    routes = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert routes == ["kernel", "w-copy"]


def test_table_names_every_case(capsys):
    assert plan.main(["--batch", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(GOOGLENET_BLOCKS)
    assert [line.split()[0] for line in lines[1:]] == [c.name for c in GOOGLENET_BLOCKS]


@pytest.mark.parametrize("dtype", list(plan.DTYPES))
@pytest.mark.parametrize("batch", [1, 32, 256])
def test_work_multiplier_and_bytes_are_at_least_the_ideal(batch, dtype):
    for config in GOOGLENET_BLOCKS:
        case = plan.plan_case(config, batch, dtype)
        assert case.work_multiplier >= 1
        assert case.dram_bytes >= case.min_dram_bytes
        assert case.model_us >= case.floor_us > 0
        assert case.waves == -(-case.ctas // (132 * case.ctas_per_sm))


def test_block_5b_at_batch_1_by_hand():
    # 5b: Cin 832; 1x1 384; 3x3 192 -> 384; 5x5 48 -> 128; pool 128; 7x7 pixels, so one 8x8 tile.
    # One tile: 1 CTA per task, so the chunk steps down from 384 (the widest branch in whole passes of 128)
    # while tasks < 2 * 132 SMs, down to one output pass, 128: 3x3: 3 tasks, 5x5: 1, 1x1: 3, pool: 1 of 128
    # channels = 8 CTAs.
    # First on a device without thread-block clusters (each 3x3 task computes the whole reduction).
    case = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16", plan.Device(clusters=False))
    assert (case.grid, case.ctas, case.channel_chunk, case.waves, case.cluster_ctas) == ((1, 8), 8, 128, 1, 1)
    assert case.tasks_per_branch == {"3x3": 3, "5x5": 1, "1x1": 3, "pool": 1}
    # A 3x3 task: the reduction over its 10x10 halo clipped to the image, the 7x7 pixels (-> 4 tiles of 16
    # rows), N = 192 in 3 passes of 64, K = 832 in 13 steps of 64; then the 3x3 GEMM: M = 64 (7 rows of the
    # tile -> 4 m tiles), one pass of 128 channels, K = 9 * 192 = 1728 in 27 steps. A 5x5 task: its 12x12
    # halo clipped to the same 49 pixels -> 64 rows, 48 channels on three warps of 16, K = 832; then K = 25 *
    # 48 = 1200 in 19 steps, the last of which multiplies only its 3 k16 slices within K (1200 = 75 x 16).
    # 1x1 and pool tasks: M = 64, N = 128, K = 832.
    three = 2 * 64 * 192 * 832 + 2 * 64 * 128 * 1728
    five = 2 * 64 * 48 * 832 + 2 * 64 * 128 * 1200
    one = 2 * 64 * 128 * 832
    executed = 3 * three + 1 * five + 4 * one
    ideal = 2 * 49 * (832 * (384 + 192 + 48 + 128) + 192 * 384 * 9 + 48 * 128 * 25)
    assert case.executed_flops == executed and case.ideal_flops == ideal
    assert case.work_multiplier == pytest.approx(executed / ideal)
    assert case.longest_cta_ksteps == 3 * 13 + 27
    # Shared memory: 2 stages x 224 rows (the reduction's 160 A + 64 B rows) x 72 elements, then the larger
    # reduction (100 pixels x 192 channels, rows padded to 25 vectors: 200), a zero vector and the window
    # table (1728 / 8 = 216 entries).
    assert case.shared_bytes == (2 * 224 * 72 + 100 * 200) * 2 + 16 + 216 * 4
    # Bytes: x and the output once, and the weights; everything fits the L2, so x is read once.
    weights = 832 * 752 + 192 * 384 * 9 + 48 * 128 * 25 + (384 + 192 + 384 + 48 + 128 + 128)
    assert case.x_reads == 1
    assert case.dram_bytes == case.min_dram_bytes == (49 * (832 + 1024) + weights) * 2
    # With clusters (an H100, the default): the 3x3 branch's 3 tasks form a cluster and each computes a third
    # of its reduction, 64 of the 192 channels (reduction_slice), in one pass of 13 K steps; the other 5 tasks
    # fill a second cluster and one CTA of a third, whose 2 other CTAs do nothing: 9 CTAs.
    clustered = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16")
    assert (clustered.cluster_ctas, clustered.ctas, clustered.grid) == (3, 9, (1, 8))
    three_sharing = 2 * 64 * 64 * 832 + 2 * 64 * 128 * 1728
    assert clustered.executed_flops == 3 * three_sharing + five + 4 * one
    assert clustered.longest_cta_ksteps == 13 + 27
    assert clustered.work_multiplier < 1.35 and clustered.model_us < case.model_us
    # Slices in whole 16-channel warp columns, the last CTAs' shorter or empty: 4d's 144 channels in 3, 48
    # each; 33 in 3 (16, 16, 1); 5 in 3 (16: all in the first).
    assert [launch.reduction_slice(c, n) for c, n in ((192, 3), (144, 3), (160, 3), (33, 3), (5, 3))] == \
        [64, 48, 64, 16, 16]


def test_edge_tiles_in_their_frames():
    # A 9x13 image: 2 x 2 tiles. The top-right one has 8 rows and 5 columns in the image: with 16-byte x it is
    # transposed, its 5 columns its frame rows (3 m tiles of the output GEMMs), its frame the 13-wide image
    # on its side; NCHW x keeps the image's frame (8 rows: all 4 m tiles). The bottom ones have 1 row.
    Frame = plan.TileFrame
    assert plan.tile_frames(9, 13) == [Frame(8, 0, 9, 8, 0, 13), Frame(5, 8, 13, 8, 0, 9), Frame(1, 8, 9, 8, 0, 13),
                                       Frame(1, 8, 9, 5, 8, 13)]
    assert plan.tile_frames(9, 13, transposes=False)[1] == Frame(8, 0, 9, 5, 8, 13)
    transposed = Frame(5, 8, 13, 8, 0, 9)
    assert transposed.output_rows() == 48
    # Its halo clipped to the image (change 30): frame rows 7-12 and columns 0-8 (3x3: 6 x 9 = 54 pixels, 64
    # GEMM rows), rows 6-12 and columns 0-8 (5x5: 7 x 9 = 63, 64 rows), where the whole box is 100 and 144;
    # before change 30 the halo's rows down to the frame's last, every column: 6 x 10 (64) and 7 x 12 (96).
    assert (transposed.halo_rows(3), transposed.halo_rows(5)) == (64, 64)
    assert (transposed.halo_rows(3, clipped=False), transposed.halo_rows(5, clipped=False)) == (64, 96)
    # The top-left tile: rows and columns 0-8 of its 3x3 halo (81 pixels: 96 rows; before, its 10 rows from
    # -1 of 10 pixels: 112); the bottom-left one, rows 7-8 and columns 0-8 (18 pixels: 32 rows; before, 2 rows
    # of 10: 32 too).
    assert (Frame(8, 0, 9, 8, 0, 13).halo_rows(3), Frame(1, 8, 9, 8, 0, 13).halo_rows(3)) == (96, 32)
    assert (Frame(8, 0, 9, 8, 0, 13).halo_rows(3, clipped=False), Frame(1, 8, 9, 8, 0, 13).halo_rows(3, clipped=False),
            Frame(1, 8, 9, 8, 0, 13).output_rows()) == (112, 32, 16)
    # A 7x7 image: one tile, its 3x3 and 5x5 halos clipped to the 49 pixels (64 rows; before, 80 and 108 ->
    # 112).
    seven = plan.tile_frames(7, 7)[0]
    assert (seven.halo_rows(3), seven.halo_rows(5)) == (64, 64)
    assert (seven.halo_rows(3, clipped=False), seven.halo_rows(5, clipped=False)) == (80, 112)
    # The output GEMMs transposed (the rows8 build variant, change 37) compute frame rows, 8 pixels each, but
    # for each warp row's first m tile (two rows, computed together): 7 rows -> 56, 5 -> 40, 3 -> 32 (rows
    # 0-3), 1 -> 16; in m16 tiles 64, 48, 32, 16.
    rows = [plan.TileFrame(n, 0, 7, 7, 0, 7) for n in (8, 7, 6, 5, 4, 3, 2, 1)]
    assert [f.output_rows(by_tile_row=True) for f in rows] == [64, 56, 48, 40, 32, 32, 16, 16]
    assert [f.output_rows() for f in rows] == [64, 64, 48, 48, 32, 32, 16, 16]


def test_transposed_output_tiles_meet_the_work_multiplier_but_not_the_time():
    # The rows8 variant (FUSED_INCEPTION_OUTPUT_PIXELS_AS_N, change 37), as its build measured at change 37
    # (bf16, sm_90):
    # 5a and 5b at batch 256 do 1.31 -> 1.17 of the ideal FLOPs (issue 12: <= 1.25), and every other block's
    # work is unchanged. Time: each CTA's busiest warp (rows 0, 1, 4, 5 of a 7-row tile) runs what it ran, and
    # every loop and pass issues more, so the model, latency-bound, predicts the variant slower.
    variant = dict(plan.MEASURED_SASS["bf16"], transposes_output_tiles=True,
                   loop_instructions=dict(ROWS8_BF16_LOOPS), pass_instructions=dict(ROWS8_BF16_PASSES))
    for config in plan.GOOGLENET_BLOCKS:
        base = plan.plan_case(config, 256, "bf16")
        rows8 = plan.plan_case(config, 256, "bf16", sass=dict(plan.MEASURED_SASS, bf16=variant))
        if config.spatial == 7:
            assert base.work_multiplier > 1.25 >= rows8.work_multiplier
        else:
            assert rows8.work_multiplier == base.work_multiplier
        assert rows8.model_us > base.model_us
    # The exact float32 path keeps C's layout whatever the build says.
    f32 = dict(plan.MEASURED_SASS["f32"], transposes_output_tiles=True)
    assert (plan.plan_case(BLOCKS_BY_NAME["5b"], 32, "f32", sass=dict(plan.MEASURED_SASS, f32=f32)).work_multiplier ==
            plan.plan_case(BLOCKS_BY_NAME["5b"], 32, "f32").work_multiplier)


#: The rows8 variant's loops and passes (sass_report.py on its sm_90 build, bf16; docs/performance.md, change 37).
ROWS8_BF16_LOOPS = {"1x1": 113, "pool": 187, "reduction": 151, "window": 136, "1x1 element": 180,
                    "pool element": 451, "reduction element": 451, "window staged": 180}
ROWS8_BF16_PASSES = {"1x1": 393, "pool": 481, "reduction": 359, "window": 403, "1x1 element": 839,
                     "pool element": 832, "reduction element": 646, "window staged": 424}


def test_one_task_per_branch_where_the_grid_is_full():
    # 4d: 3x3 288 channels, 1x1 112, 5x5 and pool 64. At batch 256 (1024 tiles) the chunk is the widest
    # branch in whole output passes, 384: one task per branch, each 3x3 reduction computed once per tile (with
    # chunks of 256 the 3x3 branch took two tasks and its reduction twice). At batch 1 (4 tiles) it steps
    # down to one pass, 128, for CTAs to fill the SMs.
    config = BLOCKS_BY_NAME["4d"]
    full = plan.plan_case(config, 256, "bf16")
    assert (full.channel_chunk, full.tasks) == (384, 4)
    # (on a device without clusters: with them, the two 3x3 tasks of 256 channels would share their reduction)
    capped = plan.plan_case(config, 256, "bf16", plan.Device(clusters=False), sass=dict(plan.MEASURED_SASS, bf16=dict(
        plan.MEASURED_SASS["bf16"], max_channel_chunk=256)))
    assert (capped.channel_chunk, capped.tasks) == (256, 5)
    assert full.work_multiplier < capped.work_multiplier and full.model_us < capped.model_us
    assert plan.plan_case(config, 1, "bf16").channel_chunk == 128


def test_model_time_of_5b_at_batch_1_by_hand():
    # 8 CTAs on 132 SMs: the time is the longest CTA's, a 3x3 task of 128 channels: the reduction (192
    # channels in 3 passes of 64 over K = 832: 78 K steps) and the 3x3 windows (K = 1728: 54 steps, one pass).
    # Its busiest warp runs 32 rows x 16 channels of the reduction (m tiles 0 and 2 of the 4 that hold the
    # halo's 49 pixels in the image; the other warp row has 1 and 3) and 32 x 32 of the windows a step, at 10
    # instructions per tensor op, plus 1750 instructions in each of its 4 passes and 1100 for the CTA, one per
    # 7.6 cycles; the schedulers see all warps' instructions at one a cycle; the tensor pipe 1.5 cycles a
    # tensor op.
    sass = {d: dict(registers=161, instructions_per_tensor_op=10.0) for d in plan.DTYPES}
    case = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16", sass=sass)
    overhead = 4 * 1750 + 1100
    busiest = 10.0 * (32 * 16 * 78 + 32 * 32 * 54) * 32 * 2 / 4096 + overhead
    issued = 10.0 * (160 * 192 * 26 + 64 * 128 * 54) * 32 * 2 / 4096 + 8 * overhead
    executed = (64 * 192 * 26 + 64 * 128 * 54) * 32 * 2 / 4096
    cycles = max(busiest * 7.6, issued / 4, executed * 1.5)
    assert cycles == busiest * 7.6  # latency-bound, as the H200 measured
    assert case.model_us == pytest.approx(cycles / 1.83e9 * 1e6)
    assert case.bound == "issue"
    # Warps that could issue every cycle: the schedulers' throughput binds instead.
    eager_warps = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16", plan.Device(warp_cycles_per_issue=1.0), sass=sass)
    assert eager_warps.model_us == pytest.approx(max(busiest, issued / 4, executed * 1.5) / 1.83e9 * 1e6)
    fast_issue = dict(sass, bf16=dict(registers=161, instructions_per_tensor_op=0.1))
    no_overhead = plan.Device(pass_overhead_instructions=0, cta_overhead_instructions=0)
    assert plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16", no_overhead, sass=fast_issue).bound == "tensor"


#: The first GPU run (benchmarks/results/2026-11-28-h200, commit ffca75c, bf16 channels_last, H200): Nsight
#: Compute's kernel times in us, and that kernel's build: 136 registers (1 CTA an SM), no idle-warp or
#: edge-tile skip, m tiles in blocks, tasks of 256 channels at most, and its loops' SASS instructions per
#: tensor op (docs/performance.md, "Loaders": 1x1 6.8, pool 19.4, reduction 9.3, k x k 13.1).
FIRST_RUN_US = {("3a", 1): 56.1, ("3a", 256): 3924.0, ("4e", 1): 111.3, ("4e", 256): 3302.0,
                ("5b", 1): 138.7, ("5b", 256): 1091.0}
FIRST_RUN_BUILD = dict(registers=136, skips_idle_warps=False, skips_edge_tiles=False, interleaves_m_tiles=False,
                       max_channel_chunk=256, k_chunk=32,
                       loop_instructions={"1x1": 6.8 * 16, "pool": 19.4 * 16, "reduction": 9.3 * 20, "window": 13.1 * 16})


@pytest.mark.parametrize("case", FIRST_RUN_US, ids=lambda c: f"{c[0]}-b{c[1]}")
def test_model_reproduces_the_first_gpu_run(case):
    # The calibration: the measured warp cycles per issue and the fitted per-pass and per-CTA instructions
    # give the first run's six times back from that kernel's loops (clocks as found; the model's 1.83 GHz).
    block, batch = case
    sass = dict(plan.MEASURED_SASS, bf16=FIRST_RUN_BUILD)
    modeled = plan.plan_case(BLOCKS_BY_NAME[block], batch, "bf16", sass=sass)
    assert modeled.ctas_per_sm == 1
    assert 0.9 < FIRST_RUN_US[case] / modeled.model_us < 1.1


def test_loop_model_counts_each_loop_with_its_own_cost():
    # A 1x1-only change moves only the 1x1 tasks' time: 5b at batch 1 is bound by its 3x3 tasks.
    faster_1x1 = dict(plan.MEASURED_SASS["bf16"])
    faster_1x1["loop_instructions"] = dict(faster_1x1["loop_instructions"], **{"1x1": 1})
    before = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16")
    after = plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16", sass=dict(plan.MEASURED_SASS, bf16=faster_1x1))
    assert after.model_us == before.model_us
    slower_window = dict(plan.MEASURED_SASS["bf16"])
    slower_window["loop_instructions"] = dict(slower_window["loop_instructions"], window=1000)
    assert plan.plan_case(BLOCKS_BY_NAME["5b"], 1, "bf16",
                          sass=dict(plan.MEASURED_SASS, bf16=slower_window)).model_us > 2 * before.model_us


def test_passes_are_charged_what_they_issue_beyond_the_calibration_build():
    # A build records its passes' instructions outside the loop (sass_report's pass path); the model charges
    # the fitted per-pass constant plus the difference from the build that constant stands for.
    config = BLOCKS_BY_NAME["3a"]
    build = plan.MEASURED_SASS["bf16"]
    unrecorded = {key: value for key, value in build.items() if key != "pass_instructions"}
    as_calibrated = dict(build, pass_instructions=dict(plan.CALIBRATION_PASS_INSTRUCTIONS["bf16"]),
                         peels_last_k_step=False)
    # A build that peels its last K step out of the loop counts that step in its pass path too; the loop term
    # charges it already, so one loop trip is taken off (two for the element-wise loops, whose step that issues
    # the last chunk is peeled too: changes 36, 38).
    steps = build.get("peeled_k_steps", {})
    peeled = dict(build, pass_instructions={kind: count + steps.get(kind, 1) * build["loop_instructions"][kind]
                                            for kind, count in plan.CALIBRATION_PASS_INSTRUCTIONS["bf16"].items()})
    assert build["peels_last_k_step"] and plan.pass_instruction_deltas(peeled, "bf16") == dict.fromkeys(
        build["loop_instructions"], 0)
    assert steps == {"1x1 element": 2, "pool element": 2, "reduction element": 2}

    def modeled(entry, batch=256):
        return plan.plan_case(config, batch, "bf16", sass=dict(plan.MEASURED_SASS, bf16=entry)).model_us

    assert set(build["pass_instructions"]) == set(build["loop_instructions"]) == set(
        plan.CALIBRATION_PASS_INSTRUCTIONS["bf16"])
    assert modeled(as_calibrated) == modeled(unrecorded) == modeled(peeled)  # no difference: nothing charged
    # Longer 1x1 passes lengthen 3a, whose 1x1 CTAs are a quarter of its grid; the 3x3 tasks' passes more.
    longer_1x1 = dict(as_calibrated, pass_instructions=dict(as_calibrated["pass_instructions"], **{"1x1": 2000}))
    longer_window = dict(as_calibrated, pass_instructions=dict(as_calibrated["pass_instructions"], window=2000))
    assert modeled(unrecorded) < modeled(longer_1x1) < modeled(longer_window)
    # Today's build issues fewer instructions outside its 1x1 and k x k loops than the calibration build.
    deltas = plan.pass_instruction_deltas(build, "bf16")
    assert deltas["1x1"] < 0 and deltas["window"] < 0


def test_x_is_read_once_with_the_banded_grid():
    # 3a at batch 256 in bf16: x is 256 * 784 * 192 * 2 bytes = 77 MB > 50 MB of L2, four tasks of 256 channels.
    # The grid runs bands of tiles (16 MiB of x each) task by task, so a band's later tasks find its x in L2
    # and x comes from DRAM once: the bytes are the minimum.
    case = plan.plan_case(BLOCKS_BY_NAME["3a"], 256, "bf16")
    assert (case.tasks, case.x_reads) == (4, 1)
    assert case.dram_bytes == case.min_dram_bytes
    # An L2 smaller than what the CTAs in flight touch: at worst once per task.
    tiny_l2 = plan.plan_case(BLOCKS_BY_NAME["3a"], 256, "bf16", plan.Device(l2_bytes=1e6))
    assert tiny_l2.x_reads == 4 and tiny_l2.dram_bytes - tiny_l2.min_dram_bytes == 3 * 256 * 784 * 192 * 2


def test_occupancy_by_registers_and_shared_memory():
    device = plan.Device()
    assert plan.ctas_per_sm(161, 80_000, device) == 1  # 168 x 256 registers per CTA: one fits in 64K
    assert plan.ctas_per_sm(128, 80_000, device) == 2
    assert plan.ctas_per_sm(128, 120_000, device) == 1  # two would need 242 KB of shared memory
    assert plan.ctas_per_sm(32, 1_000, device) == 8     # 2048 threads


def test_custom_block_and_bad_arguments(capsys):
    assert plan.main(["--channels", "192,64,96,128,16,32,32", "--size", "28", "--batch", "1", "--json"]) == 0
    (custom,) = json.loads(capsys.readouterr().out)
    expected = plan.plan_case(BLOCKS_BY_NAME["3a"], 1, "bf16")
    assert custom["block"] == "custom" and custom["ctas"] == expected.ctas
    assert custom["work_multiplier"] == expected.work_multiplier
    with pytest.raises(SystemExit, match="unknown block '6a'"):
        plan.main(["--block", "6a"])
    with pytest.raises(SystemExit):
        plan.main(["--dtype", "fp8"])
    assert "choose from f16, bf16, tf32, f32" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch must be positive"):
        plan.plan_case(BLOCKS_BY_NAME["3a"], 0, "bf16")


def test_sass_report_numbers_replace_the_defaults(tmp_path, capsys):
    kernels = [dict(kernel=f"void fused_inception::gpu::inception::inception_kernel<(fused_inception::MathMode){m}>"
                           f"(fused_inception::InceptionParams)", registers=120,
                    tensor_loops=[] if m == 3 else [dict(instructions_per_tensor_op=r) for r in (5.0, 8.0)])
               for m in range(4)]
    # A second bf16 instantiation (say, templated on N): the plan takes the worst of the two.
    kernels.append(dict(kernel="void fused_inception::gpu::inception::inception_kernel<(fused_inception::MathMode)1, "
                               "64>(fused_inception::InceptionParams)", registers=100,
                        tensor_loops=[dict(instructions_per_tensor_op=9.0)]))
    report = tmp_path / "sass.json"
    report.write_text(json.dumps(dict(kernels=kernels)))
    assert plan.main(["--block", "4e", "--batch", "1", "--sass-report", str(report), "--json"]) == 0
    (case,) = json.loads(capsys.readouterr().out)
    # The largest loop's ratio, for every loop (a report does not say which loop is which).
    assert case["registers"] == 120 and case["instructions_per_tensor_op"] == dict.fromkeys(plan.LOOP_WARP_TILES, 9.0)
    assert case["ctas_per_sm"] == 2
    with pytest.raises(ValueError, match="lacks the inception_kernel instantiations"):
        plan.sass_from_report(dict(kernels=kernels[:2]))


def test_warp_tiling_matches_the_header():
    header = open(os.path.join(REPO, "csrc", "kernels", "inception_params.h")).read()
    plan_struct = header[header.index("struct FusedPlan"):]
    constants = {name: int(value) for name, value in re.findall(r"\b(k\w+) = (\d+)\b", plan_struct)}
    assert (constants["kWarpsM"], constants["kWarpsN"]) == (plan.WARPS_M, plan.WARPS_N)
    assert (constants["kOutMI"], constants["kOutNI"]) == (plan.OUT_MI, plan.OUT_NI)
    assert (constants["kHaloMI"], constants["kHaloNI"]) == (plan.HALO_MI, plan.HALO_NI)
    assert constants["kThreads"] == plan.THREADS and (constants["kKChunk16"], constants["kKChunk32"]) == (launch.K_CHUNK_16BIT, launch.K_CHUNK_32BIT)


def test_plan_runs_without_torch():
    code = (
        "import json, runpy, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "sys.modules['torch'] = None  # import torch fails\n"
        "sys.argv = ['fused_inception', 'plan', '--block', '5b', '--batch', '1', '--json']\n"
        "try:\n"
        "    runpy.run_module('fused_inception', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('MODULE', sys.modules['fused_inception.plan'].__file__)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out, module_line = result.stdout.rsplit("MODULE ", 1)
    assert module_line.strip() == os.path.join(REPO, "fused_inception", "plan.py")
    assert json.loads(out)[0]["ctas"] == 9  # 5b at batch 1: 8 tasks in clusters of 3


def test_idle_warps_skip_in_the_tensor_core_modes_only():
    # 3a at batch 1: the 1x1 branch's 64 and the 5x5's and pool's 32 channels in 128-wide output passes. The
    # tensor-core kernels skip the idle warps across N; the exact-FP32 path computes every warp's tiles, so
    # its executed work is larger.
    bf16 = plan.plan_case(BLOCKS_BY_NAME["3a"], 1, "bf16")
    f32 = plan.plan_case(BLOCKS_BY_NAME["3a"], 1, "f32")
    assert bf16.channel_chunk == f32.channel_chunk == 128 and bf16.ideal_flops == f32.ideal_flops
    assert f32.executed_flops > bf16.executed_flops
    full = plan.Gemm(64, 64, 128, 1, 192, 64, 16, 64, skips_idle_warps=False)
    assert full.computed_n == 128 and plan.Gemm(64, 64, 128, 1, 192, 64, 16, 64).computed_n == 64
    assert plan.Gemm(160, 160, 64, 2, 192, 64, 16, 96).computed_n == 64 + 32  # 96 reduced channels: 4 + 2 warps of 16


def test_calibration_script_refits_the_first_run():
    # scripts/calibrate_plan.py, the next GPU run's re-fit, on the first run's results.json and that kernel's
    # build: the same fit quality and constants near plan.Device's. The two trade off along a shallow valley
    # (more per pass, less per CTA), so only their neighbourhood is checked.
    spec = importlib.util.spec_from_file_location("calibrate_plan", os.path.join(REPO, "scripts", "calibrate_plan.py"))
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    with open(os.path.join(REPO, "benchmarks", "results", "2026-11-28-h200", "results.json")) as f:
        cases = calibrate.measured_cases(json.load(f)["ncu"])
    assert [(block, batch, layout) for block, batch, _, layout, _ in cases] == [(*k, "nhwc") for k in FIRST_RUN_US]
    assert all(measured == pytest.approx(FIRST_RUN_US[block, batch], rel=1e-3)
               for block, batch, _, _, measured in cases)
    pass_overhead, cta_overhead, errors = calibrate.fit(cases, FIRST_RUN_BUILD)
    assert abs(pass_overhead - plan.Device.pass_overhead_instructions) <= 250
    assert abs(cta_overhead - plan.Device.cta_overhead_instructions) <= 500
    assert max(abs(e) for e in errors) < 0.1


def test_plan_route_mirrors_the_op():
    # plan.route is the Python mirror of the op's routing rule (route_for_case in csrc/inception_fused.cpp):
    # equal on every side of both thresholds, every math mode, layout and pixel size in bytes.
    import fused_inception  # noqa: F401  (loads the extension's ops)

    edges = (plan.CHANNELS_LAST_COPY_MIN_PIXELS, plan.TF32_UNFUSED_MIN_PIXELS)
    for pixels in sorted({1, *edges, *(e - 1 for e in edges), *(e + 1 for e in edges), 10**6}):
        for dtype in plan.DTYPES:
            for dense_nchw in (False, True):
                for pixel_bytes in (16, 24, 1664):
                    assert plan.route(pixels, dtype, dense_nchw, pixel_bytes) == \
                        torch.ops.fused_inception._route_case(pixels, dtype, dense_nchw, pixel_bytes), \
                        (pixels, dtype, dense_nchw, pixel_bytes)
                # The CuPy path's routes: the kernel's, without the unfused one.
                kernel_route = plan.route(pixels, dtype, dense_nchw, 16, unfused=False)
                assert kernel_route == plan.route(pixels, "bf16" if dtype == "tf32" else dtype, dense_nchw, 16)
            # The k x k weight copies' rule (window_weights_copied_case), and which weights it copies.
            assert plan.window_weights_copied(pixels, dtype) == \
                torch.ops.fused_inception._window_weights_copied_case(pixels, dtype), (pixels, dtype)
    for reduced in (1, 4, 8, 16, 24, 48, 96, 144, 160):
        for element_bytes in (2, 4):
            assert plan.reads_windows_in_place(reduced, element_bytes) == \
                torch.ops.fused_inception._reads_windows_in_place(reduced, element_bytes), (reduced, element_bytes)
    case = plan.plan_case(BLOCKS_BY_NAME["3a"], 256, "bf16", layout="nchw")
    assert case.route == "kernel_on_channels_last_copy" and "route" in plan.format_table([case])
    assert plan.plan_case(BLOCKS_BY_NAME["3a"], 256, "tf32").route == "unfused"
    assert plan.plan_case(BLOCKS_BY_NAME["3a"], 1, "bf16", layout="nchw").route == "kernel"
