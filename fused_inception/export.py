"""Exporting models with fused blocks: the op's decomposition into standard operators.

``torch.onnx.export(model, args, dynamo=True)`` decomposes every operator that has no ONNX function by the
global decomposition table (``torch._decomp.decomposition_table``). Registering the Inception op there makes a
fused model export as Conv, Relu, MaxPool and Concat, which ONNX Runtime, TensorRT and every other ONNX
consumer run: nothing to pass to the exporter. Eager calls and ``torch.compile`` keep the op (neither
applies this table), so the fused kernel still runs there.
"""

import torch
import torch.nn.functional as F
from torch._decomp import register_decomposition

from . import _library  # noqa: F401  (registers the operators)

__all__ = ["inception_composition"]


def inception_composition(x, w1, b1, w3r, b3r, w3, b3, w5r, b5r, w5, b5, wp, bp, *unused):
    """The Inception block in standard operators: the op's definition. Extra trailing arguments (derived data
    some versions of the op take, such as packed weights) do not change the result and are ignored."""
    branch1 = F.relu(F.conv2d(x, w1, b1))
    branch2 = F.relu(F.conv2d(F.relu(F.conv2d(x, w3r, b3r)), w3, b3, padding=w3.shape[-1] // 2))
    branch3 = F.relu(F.conv2d(F.relu(F.conv2d(x, w5r, b5r)), w5, b5, padding=w5.shape[-1] // 2))
    branch4 = F.relu(F.conv2d(F.max_pool2d(x, 3, stride=1, padding=1), wp, bp))
    return torch.cat([branch1, branch2, branch3, branch4], dim=1)


register_decomposition(torch.ops.fused_inception.inception_forward.default)(inception_composition)

_OP_NAME = "fused_inception::inception_forward"
_inductor_told = False


def keep_fused_op_under_inductor():
    """Tells Inductor to call the op (a fallback kernel) although a decomposition exists for it: the
    decomposition is for exporters. Without this, Inductor's implicit fallback for the op fails its own
    check when the environment variable CI is set ("make_fallback(...): a decomposition exists"), as it is
    in most users' CI. Called from the op's fake implementation, which every torch.compile trace runs before
    Inductor lowers the graph; importing Inductor happens once, where tracing would pay for it anyway."""
    global _inductor_told
    if _inductor_told:
        return
    _inductor_told = True
    try:
        from torch._inductor import graph
    except ImportError:  # a torch without Inductor: nothing to tell
        return
    graph.FALLBACK_ALLOW_LIST.add(_OP_NAME)
