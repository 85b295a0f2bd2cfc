"""FusedInception: the Inception block as one op, a drop-in for the unfused reference block."""

import contextlib

import torch
from torch import nn

from . import ops
from .models.inception import Inception


class FusedInception(Inception):
    """An Inception block computed by ``torch.ops.fused_inception.inception_forward``.

    Same constructor, parameters and state-dict keys as :class:`fused_inception.models.Inception` (it is a
    subclass), so state dicts load both ways and ``isinstance(m, Inception)`` holds. The op reads the
    parameters themselves on every call: the module keeps no derived copy of them, so whatever changed a
    parameter (an optimizer step, fused or not, ``.data``, ``load_state_dict``, ``.to()``) the next forward
    computes with its current value.
    """

    @classmethod
    def from_module(cls, module: nn.Module) -> "FusedInception":
        """Builds a FusedInception equal to ``module``: the reference Inception or torchvision's Inception.

        torchvision's blocks carry BatchNorm after each conv; it is folded into the conv's weight and bias
        with the running statistics, so every BatchNorm in the block must be in eval mode. The result has the
        module's device, dtype, weight memory format, training flag and each parameter's ``requires_grad``
        (a folded parameter requires grad where any parameter it is folded from does).
        """
        if isinstance(module, Inception):
            block_args, kernel_sizes = module.block_args, module.kernel_sizes
            sources = list(module.op_parameters())
            tensors = [p.detach() for p in sources]
            requires_grad = [p.requires_grad for p in sources]
        else:
            from .convert import torchvision_block_parameters  # torchvision is optional

            block_args, kernel_sizes, tensors, requires_grad = torchvision_block_parameters(module)
        # set_data cannot turn a real parameter into a meta tensor: a meta block is built on meta.
        with torch.device("meta") if tensors[0].is_meta else contextlib.nullcontext():
            fused = cls(*block_args, kernel_sizes=kernel_sizes)
        with torch.no_grad():
            for param, source, grad_flag in zip(fused.op_parameters(), tensors, requires_grad):
                # clone() keeps the source's memory format; .data swaps device, dtype and strides at once.
                param.data = source.clone()
                param.requires_grad_(grad_flag)
        return fused.train(module.training)

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"FusedInception.forward: x must be a torch.Tensor, got {type(x).__name__}")
        return ops.inception(x, *self.op_parameters())
