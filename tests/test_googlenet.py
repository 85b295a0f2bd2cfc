"""The reference GoogLeNet (paper, Table 1): structure, outputs in both modes, aux loss, fused vs unfused."""

import copy

import pytest
import torch
import torch.nn.functional as F

import fused_inception
from fused_inception import GOOGLENET_BLOCKS, FusedInception, Inception
from fused_inception.models import AUX_CLASSIFIER_BLOCKS, GoogLeNetOutputs, googlenet, googlenet_loss
from fused_inception.testing import assert_network_gradient_numerics, assert_numerics, float64_copy

NUM_CLASSES = 10
FULL_SIZE = 224  # the auxiliary classifiers need 223..259; 224 gives Table 1's spatial sizes
SMALL_SIZE = 96  # blocks at 12, 6 and 3 pixels: every padding path, a fraction of the cost


def make_net(fused=False, seed=0, device="cpu", dtype=torch.float32, **kwargs):
    torch.manual_seed(seed)
    return googlenet(NUM_CLASSES, fused=fused, **kwargs).to(device=device, dtype=dtype)


def images(batch, size, device="cpu", dtype=torch.float32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def test_structure_follows_table1():
    net = make_net().eval()
    assert [name for name, _ in net.blocks()] == [f"inception{c.name}" for c in GOOGLENET_BLOCKS]
    for (_, block), config in zip(net.blocks(), GOOGLENET_BLOCKS):
        assert type(block) is Inception and block.block_args == config.block_args and block.kernel_sizes == (3, 5)
    assert list(net.aux_classifiers) == list(AUX_CLASSIFIER_BLOCKS) == ["4a", "4d"]
    assert [c.conv[0].in_channels for c in net.aux_classifiers.values()] == [512, 528]
    assert net.dropout.p == 0.4 and [c.dropout.p for c in net.aux_classifiers.values()] == [0.7, 0.7]

    # Every block runs at Table 1's spatial size and channel count for a 224x224 input.
    shapes = {}
    for name, block in net.blocks():
        block.register_forward_hook(lambda module, args, out, name=name: shapes.__setitem__(name, out.shape[1:]))
    stem_shape = net.stem(images(1, FULL_SIZE)).shape
    with torch.no_grad():
        net(images(1, FULL_SIZE))
    assert stem_shape == (1, 192, 28, 28)
    for config in GOOGLENET_BLOCKS:
        assert shapes[f"inception{config.name}"] == (config.out_channels, config.spatial, config.spatial)


def test_eval_returns_main_logits_only():
    net = make_net().eval()
    x = images(2, SMALL_SIZE)
    with torch.no_grad():
        logits = net(x)
        again = net(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all() and torch.equal(logits, again)  # no dropout in eval mode
    assert not torch.allclose(logits[0], logits[1])  # the output depends on the input


def test_training_returns_main_and_both_aux_logits():
    net = make_net().train()
    x = images(2, FULL_SIZE)
    torch.manual_seed(3)
    outputs = net(x)
    assert isinstance(outputs, GoogLeNetOutputs)
    assert all(t.shape == (2, NUM_CLASSES) and torch.isfinite(t).all() for t in outputs)
    assert not torch.equal(outputs.aux_logits1, outputs.aux_logits2)
    torch.manual_seed(4)
    assert not torch.equal(net(x).logits, outputs.logits)  # dropout is active in training mode

    without_aux = make_net(aux_logits=False).train()
    assert isinstance(without_aux(images(2, SMALL_SIZE)), torch.Tensor)
    assert not any("aux" in key for key in without_aux.state_dict())


def test_aux_classifiers_reject_inputs_they_cannot_pool():
    net = make_net().train()
    with pytest.raises(ValueError, match="auxiliary classifiers need .*aux_logits=False"):
        net(images(1, SMALL_SIZE))


def test_aux_loss_weighting():
    generator = torch.Generator().manual_seed(0)
    logits, aux1, aux2 = (torch.randn(4, NUM_CLASSES, generator=generator) for _ in range(3))
    target = torch.randint(0, NUM_CLASSES, (4,), generator=generator)
    main, first, second = (F.cross_entropy(t, target) for t in (logits, aux1, aux2))
    outputs = GoogLeNetOutputs(logits, aux1, aux2)
    torch.testing.assert_close(googlenet_loss(outputs, target), main + 0.3 * (first + second))
    torch.testing.assert_close(googlenet_loss(outputs, target, aux_weight=1.0), main + first + second)
    torch.testing.assert_close(googlenet_loss(logits, target), main)  # eval-mode output: main loss only

    torchvision = pytest.importorskip("torchvision")
    # torchvision orders its fields (logits, aux_logits2, aux_logits1); the loss reads them by name.
    tv_outputs = torchvision.models.GoogLeNetOutputs(logits, aux2, aux1)
    torch.testing.assert_close(googlenet_loss(tv_outputs, target), googlenet_loss(outputs, target))
    with pytest.raises(TypeError, match="outputs must be a logits tensor or GoogLeNetOutputs"):
        googlenet_loss((logits, aux1), target)


def test_fused_flag_builds_fused_blocks_with_the_same_weights():
    fused, unfused = make_net(fused=True, seed=5), make_net(fused=False, seed=5)
    assert all(type(block) is FusedInception for _, block in fused.blocks())
    assert all(type(block) is Inception for _, block in unfused.blocks())
    fused_state, unfused_state = fused.state_dict(), unfused.state_dict()
    assert list(fused_state) == list(unfused_state)
    assert all(torch.equal(fused_state[key], unfused_state[key]) for key in unfused_state)


@pytest.mark.parametrize("direction", ["unfused_to_fused", "fused_to_unfused"])
def test_state_dict_round_trip(direction):
    source_fused = direction == "fused_to_unfused"
    source, target = make_net(fused=source_fused, seed=1), make_net(fused=not source_fused, seed=2)
    target.load_state_dict(source.state_dict())
    x = images(2, SMALL_SIZE)
    with torch.no_grad():
        fused, unfused = (source, target) if source_fused else (target, source)
        assert_numerics(fused.eval()(x), unfused.eval()(x), float64_copy(unfused)(x.double()))
    back = make_net(fused=source_fused, seed=3)
    back.load_state_dict(target.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def three_networks(device, **kwargs):
    """Fused and unfused float32 networks with equal weights, and the unfused float64 reference."""
    unfused = make_net(device=device, **kwargs)
    fused = make_net(fused=True, seed=99, device=device, **kwargs)
    fused.load_state_dict(unfused.state_dict())
    reference = make_net(device=device, **kwargs).double()
    reference.load_state_dict(unfused.state_dict())
    return fused, unfused, reference


def test_whole_network_forward_and_backward_match(device):
    # Dropout off: the float64 reference could not draw the same masks on every device.
    fused, unfused, reference = three_networks(device, dropout=0.0, aux_dropout=0.0)
    x = images(2, FULL_SIZE, device)
    target = torch.randint(0, NUM_CLASSES, (2,), device=device)
    results = []  # (outputs, loss, grad of x, parameter grads) per network
    for net in (fused, unfused, reference):
        inp = x.to(next(net.parameters()).dtype, copy=True).requires_grad_()
        outputs = net.train()(inp)
        loss = googlenet_loss(outputs, target)
        loss.backward()
        results.append((outputs, loss.detach(), inp.grad, {name: p.grad for name, p in net.named_parameters()}))
    (fused_out, *_), (unfused_out, *_), (reference_out, *_) = results
    for field in GoogLeNetOutputs._fields:
        assert_numerics(*(getattr(out, field).detach() for out in (fused_out, unfused_out, reference_out)),
                        what=field)
    assert_numerics(*(loss for _, loss, _, _ in results), what="loss")
    assert_numerics(*(grad_x for _, _, grad_x, _ in results), what="grad x")
    fused_grads, unfused_grads, reference_grads = (grads for *_, grads in results)
    # Unfused PyTorch's gradient error also in channels_last (other convolution algorithms): see
    # assert_network_gradient_numerics for why a network's gradients are judged against more than one run.
    unfused_nhwc = copy.deepcopy(unfused).to(memory_format=torch.channels_last)
    unfused_nhwc.zero_grad()
    inp = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    googlenet_loss(unfused_nhwc.train()(inp), target).backward()
    unfused_nhwc_grads = {name: p.grad for name, p in unfused_nhwc.named_parameters()}
    assert all(grad is not None for grad in fused_grads.values())
    assert_network_gradient_numerics(fused_grads, [unfused_grads, unfused_nhwc_grads], reference_grads)


def test_sgd_steps_reduce_loss_and_match_step_for_step(device):
    fused, unfused, reference = three_networks(device, dropout=0.0, aux_dropout=0.0)
    x = images(2, FULL_SIZE, device)
    target = torch.randint(0, NUM_CLASSES, (2,), device=device)
    nets = (fused, unfused, reference)
    optimizers = [torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9) for net in nets]
    history = []
    for step in range(4):
        losses = []
        for net, optimizer in zip(nets, optimizers):
            optimizer.zero_grad()
            loss = googlenet_loss(net.train()(x.to(next(net.parameters()).dtype)), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        assert_numerics(*losses, what=f"loss at step {step}")
        history.append(losses[0].item())
    assert history[-1] < history[0] and all(b < a for a, b in zip(history, history[1:])), history
    for (name, p), q, r in zip(fused.named_parameters(), unfused.parameters(), reference.parameters()):
        assert_numerics(p.detach(), q.detach(), r.detach(), what=f"{name} after {len(history)} steps")


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        googlenet(0)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        googlenet("10")
    with pytest.raises(TypeError, match="fused must be a bool"):
        googlenet(fused="yes")
    with pytest.raises(TypeError, match="aux_logits must be a bool"):
        googlenet(aux_logits=1)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        googlenet(dropout=1.0)
    net = googlenet(NUM_CLASSES, aux_logits=False).eval()
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\), got shape \(1, 4, 64, 64\)"):
        net(torch.randn(1, 4, 64, 64))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        net([[1.0]])


def test_exported_from_package():
    assert fused_inception.googlenet is googlenet and fused_inception.googlenet_loss is googlenet_loss
    assert fused_inception.GoogLeNet is fused_inception.models.GoogLeNet
