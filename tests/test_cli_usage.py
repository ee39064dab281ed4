"""Every bad option value is a usage error (exit code 2), reported before any work (issue 16.12)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from smoothprobe_cli.main import cli

USAGE = (
    "Usage: smoothprobe measure [OPTIONS] [CHECKPOINT]\n"
    "Try 'smoothprobe measure --help' for help.\n\n"
)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--basis", "nonsense"],
            "Invalid value for '--basis': unknown basis 'nonsense'; use "
            "identity|hadamard|block-haar:K|matrix|permutation|sign (join with '+' to compose)",
        ),
        (
            ["--basis", "block-haar"],
            "Invalid value for '--basis': basis 'block-haar' needs a chunk size, "
            "e.g. block-haar:64",
        ),
        (
            ["--method", "vibes"],
            "Invalid value for '--method': unknown (1,1)-norm method 'vibes'; use one of auto, "
            "two-phase, cauchy-median, cauchy-iqr, cauchy-geomean, uniform, stratified, exact",
        ),
        (
            ["--with", "trace,entropy"],
            "Invalid value for '--with': unknown extra quantity 'entropy'; choose from trace, "
            "frobenius, density",
        ),
        (
            ["--blocks", "tensor,("],
            "Invalid value for '--blocks': invalid regex '(' (missing ), unterminated subpattern "
            "at position 0); escape special characters, e.g. 'h\\.0\\.attn', or use one of "
            "singleton|row|head|tensor|layer|one",
        ),
        (
            ["--graddiff", "0.1", "--graddiff-geometry", "("],
            "Invalid value for '--graddiff-geometry': invalid regex '(' (missing ), unterminated "
            "subpattern at position 0); escape special characters, e.g. 'h\\.0\\.attn', or use "
            "one of singleton|row|head|tensor|layer|one",
        ),
        (["--norm", "l3"], None),
        (["--hvps", "0"], None),
    ],
)
def test_bad_values_exit_2_before_the_checkpoint_is_read(tmp_path, args, message):
    # the checkpoint does not exist: a usage error must come first, before any loading
    result = CliRunner().invoke(
        cli, ["measure", str(tmp_path / "missing.pt"), *args], prog_name="smoothprobe"
    )
    assert result.exit_code == 2, result.output
    assert "checkpoint not found" not in result.output
    if message is not None:
        assert result.output == USAGE + "Error: " + message + "\n"


def test_values_that_depend_on_the_model_exit_2_before_measuring(nanogpt_run, monkeypatch):
    ckpt, data = nanogpt_run

    def never(*a, **k):
        raise AssertionError("measured although an option was bad")

    monkeypatch.setattr("smoothprobe.measure.run_measurement", never)
    result = CliRunner().invoke(
        cli,
        ["measure", str(ckpt), "--data", str(data), "--quiet", "--blocks", "nomatch"],
        prog_name="smoothprobe",
    )
    assert result.exit_code == 2, result.output
    assert result.output == USAGE + (
        "Error: Invalid value for '--blocks': regex 'nomatch' matches no parameter name "
        "(e.g. 'transformer.wte.weight'); fix it or use tensor|layer|row|head|one|singleton\n"
    )
