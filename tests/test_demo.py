"""The main job, `python -m fused_inception demo`: its table and its exit code."""

import os
import subprocess
import sys

import pytest

import fused_inception.__main__ as cli
from fused_inception import BLOCKS_BY_NAME, GOOGLENET_BLOCKS, FusedInception

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
