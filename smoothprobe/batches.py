"""The fixed evaluation sample: batches of (inputs, targets) with a weight each.

L(θ) = Σ_b w_b·ℓ_b(θ) / Σ_b w_b, where ℓ_b is the batch's mean loss and w_b its number of
examples (or of target tokens for language models), so that unequal batches define one function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smoothprobe.errors import DataError


@dataclass(frozen=True)
class Batch:
    """One batch of the evaluation sample.

    Attributes:
        inputs: a tensor, a tuple of tensors (passed positionally) or a dict (passed by keyword).
        targets: what the loss function compares the model output with.
        weight: the batch's share of the sample (examples or tokens).
    """

    inputs: Any
    targets: Any
    weight: float


def default_weight(targets: Any) -> float:
    """Number of examples, or of scored tokens for integer targets with a sequence dimension.

    Tokens with a negative id (nanoGPT's ignore index -1, Hugging Face's -100) are not counted.
    """
    if isinstance(targets, torch.Tensor):
        if targets.ndim >= 2 and not targets.is_floating_point():
            return float((targets >= 0).sum().item())
        return float(targets.shape[0]) if targets.ndim else 1.0
    if isinstance(targets, Sequence):
        return float(len(targets))
    raise DataError(
        f"cannot infer a batch weight from targets of type {type(targets).__name__}; "
        "pass weight_fn="
    )


def _split_pair(item: Any) -> tuple[Any, Any]:
    """Accepts (x, y), [x, y] or a dict with x/y, inputs/targets or input_ids/labels keys."""
    if isinstance(item, Mapping):
        for xk, yk in (("x", "y"), ("inputs", "targets"), ("input_ids", "labels")):
            if xk in item and yk in item:
                return item[xk], item[yk]
        raise DataError(
            f"batch dict has keys {sorted(item)}; expected x/y, inputs/targets or input_ids/labels"
        )
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise DataError(f"a batch must be (inputs, targets) or a dict, got {type(item).__name__}")


def make_batches(
    data: Any,
    *,
    batch_size: int | None = None,
    num_batches: int | None = None,
    weight_fn: Callable[[Any], float] = default_weight,
) -> list[Batch]:
    """Normalizes user data into a fixed list of weighted batches.

    Args:
        data: a pair of tensors (X, Y) split into batches of ``batch_size``; a list of
            (inputs, targets) tuples or dicts; or any iterable of those (e.g. a DataLoader, read
            once so the sample stays fixed).
        batch_size: examples per batch when ``data`` is a pair of tensors (default: all).
        num_batches: keep at most this many batches.
        weight_fn: batch weight from its targets.

    Returns:
        The batches.

    Raises:
        DataError: for empty data or an unrecognized batch format.
    """
    if batch_size is not None and batch_size < 1:
        raise DataError(f"batch size must be ≥ 1, got {batch_size}")
    if num_batches is not None and num_batches < 1:
        raise DataError(f"number of batches must be ≥ 1, got {num_batches}")
    pairs: list[tuple[Any, Any]] = []
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    ):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise DataError(f"inputs have {x.shape[0]} examples but targets {y.shape[0]}")
        step = batch_size or max(1, x.shape[0])
        pairs = [(x[i : i + step], y[i : i + step]) for i in range(0, x.shape[0], step)]
    elif isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, bytes)):
        for item in data:
            pairs.append(_split_pair(item))
            if num_batches is not None and len(pairs) >= num_batches:
                break
    else:
        raise DataError(
            f"unsupported data of type {type(data).__name__}: pass (X, Y) tensors, "
            "a list of (x, y) batches, or a DataLoader"
        )
    if num_batches is not None:
        pairs = pairs[:num_batches]
    batches = [Batch(x, y, float(weight_fn(y))) for x, y in pairs]
    batches = [b for b in batches if b.weight > 0]
    if not batches:
        raise DataError("the evaluation sample is empty: give at least one example")
    return batches
