"""The demo's training: standard-library text as nanoGPT data, and a tiny GPT trained with Adam.

The training is seeded and single-threaded (deterministic) and saves nanoGPT-style checkpoints
``ckpt_NNNNNN.pt`` at evenly spaced steps (``checkpoint_steps``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothprobe.data import (
    CharVocab,
    python_version_tag,
    sample_sequences,
    stdlib_text,
    write_token_file,
)
from smoothprobe.demo_budget import DemoBudget
from smoothprobe.errors import SmoothprobeError
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss

DATASET = "stdlib_char"


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` distinct steps spaced evenly in (0, steps], the last one ``steps``.

    Raises:
        SmoothprobeError: ``steps`` < 1 or ``count`` < 1.
    """
    if steps < 1 or count < 1:
        raise SmoothprobeError(f"steps={steps} and checkpoints={count} must both be ≥ 1")
    return sorted({max(1, round(steps * (i + 1) / count)) for i in range(count)})


def prepare_data(work_dir: Path, *, vocab_size: int, max_chars: int) -> tuple[np.ndarray, Path]:
    """Writes ``train.bin``, ``val.bin`` and ``meta.pkl`` of standard-library text.

    Args:
        work_dir: target directory.
        vocab_size: character vocabulary size (the rarest characters share one id).
        max_chars: characters of text.

    Returns:
        (training tokens, path of ``val.bin``).
    """
    text = stdlib_text(max_chars=max_chars)
    vocab = CharVocab.from_text(text, size=vocab_size)
    tokens = vocab.encode(text)
    split = int(0.9 * len(tokens))
    write_token_file(work_dir / "train.bin", tokens[:split], meta=vocab.meta())
    write_token_file(work_dir / "val.bin", tokens[split:])
    return tokens[:split], work_dir / "val.bin"


def learning_rate(step: int, *, lr: float, warmup: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


def nanogpt_checkpoint(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    val_loss: float,
    config: dict[str, Any],
) -> dict[str, Any]:
    """The dict nanoGPT's ``train.py`` saves as ``ckpt.pt``."""
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "model_args": dataclasses.asdict(model.config),
        "iter_num": step,
        "best_val_loss": val_loss,
        "config": config,
    }


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary sibling, then rename: complete or absent."""
    from smoothprobe.atomic import atomic_write

    atomic_write(path, lambda fh: torch.save(obj, fh))


@torch.no_grad()
def evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean loss of ``model`` on (x, y) in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    loss = float(lm_loss(model(x), y))
    model.train(was_training)
    return loss


def train(
    work_dir: Path,
    tokens: np.ndarray,
    val_path: Path,
    *,
    budget: DemoBudget,
    steps: int,
    seed: int,
    progress: bool,
) -> list[Path]:
    """Trains the demo GPT with Adam and saves nanoGPT-style checkpoints.

    Args:
        work_dir: where ``ckpt_NNNNNN.pt`` go.
        tokens: training tokens.
        val_path: held-out tokens (for the validation loss stored in each checkpoint).
        budget: model and training settings.
        steps: Adam steps.
        seed: seed of initialization and batches.
        progress: tqdm bar on stderr.

    Returns:
        The checkpoint paths in training order.
    """
    from tqdm import tqdm

    config = GPTConfig.from_model_args(budget.model)
    block = config.block_size
    with torch.random.fork_rng(devices=[]):  # module construction draws from the global RNG
        torch.manual_seed(seed)
        model = GPT(config)
    model.init_weights(torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    val_tokens = np.fromfile(val_path, dtype=np.uint16)
    val_x, val_y = sample_sequences(val_tokens, block_size=block, num_sequences=64, seed=seed)
    run_config = {
        "dataset": DATASET,
        "python": python_version_tag(),
        "max_chars": budget.max_chars,
        "max_iters": steps,
        "learning_rate": budget.lr,
        "warmup_iters": budget.warmup,
        "batch_size": budget.train_batch,
        "block_size": block,
        "seed": seed,
        "optimizer": "adam",
        "beta1": 0.9,
        "beta2": 0.999,
        "weight_decay": 0.0,
        "budget": budget.name,
    }
    save_at = set(checkpoint_steps(steps, budget.checkpoints))
    paths: list[Path] = []
    model.train()
    bar = tqdm(
        range(1, steps + 1),
        desc="training",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, lr=budget.lr, warmup=budget.warmup)
        x, y = sample_sequences(
            tokens, block_size=block, num_sequences=budget.train_batch, seed=seed * 1_000_003 + step
        )
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step in save_at:
            val = evaluate(model, val_x, val_y)
            path = work_dir / f"ckpt_{step:06d}.pt"
            save_atomic(
                nanogpt_checkpoint(model, optimizer, step=step, val_loss=val, config=run_config),
                path,
            )
            paths.append(path)
            if progress:
                bar.write(
                    f"[smoothprobe demo] step {step}: train loss {loss.item():.3f}, "
                    f"val loss {val:.3f} → {path}",
                    file=sys.stderr,
                )
    bar.close()
    return paths
