"""Files that are not checkpoints are named for what they are (issue 16.10); underlying errors are
quoted whole, never cut mid-sentence (issue 16.7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from smoothprobe.errors import quoted
from smoothprobe.file_kinds import not_a_checkpoint
from smoothprobe_cli.main import cli

KINDS = (
    "pass a file written by torch.save (.pt/.pth), a .safetensors file, or a Hugging Face "
    "model directory"
)


def info(path):
    return CliRunner().invoke(cli, ["info", str(path)], catch_exceptions=False)


@pytest.mark.parametrize(
    "name, content, what",
    [
        (
            "notes.txt",
            "hello world, a note\n",
            "a text file (it starts with 'hello world, a note')",
        ),
        ("notes.pt", "hello world, a note\n", "a text file (it starts with 'hello world, a note')"),
        ("config.json", '{"n_layer": 2}\n', "a JSON file (it starts with '{\"n_layer\": 2}')"),
        ("config.pt", '{"n_layer": 2}\n', "a JSON file (it starts with '{\"n_layer\": 2}')"),
        (
            "m.jsonl",
            '{"quantity": "loss", "value": 1}\n{"quantity": "d_l2", "value": 2}\n',
            "a JSON-lines file (e.g. smoothprobe records) (it starts with "
            '\'{"quantity": "loss", "value": 1} …\')',
        ),
        (
            "table.csv",
            "step,loss\n1,2.5\n2,2.4\n",
            "a CSV table (it starts with 'step,loss 1,2.5 2,2.4')",
        ),
        ("e.pt", "e\n", "a text file (it starts with 'e')"),
    ],
)
def test_text_files_are_named(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_text(content)
    result = info(path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path} is not a checkpoint: it is {what}; {KINDS}\n"


def test_token_data_given_as_checkpoint(tmp_path):
    path = tmp_path / "train.bin"
    np.arange(1000, dtype=np.uint16).tofile(path)
    result = info(path)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} is not a checkpoint: it is binary data that is neither a torch zip "
        "archive, a pickle nor safetensors (token data such as nanoGPT's train.bin is evaluation "
        f"data, not a checkpoint); {KINDS}\n"
    )


def test_real_checkpoints_are_not_refused(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "new.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, tmp_path / "w.safetensors")
    for name in ("new.pt", "old.pt", "w.safetensors"):
        assert not_a_checkpoint(tmp_path / name) is None, name


def test_truncated_checkpoint_error_is_quoted_whole(tmp_path):
    torch.save({"model": {"w": torch.zeros(100_000)}}, tmp_path / "full.pt")
    blob = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    result = info(tmp_path / "cut.pt")
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith(f"Error: checkpoint {tmp_path / 'cut.pt'} is truncated or corrupt (")
    # torch's own message, whole: it ends with a full sentence, not "there is a high"
    assert line.endswith(".)"), line
    assert "there is a high)" not in line


def test_quoted_keeps_every_word_on_one_line():
    exc = RuntimeError("first sentence.\n  Second sentence, " + "long " * 100 + "end.")
    text = quoted(exc)
    assert "\n" not in text and text.endswith("end.") and text.count("long") == 100
    assert quoted(KeyError()) == "KeyError"
