"""Shared fixtures: a nanoGPT-style run directory made on the spot (checkpoint + token data)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from smoothprobe.data import CharVocab, stdlib_text, write_token_file
from smoothprobe.models.gpt import GPT, GPTConfig

# One intra-op thread per test process: the models are tiny, and CI runs two pytest-xdist workers
# on two cores (more threads than cores makes OpenMP spin and slows everything down).
torch.set_num_threads(1)
os.environ["SMOOTHPROBE_THREADS"] = "1"  # what the CLI sets, in CliRunner tests too

MODEL_ARGS = dict(
    n_layer=1, n_head=2, n_embd=8, block_size=8, bias=True, vocab_size=24, dropout=0.0
)


def make_nanogpt_run(root, *, prefix: str = "", iter_num: int = 100, seed: int = 0):
    """Writes ``root/ckpt.pt`` (nanoGPT format) and ``root/train.bin`` + ``meta.pkl``."""
    text = stdlib_text(max_chars=20_000)
    vocab = CharVocab.from_text(text, size=MODEL_ARGS["vocab_size"])
    write_token_file(root / "train.bin", vocab.encode(text), meta=vocab.meta())
    model = GPT(GPTConfig(**MODEL_ARGS))
    model.init_weights(torch.Generator().manual_seed(seed))
    state = {prefix + k: v for k, v in model.state_dict().items()}
    ckpt = {
        "model": state,
        "model_args": dict(MODEL_ARGS),
        "iter_num": iter_num,
        "best_val_loss": torch.tensor(3.0),
        "config": {"dataset": "none", "batch_size": 4},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
    }
    torch.save(ckpt, root / "ckpt.pt")
    return root / "ckpt.pt", root / "train.bin"


@pytest.fixture
def nanogpt_run(tmp_path):
    """(ckpt path, data path) of a freshly written tiny nanoGPT run."""
    return make_nanogpt_run(tmp_path)


@pytest.fixture
def token_array():
    return np.arange(100, dtype=np.uint16) % 24
