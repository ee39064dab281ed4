"""What is trained: a model factory (seeded initialisation), a data stream and a fixed loss sample.

``build_task("example:gpt")`` is the tiny GPT of ``smoothprobe.examples`` (size ``test``) on the
standard library's text; ``example:cnn`` the small conv net on scikit-learn digits (trained and
measured with BatchNorm in evaluation semantics, i.e. the fixed affine map of its initial running
statistics, so that the function trained is the function measured); any other name is a
checkpoint loaded with ``load_checkpoint``, fine-tuned from its weights on minibatches of its
``--data`` sample (every seed then starts from the same weights and only the data order varies).

The *training loss* that curves, learning-rate choice and Hessians refer to is the mean loss on a
fixed sample of the training data (``loss_x``, ``loss_y``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from smoothprobe.errors import SmoothprobeError


@dataclass
class Task:
    """One model and its data.

    Attributes:
        name: ``gpt``, ``cnn`` or the checkpoint's name.
        key: content identity (hashed into every cache key).
        make_model: ``make_model(seed)`` → the model at its initialisation for that seed.
        next_batch: ``next_batch(seed, step)`` → (x, y), the training minibatch (same for every
            optimizer at a given seed and step).
        loss_x, loss_y: the fixed training-loss sample.
        loss_fn: ``loss_fn(outputs, targets)`` → mean loss.
        batch_size: examples (sequences) per training minibatch.
        eval_batch: batch size used to split the loss sample.
        n_head: attention heads (Adam-mini's head blocks), None for other models.
        describe: one line for the report.
    """

    name: str
    key: str
    make_model: Callable[[int], nn.Module]
    next_batch: Callable[[int, int], tuple[Any, Any]]
    loss_x: Any
    loss_y: Any
    loss_fn: Callable
    batch_size: int
    eval_batch: int
    n_head: int | None = None
    describe: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mini_partition(self) -> str:
        """Adam-mini's partition: per head (attention models) or per output neuron (``row``)."""
        return "head" if self.n_head else "row"


def _gpt_task(*, loss_sequences: int) -> Task:
    from smoothprobe.data import sample_sequences
    from smoothprobe.examples import gpt_config, text_tokens
    from smoothprobe.models.gpt import GPT, lm_loss

    cfg = gpt_config("test")
    tokens, _ = text_tokens(cfg.vocab_size)
    train = tokens[: int(0.9 * len(tokens))]

    def make_model(seed: int) -> nn.Module:
        model = GPT(cfg)
        model.init_weights(torch.Generator().manual_seed(seed))
        return model

    def next_batch(seed: int, step: int):
        return sample_sequences(
            train, block_size=cfg.block_size, num_sequences=16, seed=seed * 1_000_003 + step + 1
        )

    x, y = sample_sequences(train, block_size=cfg.block_size, num_sequences=loss_sequences, seed=7)
    return Task(
        "gpt",
        f"gpt-test-v1-{loss_sequences}",
        make_model,
        next_batch,
        x,
        y,
        lm_loss,
        16,
        16,
        n_head=cfg.n_head,
        describe=f"tiny nanoGPT-style GPT ({cfg.n_layer} layer, {cfg.n_head} heads, width "
        f"{cfg.n_embd}, context {cfg.block_size}), character-level stdlib text; minibatches of "
        f"16 sequences; training loss on a fixed sample of {loss_sequences} training sequences",
    )


def _cnn_task(*, loss_examples: int) -> Task:
    from smoothprobe.examples import SPECS, digits

    spec = SPECS[("cnn", "test")]
    x, y = digits(image=True)
    train_x, train_y = x[:1000], y[:1000]

    def make_model(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return spec.make_model()

    def next_batch(seed: int, step: int):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
        idx = torch.randint(len(train_x), (64,), generator=gen)
        return train_x[idx], train_y[idx]

    return Task(
        "cnn",
        f"cnn-test-v1-{loss_examples}",
        make_model,
        next_batch,
        train_x[:loss_examples],
        train_y[:loss_examples],
        F.cross_entropy,
        64,
        48,
        describe="small CNN (conv-BatchNorm-SiLU ×2, 8 and 16 channels, linear head) on "
        "scikit-learn digits 8×8; BatchNorm in evaluation semantics for training and measuring; "
        f"minibatches of 64; training loss on the first {loss_examples} training images",
    )


def _checkpoint_task(path: str, *, data_path: str | None, batch_size: int) -> Task:
    from smoothprobe.checkpoints import DataOptions, load_checkpoint

    loaded = load_checkpoint(path, data=DataOptions(path=data_path, batch_size=batch_size))
    problem = loaded.problem
    xs = [b.inputs for b in problem.batches]
    ys = [b.targets for b in problem.batches]
    if not all(isinstance(t, torch.Tensor) for t in xs + ys):
        raise SmoothprobeError(
            f"{path}: reproduce needs tensor inputs and targets to draw minibatches from"
        )
    pool_x, pool_y = torch.cat(xs), torch.cat(ys)
    model = problem.model

    def make_model(seed: int) -> nn.Module:
        return copy.deepcopy(model)

    def next_batch(seed: int, step: int):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
        idx = torch.randint(len(pool_x), (min(batch_size, len(pool_x)),), generator=gen)
        return pool_x[idx], pool_y[idx]

    digest = hashlib.sha256(f"{loaded.sha256}|{data_path}|{batch_size}".encode()).hexdigest()
    return Task(
        loaded.path.rsplit("/", 1)[-1],
        f"ckpt-{digest[:16]}",
        make_model,
        next_batch,
        pool_x,
        pool_y,
        problem.loss_fn,
        batch_size,
        batch_size,
        n_head=loaded.n_head,
        describe=f"checkpoint {loaded.path} ({loaded.kind}), fine-tuned from its weights on "
        f"minibatches of {batch_size} drawn from its {len(pool_x)}-example sample "
        f"({data_path or 'built-in data'})",
    )


def build_task(
    model: str, *, data_path: str | None = None, quick: bool = False, batch_size: int = 16
) -> Task:
    """The task for ``--model``: ``example:gpt``, ``example:cnn`` or a checkpoint path.

    Raises:
        SmoothprobeError: unknown example or unloadable checkpoint.
    """
    if model == "example:gpt":
        return _gpt_task(loss_sequences=8 if quick else 32)
    if model == "example:cnn":
        return _cnn_task(loss_examples=48 if quick else 64)
    if model.startswith("example:"):
        raise SmoothprobeError(f"unknown model {model!r}: use example:gpt, example:cnn or a path")
    return _checkpoint_task(model, data_path=data_path, batch_size=batch_size)
