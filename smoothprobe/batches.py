"""The fixed evaluation sample: batches of (inputs, targets) with a weight each.

L(θ) = Σ_b w_b·ℓ_b(θ) / Σ_b w_b, where ℓ_b is the batch's mean loss and w_b its number of
examples (or of scored target tokens for language models), so that unequal batches define one
function. A token is scored when its target is a class id (≥ 0) other than the loss's ignore
index (e.g. 255 in segmentation data), exactly as the loss itself counts it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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


TORCH_IGNORE_INDEX = -100  # the default of F.cross_entropy and F.nll_loss


def loss_ignore_index(loss_fn: Any) -> int:
    """The target value a loss skips: its ``ignore_index`` (attribute, partial or default).

    Reads ``loss_fn.ignore_index`` (``nn.CrossEntropyLoss``, ``nn.NLLLoss``, or a function given
    that attribute), a ``functools.partial``'s keyword, or the default of an ``ignore_index``
    parameter; otherwise PyTorch's −100.
    """
    value = getattr(loss_fn, "ignore_index", None)
    if isinstance(value, int):
        return value
    if isinstance(loss_fn, functools.partial):
        if isinstance(loss_fn.keywords.get("ignore_index"), int):
            return loss_fn.keywords["ignore_index"]
        return loss_ignore_index(loss_fn.func)
    try:
        parameter = inspect.signature(loss_fn).parameters.get("ignore_index")
    except (TypeError, ValueError):
        parameter = None
    if parameter is not None and isinstance(parameter.default, int):
        return parameter.default
    return TORCH_IGNORE_INDEX


def counts_tokens(targets: Any) -> bool:
    """Integer targets with a sequence (or pixel) dimension are weighted per scored token."""
    return (
        isinstance(targets, torch.Tensor) and targets.ndim >= 2 and not targets.is_floating_point()
    )


def weight_unit(targets: Any) -> Literal["tokens", "examples"]:
    """What ``default_weight`` counts for these targets."""
    return "tokens" if counts_tokens(targets) else "examples"


def scored_targets(targets: torch.Tensor, *, ignore_index: int) -> torch.Tensor:
    """Boolean mask of the targets a classification loss scores: not the ignore index, and not
    negative (no class has a negative id; losses such as Hugging Face's skip every one)."""
    return (targets >= 0) & (targets != ignore_index)


def default_weight(targets: Any, *, ignore_index: int = TORCH_IGNORE_INDEX) -> float:
    """Number of examples, or of scored tokens for integer targets with a sequence dimension.

    Args:
        targets: a batch's targets.
        ignore_index: target value the loss skips (not counted); pass the loss's own
            (``loss_ignore_index(loss_fn)``): −100 for PyTorch's cross-entropy, −1 for nanoGPT's,
            255 for many segmentation datasets.
    """
    if isinstance(targets, torch.Tensor):
        if counts_tokens(targets):
            return float(scored_targets(targets, ignore_index=ignore_index).sum().item())
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
    weight_fn: Callable[[Any], float] | None = None,
    ignore_index: int = TORCH_IGNORE_INDEX,
) -> list[Batch]:
    """Normalizes user data into a fixed list of weighted batches.

    Args:
        data: a pair of tensors (X, Y) split into batches of ``batch_size``; a list of
            (inputs, targets) tuples or dicts; or any iterable of those (e.g. a DataLoader, read
            once so the sample stays fixed).
        batch_size: examples per batch when ``data`` is a pair of tensors (default: all).
        num_batches: keep at most this many batches.
        weight_fn: batch weight from its targets (default: ``default_weight`` with
            ``ignore_index``).
        ignore_index: target value the loss skips, when ``weight_fn`` is the default.

    Returns:
        The batches.

    Raises:
        DataError: for empty data or an unrecognized batch format.
    """
    if weight_fn is None:
        weight_fn = functools.partial(default_weight, ignore_index=ignore_index)
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
