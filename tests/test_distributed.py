"""DistributedDataParallel training of the fused GoogLeNet: 2 processes (gloo, CPU, localhost) give the
gradients of one process on the same global batch, eager and under torch.compile.

In float64, so that the only difference between the runs, the summation order of a batch split over two
processes, stays near 1e-16 and the comparison can be tight."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from fused_inception import FusedInception, googlenet

WORLD_SIZE = 2
PER_RANK_BATCH = 2
IMAGE_SIZE = 32  # about the smallest input the network takes (31): keeps the test fast
NUM_CLASSES = 10

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this build")


def make_model():
    torch.manual_seed(0)
    # No dropout: both runs must compute the same function. The network has no BatchNorm, so a batch split
    # across processes changes nothing but the summation order.
    return googlenet(num_classes=NUM_CLASSES, aux_logits=False, fused=True, dropout=0.0, dtype=torch.float64).train()


def global_batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD_SIZE * PER_RANK_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator,
                    dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (WORLD_SIZE * PER_RANK_BATCH,), generator=generator)
    return x, y


def gradients(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        model = torch.nn.parallel.DistributedDataParallel(make_model())
        x, y = global_batch()
        local = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
        # aot_eager: Dynamo's DDP graph splitting and AOTAutograd over the op's fake and autograd formulas, all
        # that DDP changes for the op; Inductor's code generation of the whole network would take minutes on
        # 2 cores, and Inductor with the op is tested in one process (test_autograd.py).
        for mode, step in (("eager", model), ("compiled", torch.compile(model, backend="aot_eager"))):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(step(x[local]), y[local]).backward()  # DDP averages the gradients over the processes
            torch.save(gradients(model.module), os.path.join(out_dir, f"{mode}-rank{rank}.pt"))
        # The compiled step ran compiled graphs (an error suppressed into eager fallback would also match).
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1, dict(torch._dynamo.utils.counters)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_gradients(tmp_path_factory):
    """{"eager" / "compiled": [gradients of rank 0, of rank 1]}: one 2-process run does both steps."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    return {mode: [torch.load(out / f"{mode}-rank{rank}.pt") for rank in range(WORLD_SIZE)]
            for mode in ("eager", "compiled")}


@pytest.fixture(scope="module")
def single_process_gradients():
    model = make_model()
    x, y = global_batch()
    F.cross_entropy(model(x), y).backward()
    return gradients(model)


def assert_same_gradients(per_rank, expected):
    for grads in per_rank:
        assert grads.keys() == expected.keys()
        for name, grad in grads.items():
            scale = expected[name].abs().max().item()
            torch.testing.assert_close(grad, expected[name], rtol=1e-9, atol=1e-9 * scale,
                                       msg=lambda m, name=name: f"{name}: {m}")
    fused_weight = "inception3a.branch2.1.conv.weight"
    assert expected[fused_weight].abs().max() > 0


def test_ddp_two_processes_match_one_process(ddp_gradients, single_process_gradients):
    assert_same_gradients(ddp_gradients["eager"], single_process_gradients)


@pytest.mark.slow
def test_torch_compile_of_ddp_model_matches_one_process(ddp_gradients, single_process_gradients):
    assert_same_gradients(ddp_gradients["compiled"], single_process_gradients)


def test_the_model_runs_the_fused_op():
    # What the gradients above flow through: the op's registered autograd, in every block.
    assert sum(type(m) is FusedInception for m in make_model().modules()) == 9
