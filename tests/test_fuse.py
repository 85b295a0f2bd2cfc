"""fuse(): swapping Inception blocks for FusedInception in whole models (reference and torchvision GoogLeNet)."""

import contextlib

import pytest
import torch
from conftest import make_block, make_input, randomize_batchnorm
from torch import nn

import fused_inception
from fused_inception import ConversionError, FusedInception, fuse, googlenet
from fused_inception.testing import assert_numerics, float64_copy, simt_orders

torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for its GoogLeNet")
from torchvision.models.googlenet import Inception as TorchvisionInception  # noqa: E402

BLOCK_ARGS = (32, 8, 12, 16, 4, 8, 8)
BLOCK_NAMES = [f"inception{c.name}" for c in fused_inception.GOOGLENET_BLOCKS]
IMAGE_SIZE = 96  # both GoogLeNets run every block at 96x96 (12, 6, 3 pixels) in eval mode


def torchvision_googlenet(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    randomize_batchnorm(model)
    return model.to(device=device, dtype=dtype, memory_format=memory_format).eval()


def images(batch, device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format):
    return make_input(batch, 3, IMAGE_SIZE, IMAGE_SIZE, device, dtype, memory_format=memory_format)


def check_logits(fused, unfused, x):
    with torch.no_grad():
        assert_numerics(fused(x), unfused(x), float64_copy(unfused)(x.double()), what="logits")


def batch_and_schedules(backend, device):
    """Whole networks on the emulated kernel take one image and one racecheck schedule (the kernel's races
    are test_fused_kernel.py's), to bound the suite's time; two images otherwise."""
    if backend == "kernel" and device == "cpu":
        return 1, simt_orders("forward")
    return 2, contextlib.nullcontext()


def test_torchvision_googlenet_converts_with_equal_logits(device, backend):
    model = torchvision_googlenet(device)
    fused, report = fuse(model, return_report=True)
    assert [r.name for r in report.replaced] == BLOCK_NAMES
    assert all(r.batchnorm_folded and r.kernel_sizes == (3, 3) for r in report.replaced)
    assert all(r.source == "torchvision.models.googlenet.Inception" for r in report.replaced)
    assert [(m.name, m.kind.rsplit(".", 1)[-1]) for m in report.left] == [("aux1", "InceptionAux"),
                                                                        ("aux2", "InceptionAux")]
    assert all("not a block fuse() knows" in m.reason for m in report.left)
    for name in BLOCK_NAMES:
        assert type(fused.get_submodule(name)) is FusedInception and not fused.get_submodule(name).training
        assert type(model.get_submodule(name)) is TorchvisionInception  # inplace=False: the model is untouched
    batch, schedules = batch_and_schedules(backend, device)
    with schedules:
        check_logits(fused, model, images(batch, device))
    assert "replaced 9 Inception block(s)" in str(report) and "BatchNorm folded" in str(report)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("source", ["reference", "torchvision"])
def test_fuse_keeps_device_dtype_and_memory_format(source, memory_format, dtype, device, backend):
    if source == "torchvision":
        model = torchvision_googlenet(device, dtype, memory_format)
    else:
        torch.manual_seed(0)
        model = googlenet(aux_logits=False).to(device=device, dtype=dtype, memory_format=memory_format).eval()
    fused, report = fuse(model, return_report=True)
    assert len(report.replaced) == 9
    for name in BLOCK_NAMES:
        for p in fused.get_submodule(name).parameters():
            assert p.device.type == torch.device(device).type and p.dtype == dtype
            if p.dim() == 4 and p.shape[1] > 1 and p.shape[2:] != (1, 1):  # where the formats differ in strides
                assert p.is_contiguous(memory_format=memory_format)
    batch, schedules = batch_and_schedules(backend, device)
    with schedules:
        check_logits(fused, model, images(batch, device, dtype, memory_format))


def test_training_mode_batchnorm_blocks_are_refused_and_nothing_changes():
    model = torchvision_googlenet().train()
    for inplace in (False, True):
        with pytest.raises(ConversionError, match=r"9 block\(s\) carry BatchNorm and are in training mode "
                                                  r"\(inception3a, .*inception5b\).*Call model.eval\(\)"):
            fuse(model, inplace=inplace)
    assert all(type(model.get_submodule(name)) is TorchvisionInception for name in BLOCK_NAMES)
    fuse(model.eval(), inplace=True)  # the remedy the message names
    assert all(type(model.get_submodule(name)) is FusedInception for name in BLOCK_NAMES)


def test_reference_blocks_fuse_in_training_mode():
    torch.manual_seed(0)
    model = googlenet(10, dropout=0.0, aux_dropout=0.0).train()  # no BatchNorm: nothing to fold
    fused, report = fuse(model, return_report=True)
    assert [r.name for r in report.replaced] == BLOCK_NAMES and not any(r.batchnorm_folded for r in report.replaced)
    assert all(fused.get_submodule(name).training for name in BLOCK_NAMES)
    x = make_input(1, 3, 224, 224)
    fused_out, unfused_out, reference_out = fused(x), model(x), float64_copy(model)(x.double())
    for field in fused_out._fields:
        assert_numerics(*(getattr(out, field).detach() for out in (fused_out, unfused_out, reference_out)),
                        what=field)


class Wrapper(nn.Module):
    """A custom container holding a block as a plain attribute, behind a conv."""

    def __init__(self, block):
        super().__init__()
        self.conv = nn.Conv2d(block.block_args[0], block.block_args[0], 1)
        self.inner = block

    def forward(self, x):
        return self.inner(self.conv(x))


def tv_block():
    torch.manual_seed(7)
    block = TorchvisionInception(*BLOCK_ARGS)
    randomize_batchnorm(block, seed=1)
    return block.eval()


def test_nested_blocks_in_containers_are_found():
    out_channels = sum(BLOCK_ARGS[i] for i in (1, 3, 5, 6))
    stage = nn.ModuleDict({"first": make_block(BLOCK_ARGS, seed=1), "second": tv_block()})
    shared = make_block(BLOCK_ARGS, (3, 3), seed=2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage = stage
            self.layers = nn.ModuleList([nn.Sequential(Wrapper(make_block(BLOCK_ARGS, seed=3)), nn.ReLU()),
                                         nn.Conv2d(out_channels, BLOCK_ARGS[0], 1)])
            self.shared_a, self.shared_b = shared, shared

        def forward(self, x):
            x = self.stage["first"](x)
            x = self.stage["second"](self.layers[1](x))
            x = self.layers[0](self.layers[1](x))
            x = self.shared_a(self.layers[1](x))
            return self.shared_b(self.layers[1](x))

    model = Net().eval()
    fused, report = fuse(model, return_report=True)
    names = ["stage.first", "stage.second", "layers.0.0.inner", "shared_a", "shared_b"]
    assert sorted(r.name for r in report.replaced) == sorted(names)
    assert all(type(fused.get_submodule(name)) is FusedInception for name in names)
    assert fused.shared_a is fused.shared_b  # a block registered twice stays one module
    assert report.left == []
    check_logits(fused, model, make_input(2, BLOCK_ARGS[0], 5, 5))


def test_model_without_blocks_is_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    copy, report = fuse(model, return_report=True)
    assert report.replaced == [] and report.left == []
    assert str(report) == "fuse: no Inception block found; the model is unchanged"
    assert copy is not model and [type(m) for m in copy.modules()] == [type(m) for m in model.modules()]
    assert fuse(model, inplace=True) is model


def test_inplace_changes_the_model_itself():
    torch.manual_seed(0)
    model = googlenet(aux_logits=False).eval()
    blocks_before = dict(model.blocks())
    result, report = fuse(model, inplace=True, return_report=True)
    assert result is model and len(report.replaced) == 9
    assert all(type(block) is FusedInception and block is not blocks_before[name] for name, block in model.blocks())


def test_block_itself_is_replaced():
    block = make_block(BLOCK_ARGS).eval()
    for inplace in (False, True):
        fused, report = fuse(block, inplace=inplace, return_report=True)
        assert type(fused) is FusedInception and [r.name for r in report.replaced] == [""]
        assert "(model)" in str(report)
        check_logits(fused, block, make_input(2, BLOCK_ARGS[0], 6, 6))


def test_already_fused_blocks_are_left_alone():
    model = googlenet(aux_logits=False, fused=True).eval()
    _, report = fuse(model, return_report=True)
    assert report.replaced == []
    assert [(m.name, m.reason) for m in report.left] == [(name, "already fused") for name in BLOCK_NAMES]


def test_unconvertible_block_is_left_with_a_warning():
    block = tv_block()
    block.branch3[1].conv.dilation = (2, 2)
    model = nn.Sequential(tv_block(), block)
    with pytest.warns(UserWarning, match=r"left 1 \(torchvision.models.googlenet.Inception\) unfused: "
                                         r"branch3.1: only square stride-1"):
        fused, report = fuse(model, return_report=True)
    assert [r.name for r in report.replaced] == ["0"] and type(fused[0]) is FusedInception
    assert [m.name for m in report.left] == ["1"] and "cannot be fused: branch3.1" in report.left[0].reason
    assert fused[1] is not block and type(fused[1]) is TorchvisionInception


def test_torchvision_block_with_custom_conv_block_is_left_alone():
    block = TorchvisionInception(*BLOCK_ARGS, conv_block=nn.Conv2d).eval()  # plain convs: nothing to fold
    with pytest.warns(UserWarning, match="branch1: expected torchvision's BasicConv2d"):
        fused, report = fuse(block, return_report=True)
    assert fused is not block and type(fused) is TorchvisionInception and report.replaced == []


def test_fuse_returns_the_model_and_the_report_on_request():
    torch.manual_seed(0)
    model = googlenet(aux_logits=False).eval()
    fused = fuse(model)  # the one-liner: model = fuse(model)
    assert isinstance(fused, nn.Module) and fused is not model
    assert [name for name, block in fused.blocks() if type(block) is FusedInception] == BLOCK_NAMES
    check_logits(fused, model, images(1))
    result = fuse(model, return_report=True)
    assert isinstance(result, fused_inception.FuseResult) and isinstance(result.model, nn.Module)
    assert [r.name for r in result.report.replaced] == BLOCK_NAMES


@pytest.mark.parametrize("source", ["reference", "torchvision"])
def test_meta_device_model_fuses_to_meta_blocks(source):
    with torch.device("meta"):
        model = googlenet(aux_logits=False) if source == "reference" else torchvision.models.googlenet(
            weights=None, aux_logits=False, init_weights=False)
    fused = fuse(model.eval())
    blocks = [m for m in fused.modules() if type(m) is FusedInception]
    assert len(blocks) == 9 and all(p.is_meta for p in fused.parameters())
    with torch.no_grad():  # shapes flow through the fake implementation
        assert fused(torch.empty(2, 3, IMAGE_SIZE, IMAGE_SIZE, device="meta")).shape == (2, 1000)
    # Materialised and loaded with real weights, the fused model computes what the loaded unfused one does.
    real = torchvision_googlenet() if source == "torchvision" else googlenet(aux_logits=False).eval()
    if source == "torchvision":
        real.aux1 = real.aux2 = None
        real.aux_logits = False
    fused_real = fuse(real)
    fused.to_empty(device="cpu").load_state_dict(fused_real.state_dict())
    check_logits(fused, real, images(2))


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="fuse: model must be a torch.nn.Module, got str"):
        fuse("googlenet")
    with pytest.raises(TypeError, match="fuse: inplace must be a bool, got str"):
        fuse(nn.ReLU(), inplace="yes")
    with pytest.raises(TypeError, match="fuse: return_report must be a bool, got int"):
        fuse(nn.ReLU(), return_report=1)
