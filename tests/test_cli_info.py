"""``info`` says what the sample weight counts and what it is for (issue 16.14)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from smoothprobe_cli.main import cli


def test_token_weight_is_named(nanogpt_run):
    ckpt, data = nanogpt_run
    args = ["info", str(ckpt), "--data", str(data), "--batch-size", "2", "--num-batches", "2"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    lines = result.output.splitlines()
    # 2 batches × 2 sequences × block_size 8 = 32 next-token targets, all scored
    assert lines[3] == (
        "sample      2 batches, 32 scored tokens (each batch's mean loss is weighted by its "
        "scored tokens, so the loss is the mean over all 32 tokens)"
    )
    summary = json.loads(CliRunner().invoke(cli, [*args, "--format", "json"]).output)
    assert summary["sample_weight"] == 32 and summary["sample_weight_unit"] == "tokens"


def test_example_weight_is_named():
    result = CliRunner().invoke(cli, ["info", "example:mlp"], catch_exceptions=False)
    assert (
        "sample      3 batches, 250 examples (each batch's mean loss is weighted by its "
        "examples, so the loss is the mean over all 250 examples)"
    ) in result.output.splitlines()
