"""Problem: the loss at a checkpoint as a pure function of one flat parameter vector θ ∈ R^d."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from smoothprobe.batches import Batch, loss_ignore_index, make_batches, weight_unit
from smoothprobe.errors import NonDeterministicLossError, NonFiniteError, SmoothprobeError
from smoothprobe.layout import ParameterLayout

LossFn = Callable[[Any, Any], torch.Tensor]

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_dtype(name: str | torch.dtype | None, *, checkpoint_dtype: torch.dtype) -> torch.dtype:
    """Maps a ``--dtype`` value (``checkpoint``, ``float32``, ``float64``, ...) to a torch dtype.

    Raises:
        SmoothprobeError: for an unknown name.
    """
    if name is None or name == "checkpoint":
        return checkpoint_dtype
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise SmoothprobeError(f"unknown dtype {name!r}: use checkpoint, {', '.join(DTYPES)}")
    return DTYPES[name]


def _cast(value: Any, dtype: torch.dtype, device: torch.device | None) -> Any:
    """Moves tensors to ``device`` and floating tensors to ``dtype``, through tuples and dicts."""
    if isinstance(value, torch.Tensor):
        value = value.to(device) if device is not None else value
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype, device) for v in value)
    if isinstance(value, list):
        return [_cast(v, dtype, device) for v in value]
    if isinstance(value, dict):
        return {k: _cast(v, dtype, device) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _eval_semantics(model: nn.Module) -> Iterator[None]:
    """Evaluation mode (dropout off, BatchNorm running statistics) and the exact attention path.

    Restores each submodule's training flag afterwards. The math SDPA backend is forced because
    fused attention kernels have no (exact) double backward.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa = sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # pragma: no cover - older torch
        sdpa = contextlib.nullcontext()
    try:
        with sdpa:
            yield
    finally:
        for m, flag in flags:
            m.training = flag


def layout_of_module(model: nn.Module, *, include_frozen: bool = False) -> ParameterLayout:
    """Reads the trainable tensors of a module, tied tensors counted once.

    Args:
        model: the module.
        include_frozen: also include parameters with ``requires_grad=False``.

    Returns:
        The layout, in ``named_parameters`` order; tied names become aliases.
    """
    seen: dict[int, str] = {}
    shapes: list[tuple[str, tuple[int, ...]]] = []
    aliases: dict[str, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if not (p.requires_grad or include_frozen):
            continue
        key = id(p)
        if key in seen:
            aliases[seen[key]].append(name)
            continue
        seen[key] = name
        aliases[name] = []
        shapes.append((name, tuple(p.shape)))
    if not shapes:
        raise SmoothprobeError(
            "the model has no trainable parameters; pass include_frozen=True to measure "
            "frozen ones",
            option="include_frozen",
        )
    return ParameterLayout.from_shapes(shapes, aliases=aliases)


class Problem:
    """The loss L(θ) on a fixed, weighted evaluation sample, as a function of a flat θ.

    The module is only read: parameters are passed functionally, so probing never mutates it,
    and every evaluation runs with evaluation semantics (see ``_eval_semantics``).

    Args:
        model: the network.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch's mean loss (scalar).
        batches: the evaluation sample (see ``make_batches``).
        dtype: compute dtype (default: the model's parameter dtype).
        device: compute device (default: the model's device).
        include_frozen: measure frozen parameters too.
        forward: ``forward(model, inputs)`` returning outputs; default calls ``model(inputs)``,
            ``model(*inputs)`` for tuples and ``model(**inputs)`` for dicts.
        ignore_index: target value the loss skips (default: ``loss_ignore_index(loss_fn)``);
            per-example weights count the other targets, as the batch weights do.

    Raises:
        SmoothprobeError: no trainable parameters.
        NonFiniteError: NaN or Inf in the parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list[Batch],
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        include_frozen: bool = False,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        ignore_index: int | None = None,
    ):
        first = next(iter(model.parameters()), None)
        self.model = model
        self.loss_fn = loss_fn
        self.ignore_index = loss_ignore_index(loss_fn) if ignore_index is None else ignore_index
        self._runner = _Runner(model, forward or _default_forward)
        self.layout = layout_of_module(model, include_frozen=include_frozen)
        self.dtype = dtype or (first.dtype if first is not None else torch.float32)
        self.device = (
            torch.device(device)
            if device is not None
            else (first.device if first is not None else torch.device("cpu"))
        )
        named = dict(model.named_parameters(remove_duplicate=False))
        with torch.no_grad():
            self.theta = self.layout.flatten(
                {
                    s.name: named[s.name].detach().to(self.device, self.dtype)
                    for s in self.layout.slots
                }
            )
        if not torch.isfinite(self.theta).all():
            bad = [
                s.name for s in self.layout.slots if not torch.isfinite(self.theta[s.slice]).all()
            ]
            raise NonFiniteError(
                f"NaN or Inf in parameters {', '.join(bad[:5])}: the checkpoint "
                "is corrupt or training diverged; measure an earlier checkpoint"
            )
        measured = {n for s in self.layout.slots for n in (s.name, *s.aliases)}
        self.constants = {  # frozen parameters and buffers, carried along unchanged
            n: _cast(t.detach(), self.dtype, self.device)
            for n, t in [
                *model.named_parameters(remove_duplicate=False),
                *model.named_buffers(remove_duplicate=False),
            ]
            if n not in measured
        }
        self.batches = [
            Batch(
                _cast(b.inputs, self.dtype, self.device),
                _cast(b.targets, self.dtype, self.device),
                b.weight,
            )
            for b in batches
        ]
        if not self.batches:
            raise SmoothprobeError("the evaluation sample is empty")
        self.total_weight = float(sum(b.weight for b in self.batches))

    @property
    def d(self) -> int:
        return self.layout.d

    @property
    def num_examples(self) -> float:
        """Total weight of the sample (examples, or scored tokens for language models)."""
        return self.total_weight

    @property
    def weight_unit(self) -> str:
        """What the batch weights count: ``"tokens"`` (scored targets) or ``"examples"``."""
        return weight_unit(self.batches[0].targets)

    def batch_loss(
        self, theta: torch.Tensor | Sequence[torch.Tensor], batch: Batch
    ) -> torch.Tensor:
        """Mean loss of one batch at ``theta`` (differentiable), under evaluation semantics.
        ``theta``: the flat (d,) vector, or its pieces, one flat tensor per slot in order."""
        named = (
            self.layout.unflatten(theta)
            if isinstance(theta, torch.Tensor)
            else self.layout.views(theta)
        )
        params = {f"model.{k}": v for k, v in {**self.constants, **named}.items()}
        with _eval_semantics(self.model):
            outputs = functional_call(self._runner, params, (batch.inputs,), strict=False)
            loss = self.loss_fn(outputs, batch.targets)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise SmoothprobeError(
                "the loss function must return a scalar tensor (the batch's mean loss)"
            )
        return loss.reshape(())

    def weights(self) -> list[float]:
        """Normalized batch weights w_b / Σ w."""
        return [b.weight / self.total_weight for b in self.batches]

    def loss(self, theta: torch.Tensor | None = None) -> float:
        """L(θ) on the whole sample (default θ: the checkpoint).

        Raises:
            NonFiniteError: the loss is NaN or Inf.
        """
        theta = self.theta if theta is None else theta
        with torch.no_grad():
            total = sum(
                w * self.batch_loss(theta, b).double()
                for w, b in zip(self.weights(), self.batches, strict=True)
            )
        value = float(total)
        if not math.isfinite(value):
            raise NonFiniteError(
                f"the loss is {value} at these parameters: check the data "
                "(token ids within the vocabulary?) and the checkpoint"
            )
        return value

    def gradient(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """∇L(θ) as a flat (d,) tensor in the compute dtype (default θ: the checkpoint).

        Raises:
            NonFiniteError: the gradient has NaN or Inf entries.
        """
        theta = (self.theta if theta is None else theta).detach()
        total = torch.zeros_like(theta)
        for w, b in zip(self.weights(), self.batches, strict=True):
            leaf = theta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.batch_loss(leaf, b), leaf)
            total.add_(g, alpha=w)
        if not torch.isfinite(total).all():
            raise NonFiniteError("the gradient has NaN or Inf entries at these parameters")
        return total

    def hvp_operator(
        self,
        *,
        theta: torch.Tensor | None = None,
        chunk_size: int | None = None,
        retain_graphs: bool | None = None,
    ):
        """The exact Hessian operator at θ (see ``smoothprobe.operators.HessianOperator``)."""
        from smoothprobe.operators import HessianOperator

        return HessianOperator(
            self, theta=theta, chunk_size=chunk_size, retain_graphs=retain_graphs
        )

    def check_determinism(self, *, rtol: float | None = None, seed: int = 0, operator=None) -> None:
        """Evaluates the loss and one HVP twice and requires they agree.

        Args:
            rtol: tolerated relative difference (default 1e-10 in float64, 1e-5 otherwise).
            seed: seed of the random probe.
            operator: the run's Hessian operator, reused so no second gradient graph is held
                (default: a new one that rebuilds its graph for each product).

        Raises:
            NonDeterministicLossError: naming the likely cause.
        """
        rtol = rtol if rtol is not None else (1e-10 if self.dtype == torch.float64 else 1e-5)
        hint = (
            "likely dropout or another random op still active in evaluation mode, or a "
            "forward that draws random numbers; make the forward deterministic"
        )
        a, b = self.loss(), self.loss()
        if abs(a - b) > rtol * max(abs(a), 1e-30):
            raise NonDeterministicLossError(
                f"the loss is not deterministic: two evaluations gave {a!r} and {b!r} ({hint})"
            )
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(self.d, generator=gen, dtype=torch.float64).to(self.device, self.dtype)
        op = operator if operator is not None else self.hvp_operator(retain_graphs=False)
        h1 = op.matvec(v)
        h2 = op.matvec(v)
        diff = float((h1 - h2).norm() / max(float(h1.norm()), 1e-30))
        if diff > rtol:
            raise NonDeterministicLossError(
                f"Hessian-vector products are not deterministic: two evaluations differ by "
                f"{diff:.2e} (relative) ({hint})"
            )


class _Runner(nn.Module):
    """Wraps the model and its forward so ``functional_call`` can swap the model's tensors."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, Any], Any]):
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, inputs: Any) -> Any:
        return self._forward(self.model, inputs)


def _default_forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def problem_from_module(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    batch_size: int | None = None,
    num_batches: int | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    include_frozen: bool = False,
    weight_fn: Callable[[Any], float] | None = None,
    ignore_index: int | None = None,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> Problem:
    """Builds a Problem in one call (the notebook entry point).

    Args:
        model: the network (not modified).
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch's mean loss.
        data: (X, Y) tensors, a list of (x, y) tuples or dicts, or a DataLoader (read once).
        batch_size: examples per batch when ``data`` is (X, Y).
        num_batches: keep at most this many batches.
        dtype: ``"checkpoint"``, ``"float32"``, ``"float64"`` or a torch dtype.
        device: compute device.
        include_frozen: measure frozen parameters too.
        weight_fn: batch weight from its targets (default: examples, or scored tokens).
        ignore_index: target value the loss skips, not counted as a scored token (default: the
            loss's own, ``loss_ignore_index(loss_fn)``: −100 for PyTorch's cross-entropy).
        forward: custom ``forward(model, inputs)``.

    Returns:
        The Problem.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 1)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> p = problem_from_module(net, torch.nn.functional.mse_loss, (x, y), dtype="float64")
        >>> p.d
        4
    """
    first = next(iter(model.parameters()), None)
    ckpt_dtype = first.dtype if first is not None else torch.float32
    ignore_index = loss_ignore_index(loss_fn) if ignore_index is None else ignore_index
    batches = make_batches(
        data,
        batch_size=batch_size,
        num_batches=num_batches,
        weight_fn=weight_fn,
        ignore_index=ignore_index,
    )
    return Problem(
        model,
        loss_fn,
        batches,
        dtype=resolve_dtype(dtype, checkpoint_dtype=ckpt_dtype),
        device=device,
        include_frozen=include_frozen,
        forward=forward,
        ignore_index=ignore_index,
    )
