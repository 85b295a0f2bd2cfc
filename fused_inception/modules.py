"""FusedInception: the Inception block as one op, a drop-in for the unfused reference block."""

import contextlib

import torch
from torch import nn

from . import ops
from .models.inception import Inception


class FusedInception(Inception):
    """An Inception block computed by ``torch.ops.fused_inception.inception_forward``.

    Same constructor, parameters and state-dict keys as :class:`fused_inception.models.Inception` (it is a
    subclass), so state dicts load both ways and ``isinstance(m, Inception)`` holds. Where the op's
    implementation reads packed weights, they are packed into the kernels' layout once and repacked only
    when a parameter changes (an optimizer step, a ``load_state_dict``, ``.to()``); the pack is derived
    data and gets no gradient.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pack_cache = None  # (parameter aliases, their versions, packed tensor)

    @classmethod
    def from_module(cls, module: nn.Module) -> "FusedInception":
        """Builds a FusedInception equal to ``module``: the reference Inception or torchvision's Inception.

        torchvision's blocks carry BatchNorm after each conv; it is folded into the conv's weight and bias
        with the running statistics, so the module must be in eval mode. The result has the module's device,
        dtype, weight memory format and training flag.
        """
        if isinstance(module, Inception):
            block_args, kernel_sizes = module.block_args, module.kernel_sizes
            tensors = [p.detach() for p in module.op_parameters()]
        else:
            from .convert import torchvision_block_parameters  # torchvision is optional

            block_args, kernel_sizes, tensors = torchvision_block_parameters(module)
        # set_data cannot turn a real parameter into a meta tensor: a meta block is built on meta.
        with torch.device("meta") if tensors[0].is_meta else contextlib.nullcontext():
            fused = cls(*block_args, kernel_sizes=kernel_sizes)
        with torch.no_grad():
            for param, source in zip(fused.op_parameters(), tensors):
                # clone() keeps the source's memory format; .data swaps device, dtype and strides at once.
                param.data = source.clone()
        return fused.train(module.training)

    def _packed_weights(self, params):
        """The packed weights for the current parameter values, cached per parameter version."""
        cache = self._pack_cache
        if cache is not None:
            aliases, versions, packed = cache
            # The aliases keep the old storages alive, so a matching data_ptr cannot be a reused address.
            if all(a.data_ptr() == p.data_ptr() and a.dtype == p.dtype and v == p._version
                   for a, v, p in zip(aliases, versions, params)):
                return packed
        with torch.no_grad():
            packed = ops.pack_weights(*params)
        self._pack_cache = (tuple(p.detach() for p in params), tuple(p._version for p in params), packed)
        return packed

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"FusedInception.forward: x must be a torch.Tensor, got {type(x).__name__}")
        params = self.op_parameters()
        packed = None
        # Under torch.compile the pack is traced into the graph by the op itself instead of read from here.
        # jit.trace cannot record _get_backend's string: a trace records the op without the pack.
        if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and ops.reads_packed_weights(x.device):
            packed = self._packed_weights(params)
        return ops.inception(x, *params, packed=packed)
