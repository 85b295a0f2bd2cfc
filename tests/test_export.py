"""Exporting fused models: ONNX (run in ONNX Runtime against the unfused model) and torch.jit.trace."""

import pytest
import torch
from conftest import make_block, make_input

import fused_inception
from fused_inception import FusedInception, googlenet
from fused_inception.testing import assert_numerics, float64_copy, simt_launch_count

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BLOCK_ARGS = (16, 8, 6, 8, 4, 6, 4)
STANDARD_OPS = {"Conv", "Relu", "MaxPool", "Concat"}


def export_and_run(model, x, path, fresh_input, dynamic_shapes=None):
    """Exports ``model`` traced on ``x`` to ``path`` and runs the file in ONNX Runtime on ``fresh_input``."""
    torch.onnx.export(model, (x,), str(path), dynamo=True, verbose=False, dynamic_shapes=dynamic_shapes)
    graph = onnx.load(str(path)).graph
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: fresh_input.numpy()})
    return graph, torch.from_numpy(out)


def op_types(graph):
    """Every node's operator type, functions' bodies included (the exporter may keep local functions)."""
    return {node.op_type for node in graph.node}


@pytest.mark.parametrize("kernel_sizes", [(3, 5), (5, 3)])
def test_fused_block_exports_to_standard_onnx_ops(tmp_path, kernel_sizes):
    unfused = make_block(BLOCK_ARGS, kernel_sizes=kernel_sizes).eval()
    fused = FusedInception.from_module(unfused).eval()
    graph, out = export_and_run(fused, make_input(2, 16, 7, 9), tmp_path / "block.onnx",
                                fresh := make_input(2, 16, 7, 9, seed=2))
    model = onnx.load(str(tmp_path / "block.onnx"))
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node), op_types(graph)
    assert STANDARD_OPS <= op_types(graph) and not model.functions
    with torch.no_grad():
        assert_numerics(out, unfused(fresh), float64_copy(unfused)(fresh.double()), what="ONNX Runtime output")


def test_fused_googlenet_exports_and_runs_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    unfused = googlenet(aux_logits=False).eval()
    fused = fused_inception.fuse(unfused)
    # A dynamic batch: exported at batch 2, run at batch 3.
    graph, out = export_and_run(fused, make_input(2, 3, 64, 64), tmp_path / "googlenet.onnx",
                                fresh := make_input(3, 3, 64, 64, seed=3),
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert STANDARD_OPS <= op_types(graph)
    assert not any("fused_inception" in node.domain or "inception" in node.op_type.lower() for node in graph.node)
    with torch.no_grad():
        assert_numerics(out, unfused(fresh), float64_copy(unfused)(fresh.double()), what="ONNX Runtime logits")


def test_eager_and_compiled_calls_keep_the_fused_op():
    # The decomposition is for exporters only: eager and torch.compile calls still run the fused kernel
    # (the emulated one here), not the composition.
    block = FusedInception(*BLOCK_ARGS).eval()
    x = make_input(1, 16, 5, 5)
    with fused_inception.cpu_backend("fused"), torch.no_grad():
        before = simt_launch_count()
        block(x)
        eager_launches = simt_launch_count() - before
        torch._dynamo.reset()
        torch.compile(block, fullgraph=True)(x)
        compiled_launches = simt_launch_count() - before - eager_launches
    assert eager_launches > 0 and compiled_launches > 0


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_torch_jit_trace_runs_the_fused_op():
    unfused = make_block(BLOCK_ARGS).eval()
    fused = FusedInception.from_module(unfused).eval()
    with torch.no_grad():
        traced = torch.jit.trace(fused, make_input(2, 16, 6, 6))
    assert "fused_inception::inception_forward" in str(traced.graph)
    fresh = make_input(3, 16, 8, 5, seed=4)  # another shape: the trace keeps the op, not fixed sizes
    with torch.no_grad():
        assert_numerics(traced(fresh), unfused(fresh), float64_copy(unfused)(fresh.double()), what="traced")
