"""Small trained example problems with exact dense Hessians: for tests, benchmarks and the README.

``build_example(name)`` trains a tiny model for a few seconds (seeded, deterministic on one
machine) and returns a Problem on a fixed evaluation sample split into batches of *unequal* size.

=====  ===========================================  ==============  ==================
name   model                                        data            d (test / bench)
=====  ===========================================  ==============  ==================
mlp    tanh MLP 64-32-10 / 64-160-96-10             sklearn digits  2,410 / 26,826
cnn    conv-BatchNorm-SiLU ×2 / ×3, linear head     sklearn digits  1,946 / 26,090
gpt    nanoGPT-style, LayerNorm, tied embeddings    stdlib text     2,676 / 28,544
=====  ===========================================  ==============  ==================

The digits data needs scikit-learn (``pip install smoothprobe[test]``); the GPT needs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from smoothprobe.data import CharVocab, sample_sequences, stdlib_text
from smoothprobe.errors import SmoothprobeError
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe.models.small import MLP, SmallCNN
from smoothprobe.problem import Problem, problem_from_module

SIZES = ("test", "bench")


@dataclass(frozen=True)
class ExampleSpec:
    """How one example is built: model factory, data, training length, evaluation batching."""

    make_model: Callable[[], nn.Module]
    data: str  # "digits" or "text"
    steps: int
    lr: float
    batch_size: int  # evaluation batch size (the last batch is smaller)
    eval_size: int  # examples (sequences for the GPT) in the evaluation sample


def gpt_config(size: str) -> GPTConfig:
    """The tiny GPT configurations of the examples and the demo."""
    if size == "test":
        return GPTConfig(block_size=16, vocab_size=48, n_layer=1, n_head=2, n_embd=12, bias=True)
    return GPTConfig(block_size=32, vocab_size=64, n_layer=2, n_head=4, n_embd=32, bias=True)


SPECS: dict[tuple[str, str], ExampleSpec] = {
    ("mlp", "test"): ExampleSpec(lambda: MLP((64, 32, 10)), "digits", 150, 1e-2, 100, 250),
    ("mlp", "bench"): ExampleSpec(lambda: MLP((64, 160, 96, 10)), "digits", 150, 3e-3, 100, 250),
    ("cnn", "test"): ExampleSpec(lambda: SmallCNN((8, 16)), "digits", 60, 1e-2, 40, 100),
    ("cnn", "bench"): ExampleSpec(lambda: SmallCNN((16, 32, 64)), "digits", 40, 3e-3, 40, 100),
    ("gpt", "test"): ExampleSpec(lambda: GPT(gpt_config("test")), "text", 150, 1e-2, 12, 30),
    ("gpt", "bench"): ExampleSpec(lambda: GPT(gpt_config("bench")), "text", 150, 3e-3, 12, 30),
}


def digits(*, image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8×8 digits, scaled to [0, 1] (first 1,000 train, rest eval).

    Raises:
        SmoothprobeError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SmoothprobeError(
            "the mlp/cnn examples need scikit-learn: pip install 'smoothprobe[test]'"
        ) from None
    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return (x.view(-1, 1, 8, 8) if image else x), y


def text_tokens(vocab_size: int) -> tuple[np.ndarray, CharVocab]:
    """Standard-library text encoded with a character vocabulary of ``vocab_size`` ids."""
    text = stdlib_text(max_chars=200_000)
    vocab = CharVocab.from_text(text, size=vocab_size)
    return vocab.encode(text), vocab


def train_adam(
    model: nn.Module,
    loss_fn: Callable,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    lr: float,
    on_step: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Trains ``model`` in place with Adam (train mode), then puts it in eval mode.

    Args:
        model: the model.
        loss_fn: ``loss_fn(outputs, targets)``.
        next_batch: ``next_batch(step) -> (x, y)``; must be seeded by the caller.
        steps: optimizer steps.
        lr: learning rate.
        on_step: called with (step, loss) after every step.

    Returns:
        The model.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x, y = next_batch(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.item())
    return model.eval()


@functools.lru_cache(maxsize=16)
def _trained(name: str, size: str, seed: int) -> tuple[dict[str, torch.Tensor], tuple, tuple]:
    """Trains an example once per process; returns its state and its evaluation data."""
    spec = SPECS[(name, size)]
    torch_gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG: isolate it
        torch.manual_seed(seed)
        model = spec.make_model()
    if isinstance(model, GPT):
        model.init_weights(torch_gen)
        cfg = model.config
        tokens, _ = text_tokens(cfg.vocab_size)
        split = int(0.9 * len(tokens))
        train, held = tokens[:split], tokens[split:]

        def next_batch(step: int):
            return sample_sequences(
                train, block_size=cfg.block_size, num_sequences=16, seed=seed * 100_003 + step
            )

        train_adam(model, lm_loss, next_batch, steps=spec.steps, lr=spec.lr)
        eval_x, eval_y = sample_sequences(
            held, block_size=cfg.block_size, num_sequences=30, seed=seed
        )
    else:
        x, y = digits(image=isinstance(model, SmallCNN))
        held = slice(1000, 1000 + spec.eval_size)
        train_x, train_y, eval_x, eval_y = x[:1000], y[:1000], x[held], y[held]

        def next_batch(step: int):
            idx = torch.randint(1000, (128,), generator=torch_gen)
            return train_x[idx], train_y[idx]

        train_adam(model, F.cross_entropy, next_batch, steps=spec.steps, lr=spec.lr)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, (eval_x,), (eval_y,)


def build_model(name: str, *, size: str = "test", seed: int = 0) -> nn.Module:
    """The trained example model (eval mode, float32)."""
    _check(name, size)
    state, _, _ = _trained(name, size, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SPECS[(name, size)].make_model()
    model.load_state_dict(state)
    return model.eval()


def build_example(
    name: str, *, size: str = "test", seed: int = 0, dtype: torch.dtype | str = torch.float64
) -> Problem:
    """A trained example Problem.

    Args:
        name: ``"mlp"``, ``"cnn"`` or ``"gpt"``.
        size: ``"test"`` (d ≈ 2–3k: dense Hessian in seconds) or ``"bench"`` (d ≈ 25–30k).
        seed: seed of initialization, training batches and the evaluation sample.
        dtype: compute dtype (float64 for ground truth).

    Returns:
        The Problem, on an evaluation sample in batches of unequal size.

    Raises:
        SmoothprobeError: unknown name or size.
    """
    model = build_model(name, size=size, seed=seed)
    _, (x,), (y,) = _trained(name, size, seed)
    spec = SPECS[(name, size)]
    loss = lm_loss if name == "gpt" else F.cross_entropy
    return problem_from_module(model, loss, (x, y), batch_size=spec.batch_size, dtype=dtype)


@functools.lru_cache(maxsize=4)
def _exact_hessian(name: str, size: str, seed: int) -> torch.Tensor:
    from smoothprobe.linear_operator import dense_matrix

    problem = build_example(name, size=size, seed=seed, dtype=torch.float64)
    return dense_matrix(problem.hvp_operator(), chunk=128)


def exact_hessian(name: str, *, size: str = "test", seed: int = 0) -> torch.Tensor:
    """The dense float64 Hessian of ``build_example(name, size=size, seed=seed)`` (cached).

    Returns a fresh copy (d, d); symmetric to float64 round-off.
    """
    _check(name, size)
    return _exact_hessian(name, size, seed).clone()


def _check(name: str, size: str) -> None:
    if (name, size) not in SPECS:
        names = sorted({n for n, _ in SPECS})
        raise SmoothprobeError(
            f"unknown example {name!r} (size {size!r}): names {names}, sizes {list(SIZES)}"
        )
