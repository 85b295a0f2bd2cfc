"""The main job, `python -m fused_inception demo`: its table and its exit code."""

import os
import subprocess
import sys

import pytest
import torch

import fused_inception.__main__ as cli
from fused_inception import BLOCKS_BY_NAME, GOOGLENET_BLOCKS, FusedInception, demo, googlenet
from fused_inception.testing import float64_copy

pytest.importorskip("torchvision", reason="the demo fuses torchvision's GoogLeNet too")

# Small and quick: the checks and the table are the same at any input size the network takes.
QUICK = ["--image-size", "96", "--batch-sizes", "1", "--repeats", "1"]
MODELS = ("reference", "torchvision")


def rows(output, model):
    """{module: table row} of the numerics table for one model."""
    return {line.split()[1]: line for line in output.splitlines() if line.startswith(f"{model} ")
            and len(line.split()) == 7}


def test_demo_passes_and_prints_the_tables():
    result = subprocess.run([sys.executable, "-m", "fused_inception", "demo", *QUICK], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "backend: " in out and "all checks passed" in out
    for model in MODELS:
        assert f"[{model}] fuse: replaced 9 Inception block(s)" in out
        table = rows(out, model)
        assert list(table) == [f"inception{c.name}" for c in GOOGLENET_BLOCKS] + ["logits"]
        assert all(line.endswith(" ok") for line in table.values())
        timing = [line.split() for line in out.splitlines() if line.startswith(f"{model} ") and len(line.split()) == 5]
        assert [t[1] for t in timing] == ["1"] and timing[0][4].endswith("x")


def test_demo_fails_on_a_mismatching_fused_block(monkeypatch, capsys):
    real_forward = FusedInception.forward
    broken = BLOCKS_BY_NAME["4c"].block_args

    def perturbed_forward(self, x):
        out = real_forward(self, x)
        return out + 1e-3 * out.abs().max() if self.block_args == broken else out

    monkeypatch.setattr(FusedInception, "forward", perturbed_forward)
    assert cli.main(["demo", *QUICK]) == 1
    out = capsys.readouterr().out
    for model in MODELS:
        table = rows(out, model)
        assert table["inception4c"].endswith(" FAIL") and table["logits"].endswith(" FAIL")
        assert table["inception3a"].endswith(" ok") and table["inception5b"].endswith(" ok")
    assert "4 check(s) FAILED" in out and "reference inception4c: error" in out


def test_demo_rejects_an_input_too_small_for_the_network(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--image-size", "30"])
    assert exit_info.value.code == 2
    assert "--image-size: must be at least 31, got 30" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "--device tpu: not a device (cpu, cuda, cuda:N)"),
    (["--device", "mps"], "--device mps: the demo runs on cpu or cuda only"),
    (["--batch-sizes", "-1"], "--batch-sizes: must be a positive integer, got -1"),
    (["--batch-sizes", "1", "0"], "--batch-sizes: must be a positive integer, got 0"),
    (["--repeats", "0"], "--repeats: must be a positive integer, got 0"),
    (["--repeats", "two"], "--repeats: not an integer: 'two'"),
])
def test_demo_rejects_bad_arguments_like_bench(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a CUDA device")
def test_demo_rejects_cuda_without_a_device(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda: no CUDA device is available here" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reference_googlenet_runs_low_precision_on_cpu(dtype):
    # PyTorch's LocalResponseNorm has no float16/bfloat16 CPU kernel; the model's computes those in float32.
    torch.manual_seed(0)
    model = googlenet(aux_logits=False).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        out = model.to(dtype)(x.to(dtype))
        reference = float64_copy(model)(x.double())
    assert out.dtype == dtype
    # Within float32-computed LRN's reach of the float64 model: a few low-precision rounding steps.
    torch.testing.assert_close(out.double(), reference, atol=0.05 * reference.abs().max().item(), rtol=0)
    features = torch.randn(1, 8, 5, 5)
    low = model.stem.norm1(features.to(dtype))
    assert low.dtype == dtype
    torch.testing.assert_close(low, torch.nn.functional.local_response_norm(features, 5, 1e-4, 0.75, 1.0).to(dtype))


def test_demo_runs_float16_on_cpu_and_times_a_folded_torchvision_baseline():
    result = subprocess.run([sys.executable, "-m", "fused_inception", "demo", *QUICK, "--dtype", "float16"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "torchvision's unfused model is timed with its BatchNorm folded" in result.stdout


def test_fold_batchnorm_keeps_the_output_and_removes_every_batchnorm():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    demo.calibrate_batchnorm(model, 64)
    model.eval()
    folded = demo.fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the argument is untouched
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
