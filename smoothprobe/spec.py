"""User specs: Python code that builds the model, the loss and the data for a plain state dict.

A spec is a Python file (``--spec my_spec.py``, function ``smoothprobe_spec``) or an importable
``module:function`` (``--spec mypkg.probe:spec``). The function is called with keyword arguments
and returns a dict::

    def smoothprobe_spec(*, data_path, batch_size, num_batches, seed):
        model = MyNet()                       # architecture only: weights come from the checkpoint
        x, y = load_my_eval_set(data_path)    # or any fixed sample
        return {
            "model": model,
            "loss_fn": torch.nn.functional.cross_entropy,   # (outputs, targets) -> mean loss
            "data": (x, y),                   # optional: default reads --data as .pt/.npz (x, y)
            "forward": None,                  # optional: forward(model, inputs) -> outputs
            "n_head": None,                   # optional: attention heads, for --blocks head
            "ignore_index": None,             # optional: target the loss skips (default: the
                                              #   loss's own, -100 for cross-entropy)
            "optimizer_order": None,          # optional: parameter names in the order the
        }                                     #   optimizer was built (Adam preconditioner)

``data`` may be (X, Y) tensors (split by ``batch_size``), a list of (x, y) batches or dicts, or a
DataLoader (read once, so the sample is fixed).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from smoothprobe.batches import Batch, loss_ignore_index, make_batches
from smoothprobe.data import load_tensor_file
from smoothprobe.errors import DataError, SmoothprobeError


@dataclass
class BuiltSpec:
    """What a spec built."""

    model: nn.Module
    loss_fn: Callable[[Any, Any], Any]
    batches: list[Batch]
    forward: Callable[[nn.Module, Any], Any] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    optimizer_order: tuple[str, ...] | None = None
    ignore_index: int | None = None


def _resolve(spec: str) -> Callable[..., dict]:
    """Finds the spec function from ``file.py[:function]`` or ``module:function``."""
    target, _, func = spec.partition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.exists():
            raise SmoothprobeError(f"spec file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(f"_smoothprobe_spec_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise SmoothprobeError(
                f"spec {path} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        func = func or "smoothprobe_spec"
    else:
        if not func:
            raise SmoothprobeError(
                f"spec {spec!r}: use path/to/spec.py or module:function", option="spec"
            )
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SmoothprobeError(
                f"spec {spec!r}: cannot import {target} ({exc})", option="spec"
            ) from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SmoothprobeError(f"spec {spec!r}: no function {func!r} in {target}", option="spec")
    return fn


def load_spec(spec: str, *, data) -> BuiltSpec:
    """Runs a spec and validates what it returns.

    Args:
        spec: ``file.py``, ``file.py:function`` or ``module:function``.
        data: ``DataOptions`` (path, batch_size, num_batches, seed).

    Returns:
        The built model, loss and batches.

    Raises:
        SmoothprobeError: the spec cannot be found, fails, or returns something incomplete.
    """
    fn = _resolve(spec)
    try:
        out = fn(
            data_path=data.path,
            batch_size=data.batch_size,
            num_batches=data.num_batches,
            seed=data.seed,
        )
    except SmoothprobeError:
        raise
    except Exception as exc:
        raise SmoothprobeError(f"spec {spec} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(out, dict) or "model" not in out or "loss_fn" not in out:
        raise SmoothprobeError(
            f"spec {spec} must return a dict with at least 'model' and 'loss_fn'"
        )
    if not isinstance(out["model"], nn.Module):
        raise SmoothprobeError(f"spec {spec}: 'model' must be a torch.nn.Module")
    samples = out.get("data")
    if samples is None:
        if data.path is None:
            raise DataError(
                f"spec {spec} returned no data: give a data file x_y.pt (or .npz with x, y)",
                option="data_path",
            )
        samples = load_tensor_file(data.path)
    ignore_index = out.get("ignore_index")
    if ignore_index is None:
        ignore_index = loss_ignore_index(out["loss_fn"])
    batches = make_batches(
        samples,
        batch_size=data.batch_size,
        num_batches=data.num_batches,
        ignore_index=ignore_index,
    )
    args = {"n_head": out["n_head"]} if out.get("n_head") else {}
    order = out.get("optimizer_order")
    return BuiltSpec(
        out["model"],
        out["loss_fn"],
        batches,
        out.get("forward"),
        args,
        tuple(order) if order is not None else None,
        ignore_index,
    )
