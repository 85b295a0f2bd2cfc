"""GoogLeNet (Inception v1) as in Szegedy et al. 2014, Table 1, with unfused or fused Inception blocks."""

from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..configs import BLOCKS_BY_NAME, GOOGLENET_BLOCKS
from .inception import Inception

#: Blocks whose outputs feed the auxiliary classifiers (the paper's 4a and 4d), in order.
AUX_CLASSIFIER_BLOCKS = ("4a", "4d")
#: Weight of each auxiliary loss in the total training loss (the paper's 0.3).
AUX_LOSS_WEIGHT = 0.3


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs with auxiliary classifiers. Field names match torchvision's GoogLeNetOutputs,
    so :func:`googlenet_loss` accepts either (torchvision orders them logits, aux_logits2, aux_logits1)."""

    logits: Tensor
    aux_logits1: Tensor  # classifier on 4a
    aux_logits2: Tensor  # classifier on 4d


def _conv_relu(in_channels, out_channels, kernel_size, stride=1, **factory):
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, **factory),
            nn.ReLU(inplace=True)]


class LocalResponseNorm(nn.LocalResponseNorm):
    """nn.LocalResponseNorm that also runs float16 and bfloat16 on the CPU, where PyTorch's has no kernel for
    them (its avg_pool3d): it computes in float32 there and returns the input's dtype."""

    def forward(self, x):
        if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
            return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


def _local_response_norm():
    # The paper's Caffe model (bvlc_googlenet): 5 channels, alpha 1e-4, beta 0.75.
    return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _downsample():
    # Table 1's 3x3/2 max-pools; ceil_mode as in Caffe, so 112 -> 56 -> 28 -> 14 -> 7 at a 224 input.
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class AuxClassifier(nn.Module):
    """The paper's auxiliary classifier: 5x5/3 avg-pool, 1x1 conv 128 + ReLU, fc 1024 + ReLU, dropout, fc."""

    POOLED_SIZE = 4  # a 14x14 map (224 input) pools to 4x4, so fc1 reads 128 * 4 * 4 features

    def __init__(self, in_channels, num_classes, dropout=0.7, **factory):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = nn.Sequential(*_conv_relu(in_channels, 128, 1, **factory))
        self.fc1 = nn.Linear(128 * self.POOLED_SIZE ** 2, 1024, **factory)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes, **factory)

    def forward(self, x):
        x = self.pool(x)
        if x.shape[-2:] != (self.POOLED_SIZE, self.POOLED_SIZE):
            raise ValueError(
                f"the auxiliary classifiers need a 14x14 to 16x16 feature map at 4a/4d (an input of 223x223 to "
                f"259x259), which pools 5x5/3 to {self.POOLED_SIZE}x{self.POOLED_SIZE}; this input gives "
                f"{tuple(x.shape[-2:])} after the pool. Use eval mode or aux_logits=False for other input sizes")
        x = self.conv(x).flatten(1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    """GoogLeNet from the paper's Table 1; build it with :func:`googlenet`.

    Stem (7x7/2 conv, max-pool, LRN, 1x1 + 3x3 convs, LRN, max-pool), the nine Inception blocks of
    :data:`fused_inception.GOOGLENET_BLOCKS` with 3x3/2 max-pools between stages, global average pool,
    dropout and one linear layer. The global pool equals Table 1's 7x7 avg-pool at a 224x224 input and lets
    the network take other sizes (at least 31x31) in eval mode or without auxiliary classifiers, which
    need an input of 223x223 to 259x259.

    In training mode with ``aux_logits`` the forward returns :class:`GoogLeNetOutputs` (main logits and the
    classifiers on 4a and 4d); otherwise the main logits. Blocks are ``inception3a`` ... ``inception5b``;
    unfused and fused networks have the same state-dict keys, so weights load both ways.
    """

    def __init__(self, num_classes=1000, aux_logits=True, fused=False, dropout=0.4, aux_dropout=0.7, *,
                 device=None, dtype=None):
        super().__init__()
        _check_args(num_classes=num_classes, aux_logits=aux_logits, fused=fused, dropout=dropout,
                    aux_dropout=aux_dropout)
        factory = dict(device=device, dtype=dtype)
        first_block = GOOGLENET_BLOCKS[0]
        self.stem = nn.Sequential(OrderedDict([
            ("conv1", nn.Sequential(*_conv_relu(3, 64, 7, stride=2, **factory))),
            ("pool1", _downsample()),
            ("norm1", _local_response_norm()),
            ("conv2_reduce", nn.Sequential(*_conv_relu(64, 64, 1, **factory))),
            ("conv2", nn.Sequential(*_conv_relu(64, first_block.in_channels, 3, **factory))),
            ("norm2", _local_response_norm()),
            ("pool2", _downsample()),
        ]))
        if fused:
            from ..modules import FusedInception as block_class  # modules imports models: import late
        else:
            block_class = Inception
        for config in GOOGLENET_BLOCKS:
            self.add_module(f"inception{config.name}", block_class(*config.block_args, **factory))
        # A max-pool sits wherever Table 1's spatial size halves between consecutive blocks (after 3b and 4e).
        self._downsample_before = {b.name for a, b in zip(GOOGLENET_BLOCKS, GOOGLENET_BLOCKS[1:])
                                   if b.spatial != a.spatial}
        self.downsample = _downsample()
        self.aux_logits = aux_logits
        self.aux_classifiers = nn.ModuleDict({
            name: AuxClassifier(BLOCKS_BY_NAME[name].out_channels, num_classes, aux_dropout, **factory)
            for name in AUX_CLASSIFIER_BLOCKS} if aux_logits else {})
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(GOOGLENET_BLOCKS[-1].out_channels, num_classes, **factory)

    def blocks(self):
        """(name, block) for the nine Inception blocks in network order, e.g. ("inception3a", block)."""
        return [(f"inception{c.name}", getattr(self, f"inception{c.name}")) for c in GOOGLENET_BLOCKS]

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GoogLeNet.forward: x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"GoogLeNet.forward: x must be (N, 3, H, W), got shape {tuple(x.shape)}")
        x = self.stem(x)
        aux = []
        for config in GOOGLENET_BLOCKS:
            if config.name in self._downsample_before:
                x = self.downsample(x)
            x = getattr(self, f"inception{config.name}")(x)
            if self.training and config.name in self.aux_classifiers:
                aux.append(self.aux_classifiers[config.name](x))
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return GoogLeNetOutputs(logits, *aux) if aux else logits


def googlenet(num_classes=1000, aux_logits=True, fused=False, dropout=0.4, aux_dropout=0.7, *, device=None,
              dtype=None) -> GoogLeNet:
    """GoogLeNet as in the paper's Table 1 (5x5 branches), with PyTorch's default initialisation.

    ``fused=True`` uses :class:`fused_inception.FusedInception` blocks; ``aux_logits`` adds the auxiliary
    classifiers on 4a and 4d (used in training mode only; they need an input of 223x223 to 259x259).
    """
    return GoogLeNet(num_classes, aux_logits, fused, dropout, aux_dropout, device=device, dtype=dtype)


def googlenet_loss(outputs, target, aux_weight=AUX_LOSS_WEIGHT) -> Tensor:
    """Cross entropy of the main logits plus ``aux_weight`` times that of each auxiliary classifier.

    ``outputs`` is what a GoogLeNet returns: a logits tensor (eval mode, or no auxiliary classifiers) or a
    GoogLeNetOutputs (this package's or torchvision's).
    """
    if isinstance(outputs, Tensor):
        return F.cross_entropy(outputs, target)
    if not all(hasattr(outputs, f) for f in GoogLeNetOutputs._fields):
        raise TypeError(f"googlenet_loss: outputs must be a logits tensor or GoogLeNetOutputs, "
                        f"got {type(outputs).__name__}")
    aux_loss = F.cross_entropy(outputs.aux_logits1, target) + F.cross_entropy(outputs.aux_logits2, target)
    return F.cross_entropy(outputs.logits, target) + aux_weight * aux_loss


def _check_args(*, num_classes, aux_logits, fused, dropout, aux_dropout):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    for name, value in (("aux_logits", aux_logits), ("fused", fused)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    for name, value in (("dropout", dropout), ("aux_dropout", aux_dropout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
