"""Roofline floors: FLOP and byte formulas against hand counts and the models, floor arithmetic, ceilings."""

import pytest
import torch

from fused_inception import GOOGLENET_BLOCKS, BLOCKS_BY_NAME
from fused_inception.bench import roofline
from fused_inception.models import Inception, googlenet
from fused_inception.bench.roofline import _conv_linear_flops


@pytest.mark.parametrize("config", GOOGLENET_BLOCKS, ids=lambda c: c.name)
def test_block_weight_count_is_the_modules_parameter_count(config):
    block = Inception(*config.block_args, device="meta")
    assert roofline.block_weight_count(config) == sum(p.numel() for p in block.parameters())


def test_block_min_bytes_by_hand():
    # 3a at batch 2 in bf16: input 192 and output 256 channels at 28x28, weights and biases once, 2 bytes each.
    weights = 192 * (64 + 96 + 16 + 32) + 96 * 128 * 9 + 16 * 32 * 25 + (64 + 96 + 128 + 16 + 32 + 32)
    expected = (2 * 28 * 28 * (192 + 256) + weights) * 2
    assert roofline.block_min_bytes(BLOCKS_BY_NAME["3a"], 2, torch.bfloat16) == expected
    assert roofline.block_min_bytes(BLOCKS_BY_NAME["3a"], 2, torch.float32) == 2 * expected


def test_network_flops_are_the_blocks_plus_the_stem_and_classifier():
    blocks = sum(c.flops() for c in GOOGLENET_BLOCKS)
    stem = 2 * (64 * 3 * 7 * 7 * 112 * 112      # conv1 7x7/2 -> 112x112x64
                + 64 * 64 * 56 * 56               # conv2 reduce 1x1
                + 192 * 64 * 3 * 3 * 56 * 56)     # conv2 3x3 -> 56x56x192
    classifier = 2 * 1024 * 1000
    assert roofline.network_flops(1) == blocks + stem + classifier
    assert roofline.network_flops(8) == 8 * (blocks + stem + classifier)
    aux = 2 * ((512 + 528) * 128 * 4 * 4 + 2 * (2048 * 1024 + 1024 * 1000))  # on 4a and 4d, training only
    assert roofline.network_flops(2, training=True) == 3 * 2 * (blocks + stem + classifier + aux)


def test_counter_over_the_whole_network_matches_the_configs():
    # Counting every conv (blocks included) must give the configs' block FLOPs plus the rest: the one table
    # and the model agree.
    net = googlenet(aux_logits=False, device="meta").eval()
    everything = _conv_linear_flops(net, torch.empty(1, 3, 224, 224, device="meta"), skip=())
    assert everything == roofline.network_flops(1)


def test_network_min_bytes_are_images_logits_and_parameters():
    params = sum(p.numel() for p in googlenet(aux_logits=False, device="meta").parameters())
    assert roofline.network_min_bytes(4, torch.float16) == (4 * 3 * 224 * 224 + 4 * 1000 + params) * 2
    params_aux = sum(p.numel() for p in googlenet(aux_logits=True, device="meta").parameters())
    assert roofline.network_min_bytes(4, torch.float16, training=True) == \
        3 * (4 * 3 * 224 * 224 + 4 * 1000 + params_aux) * 2


def test_floor_and_fraction_arithmetic():
    floor = roofline.floor(flops=1e12, min_bytes=1e9, peak_flops_per_s=1e14, peak_bytes_per_s=1e12)
    assert floor.compute_seconds == pytest.approx(0.01) and floor.memory_seconds == pytest.approx(0.001)
    assert floor.seconds == pytest.approx(0.01) and floor.bound == "compute"
    assert floor.fraction(0.04) == pytest.approx(0.25)
    memory_bound = roofline.floor(flops=1e9, min_bytes=1e10, peak_flops_per_s=1e14, peak_bytes_per_s=1e12)
    assert memory_bound.bound == "memory" and memory_bound.seconds == pytest.approx(0.01)


def test_measure_ceilings_on_cpu():
    ceilings = roofline.measure_ceilings("cpu", {"fp32": torch.float32, "bf16": torch.bfloat16}, matmul_size=128,
                                         copy_bytes=1 << 20, repeats=2)
    assert set(ceilings.matmul_flops_per_s) == {"fp32", "bf16"}
    assert all(rate > 0 for rate in ceilings.matmul_flops_per_s.values()) and ceilings.copy_bytes_per_s > 0
    assert ceilings.fp32_matmul_tf32 is False and ceilings.matmul_size == 128
    assert ceilings.peak_flops("fp32") == ceilings.matmul_flops_per_s["fp32"]
    with pytest.raises(KeyError, match="no matmul ceiling measured for fp16"):
        ceilings.peak_flops("fp16")
