"""fuse(): replaces the Inception blocks of any model with equivalent FusedInception blocks."""

import copy
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from .convert import ConversionError, is_torchvision_inception, training_batchnorms
from .models.inception import Inception
from .modules import FusedInception

NOT_RECOGNISED = "not a block fuse() knows (it converts the reference and torchvision's GoogLeNet Inception)"


@dataclass(frozen=True)
class ReplacedBlock:
    name: str  # qualified module name in the model, e.g. "inception3a"; "" for the model itself
    source: str  # the replaced block's class, e.g. "torchvision.models.googlenet.Inception"
    kernel_sizes: tuple
    batchnorm_folded: bool


@dataclass(frozen=True)
class LeftModule:
    name: str
    kind: str  # the module's class
    reason: str


@dataclass
class FuseReport:
    """What :func:`fuse` replaced and what it left alone (blocks it could not convert, blocks already fused,
    and other modules named like Inception blocks), with the reason for each."""

    replaced: list = field(default_factory=list)
    left: list = field(default_factory=list)

    def __str__(self):
        if not self.replaced and not self.left:
            return "fuse: no Inception block found; the model is unchanged"
        lines = [f"fuse: replaced {len(self.replaced)} Inception block(s) with FusedInception"]
        lines += [f"  {_display(r.name):<16} {r.source} -> FusedInception(kernel_sizes={r.kernel_sizes})"
                  + (", BatchNorm folded" if r.batchnorm_folded else "") for r in self.replaced]
        if self.left:
            lines.append(f"left unchanged: {len(self.left)} module(s)")
            lines += [f"  {_display(m.name):<16} {m.kind}: {m.reason}" for m in self.left]
        return "\n".join(lines)


class FuseResult(NamedTuple):
    """What ``fuse(model, return_report=True)`` returns: ``model, report = fuse(model, return_report=True)``."""

    model: nn.Module
    report: FuseReport


def fuse(model: nn.Module, inplace: bool = False, return_report: bool = False) -> "nn.Module | FuseResult":
    """Replaces each recognised Inception block in ``model`` with an equal :class:`FusedInception`.

    Recognised blocks: the reference :class:`fused_inception.models.Inception` (any mode) and torchvision's
    ``torchvision.models.googlenet.Inception``, whose BatchNorm is folded into the convolutions with its
    running statistics. Blocks anywhere in the module tree are found (inside Sequential, ModuleList,
    ModuleDict, custom containers); each fused block keeps its block's device, dtype, weight memory format and
    training flag. A recognised block that cannot be converted (e.g. a dilated conv) is left as it is, with a
    warning and its reason in the report. Hooks registered on a replaced block do not carry over.

    A block with BatchNorm in **training mode** raises :class:`ConversionError` before anything changes:
    training-mode BatchNorm normalises with each batch's statistics, which no fixed folded weight reproduces,
    and leaving such blocks unfused would hand back a model that silently is not fused. Call ``model.eval()``
    first (fine-tune before fusing, or fuse for inference).

    A model on the meta device (built without memory, as large models are) fuses to fused blocks on the meta
    device; load real weights afterwards (``model.to_empty(device=...)`` then ``load_state_dict``).

    Returns the fused model, like ``torch.compile`` or ``fuse_modules``: ``model = fuse(model)``. With
    ``return_report=True`` it returns ``FuseResult(model, report)`` instead, where ``report`` (a
    :class:`FuseReport`) lists what was replaced and what was left and why: ``model, report = fuse(model,
    return_report=True)``. With ``inplace=False`` (default) the model is a converted deep copy and the argument
    is untouched; with ``inplace=True`` the argument itself is changed and returned, except when ``model`` is
    itself a block: then the returned block replaces it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"fuse: inplace must be a bool, got {type(inplace).__name__}")
    if not isinstance(return_report, bool):
        raise TypeError(f"fuse: return_report must be a bool, got {type(return_report).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    report = FuseReport()
    sites = []  # (parent or None for the root, attribute name, qualified name, block)
    _find_blocks(None, "", "", model, sites, report)

    # Every BatchNorm counts, not the block's flag: a BatchNorm left in training mode inside an eval-mode block
    # would be folded with statistics it does not use.
    training_bn = [_display(name) for _, _, name, block in sites if training_batchnorms(block)]
    if training_bn:
        raise ConversionError(
            f"fuse: {len(training_bn)} block(s) carry BatchNorm and are in training mode ({', '.join(training_bn)}); "
            "training-mode BatchNorm uses batch statistics and cannot be folded into the convolutions. Call "
            "model.eval() before fuse(). The model was not changed")

    converted = {}  # id(block) -> FusedInception; a block registered twice stays shared
    for parent, attribute, name, block in sites:
        if id(block) not in converted:
            try:
                converted[id(block)] = FusedInception.from_module(block)
            except ConversionError as error:
                converted[id(block)] = error
        fused = converted[id(block)]
        kind = _class_name(block)
        if isinstance(fused, ConversionError):
            report.left.append(LeftModule(name, kind, f"cannot be fused: {fused}"))
            warnings.warn(f"fuse: left {_display(name)} ({kind}) unfused: {fused}", stacklevel=2)
            continue
        report.replaced.append(ReplacedBlock(name, kind, fused.kernel_sizes, _has_batchnorm(block)))
        if parent is None:
            model = fused
        else:
            setattr(parent, attribute, fused)  # also right for Sequential/ModuleList/ModuleDict entries
    return FuseResult(model, report) if return_report else model


def _find_blocks(parent, attribute, name, module, sites, report):
    if isinstance(module, FusedInception):
        report.left.append(LeftModule(name, _class_name(module), "already fused"))
        return
    if isinstance(module, Inception) or is_torchvision_inception(module):
        sites.append((parent, attribute, name, module))
        return  # the block's own submodules are its branches
    if "inception" in type(module).__name__.lower():
        report.left.append(LeftModule(name, _class_name(module), NOT_RECOGNISED))
    # _modules, not named_children(): that skips a module's second registration, which must be replaced too.
    for child_attribute, child in module._modules.items():
        if child is None:
            continue
        child_name = f"{name}.{child_attribute}" if name else child_attribute
        _find_blocks(module, child_attribute, child_name, child, sites, report)


def _has_batchnorm(module):
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _class_name(module):
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _display(name):
    return name or "(model)"
