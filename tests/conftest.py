"""Shared fixtures: dense float64 test matrices with known answers, and a nanoGPT-style run.

The matrix factories are plain functions (``from conftest import hessian_like``) so that
parametrised tests and registries can call them at collection time; every one is symmetric
float64 and seeded. ``TEST_MATRICES`` names the ones the contract and coverage tests sweep,
including skewed ones (a few columns carry most of ‖H‖₁,₁), where sampling estimators are at
their worst.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from smoothprobe.data import CharVocab, stdlib_text, write_token_file
from smoothprobe.layout import ParameterLayout
from smoothprobe.models.gpt import GPT, GPTConfig

# One intra-op thread per test process: the models are tiny, and CI runs two pytest-xdist workers
# on two cores (more threads than cores makes OpenMP spin and slows everything down).
torch.set_num_threads(1)
os.environ["SMOOTHPROBE_THREADS"] = "1"  # what the CLI sets, in CliRunner tests too


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hessian_like(d: int, seed: int, *, spread: float = 1.2) -> torch.Tensor:
    """Low rank + noise with row scales spanning decades (like network Hessians).

    ``spread`` is the log-scale standard deviation of the row scales: 1.2 spans about two
    decades; 2.5 is *skewed*: a handful of columns carry most of ‖H‖₁,₁.
    """
    g = _gen(seed)
    scale = torch.exp(torch.randn(d, generator=g, dtype=torch.float64) * spread)
    a = torch.randn(d, 6, generator=g, dtype=torch.float64) * scale[:, None]
    noise = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.05
    return a @ a.T / 6 + (noise + noise.T) * torch.outer(scale, scale)


def skewed(d: int, seed: int) -> torch.Tensor:
    """``hessian_like`` with log-scale spread 2.5: heavy-tailed column norms."""
    return hessian_like(d, seed, spread=2.5)


def diag_dominant(d: int, seed: int) -> torch.Tensor:
    """A strongly diagonally dominant matrix (diagonal in [0.5, 1.5], off-diagonal ~0.01)."""
    g = _gen(seed)
    off = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.01
    return torch.diag(torch.rand(d, generator=g, dtype=torch.float64) + 0.5) + off + off.T


def scaled_symmetric(d: int, seed: int, *, spread: float = 1.0) -> torch.Tensor:
    """(A + Aᵀ)/2 with Gaussian A, rows and columns scaled by lognormal factors."""
    g = _gen(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    s = torch.exp(spread * torch.randn(d, generator=g, dtype=torch.float64))
    return (a + a.T) / 2 * torch.outer(s, s)


def spiked(d: int, seed: int) -> torch.Tensor:
    """Random eigenvectors, eigenvalues 30, 12, −7 above a standard normal bulk (indefinite)."""
    g = _gen(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eigs = torch.cat(
        [
            torch.tensor([30.0, 12.0, -7.0], dtype=torch.float64),
            torch.randn(d - 3, generator=g, dtype=torch.float64),
        ]
    )
    h = (q * eigs) @ q.T
    return (h + h.T) / 2


def layout_of(d: int) -> ParameterLayout:
    """Three tensors (a matrix, a bias, a vector) covering d coordinates (d ≥ 16)."""
    a = d // 2
    return ParameterLayout.from_shapes(
        [("w", (a // 4, 4)), ("b", (a - 4 * (a // 4),)), ("v", (d - a,))]
    )


TEST_MATRICES = {
    "hessian-like": hessian_like,
    "skewed": skewed,
    "diag-dominant": diag_dominant,
    "spiked": spiked,
}


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
