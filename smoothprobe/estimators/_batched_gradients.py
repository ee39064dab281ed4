"""Many first-order gradients of a Problem at once: at many points θ_j, or per example.

Both use ``torch.func.vmap`` of ``torch.func.grad`` of the functional batch loss. Only first
derivatives are taken, so the forward-mode second-derivative bugs noted in MATH.md §4 do not
apply; still, every engine checks its first vmapped result against a plain autograd loop and
falls back to the loop (with a warning) when vmap fails or disagrees, e.g. for a model with an
op that has no batching rule or with data-dependent Python control flow.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.func import grad, vmap
from torch.utils import _pytree as pytree

from smoothprobe.batches import Batch, default_weight, scored_targets
from smoothprobe.errors import DataError, NonFiniteError, SmoothprobeError, quoted
from smoothprobe.problem import Problem

MODES = ("auto", "vmap", "loop")


def agreement_tolerance(dtype: torch.dtype) -> float:
    """Relative ‖·‖₂ tolerance between a vmapped and a looped gradient (summation order only)."""
    return min(1e4 * torch.finfo(dtype).eps, 0.05)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise SmoothprobeError(f"unknown gradient mode {mode!r}: use {', '.join(MODES)}")


def _loop_gradient(problem: Problem, theta: torch.Tensor, batch: Batch) -> torch.Tensor:
    leaf = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(problem.batch_loss(leaf, batch), leaf)
    return g


def _agrees(fast: torch.Tensor, slow: torch.Tensor) -> tuple[bool, float]:
    scale = float(torch.linalg.vector_norm(slow.double()))
    diff = float(torch.linalg.vector_norm((fast - slow).double()))
    rel = diff / max(scale, 1e-300)
    return (rel <= agreement_tolerance(slow.dtype) or diff == 0.0), rel


class PointGradients:
    """∇L(θ_j) on the whole (weighted) evaluation sample for a block of points θ_j.

    Args:
        problem: the loss.
        mode: ``"vmap"`` (batched, verified once; error if it disagrees), ``"loop"`` (one
            autograd pass per point and batch) or ``"auto"`` (vmap, falling back to the loop).
        chunk_size: at most this many points per vmapped call (bounds memory: activations of
            ``chunk_size`` forward passes are alive at once). Default: all points of a call.

    Attributes:
        mode: the mode in use (``"vmap"`` or ``"loop"`` after the first call under ``auto``).
        evaluations: full-sample gradients computed so far (including the verification).
        check_error: relative difference vmap vs loop found by the verification.
    """

    def __init__(self, problem: Problem, *, mode: str = "auto", chunk_size: int | None = None):
        _check_mode(mode)
        if chunk_size is not None and chunk_size < 1:
            raise SmoothprobeError(f"chunk size must be ≥ 1, got {chunk_size}")
        self.problem = problem
        self.mode = mode
        self.chunk_size = chunk_size
        self.evaluations = 0
        self.check_error: float | None = None
        self._verified = False

    def _vmapped(self, thetas: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(thetas)
        for w, batch in zip(self.problem.weights(), self.problem.batches, strict=True):

            def loss(theta, batch=batch):
                return self.problem.batch_loss(theta, batch)

            total.add_(vmap(grad(loss))(thetas), alpha=w)
        return total

    def _looped(self, thetas: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.problem.gradient(t) for t in thetas])

    def _first_vmap(self, thetas: torch.Tensor) -> torch.Tensor | None:
        """Vmapped gradients of the first chunk, verified on its first point; None on failure."""
        try:
            fast = self._vmapped(thetas)
        except Exception as exc:  # noqa: BLE001 - any failure of the batched path falls back
            if self.mode == "vmap":
                raise SmoothprobeError(f"vmapped gradients failed for this model: {exc}") from exc
            warnings.warn(
                f"vmapped gradients unavailable for this model ({quoted(exc)}); "
                "falling back to one gradient per point (slower, same values)",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        slow = self.problem.gradient(thetas[0])
        self.evaluations += 1
        ok, self.check_error = _agrees(fast[0], slow)
        if not ok:
            message = (
                f"vmapped gradient differs from the autograd loop by {self.check_error:.2e} "
                "(relative)"
            )
            if self.mode == "vmap":
                raise SmoothprobeError(message + "; use mode='loop'")
            warnings.warn(message + "; using the loop", RuntimeWarning, stacklevel=4)
            return None
        return fast

    def __call__(self, thetas: torch.Tensor) -> torch.Tensor:
        """Returns (k, d) gradients for (k, d) points (problem dtype and device).

        Raises:
            NonFiniteError: a gradient has NaN or Inf entries (the point is too far away).
        """
        thetas = thetas.detach().to(self.problem.device, self.problem.dtype)
        step = self.chunk_size or thetas.shape[0]
        out = []
        for start in range(0, thetas.shape[0], step):
            chunk = thetas[start : start + step]
            if self.mode == "loop":
                out.append(self._looped(chunk))
            elif not self._verified:
                first = self._first_vmap(chunk)
                self._verified = True
                if first is None:
                    self.mode = "loop"
                    out.append(self._looped(chunk))
                else:
                    self.mode = "vmap"
                    out.append(first)
            else:
                out.append(self._vmapped(chunk))
            self.evaluations += chunk.shape[0]
        grads = torch.cat(out)
        if not torch.isfinite(grads).all():
            raise NonFiniteError(
                "a gradient at a perturbed point has NaN or Inf entries: use a smaller radius"
            )
        return grads


def batch_size_of(batch: Batch) -> int:
    """Number of examples (leading dimension) of a batch; all tensors must agree.

    Raises:
        DataError: the batch has no tensor or the leading dimensions differ.
    """
    leaves = [t for t in pytree.tree_leaves((batch.inputs, batch.targets)) if torch.is_tensor(t)]
    if not leaves or any(t.ndim == 0 for t in leaves):
        raise DataError("cannot split a batch into examples: it needs tensors with a batch dim")
    sizes = {t.shape[0] for t in leaves}
    if len(sizes) != 1:
        raise DataError(
            f"cannot split a batch into examples: leading dimensions differ ({sorted(sizes)})"
        )
    return sizes.pop()


def slice_batch(value: Any, index: slice | torch.Tensor) -> Any:
    """Selects examples along dim 0 of every tensor in a pytree."""
    return pytree.tree_map(lambda t: t[index] if torch.is_tensor(t) else t, value)


class ExampleGradients:
    """Per-example gradients ∇ℓ_n(θ) and weights w_n, batch by batch.

    An example is one row of a batch (one sequence for a language model); ℓ_n is the loss
    function applied to that row alone (a mean over its scored tokens) and w_n its weight from
    ``example_weight`` (1, or its number of scored tokens). For a loss that is a weighted mean
    over examples, Σ_n w_n ∇ℓ_n / Σ_n w_n = ∇L: ``gradient_noise`` checks this.

    Args:
        problem: the loss.
        mode: ``"auto"``, ``"vmap"`` or ``"loop"`` as in :class:`PointGradients`.
        chunk_size: examples per vmapped call (default: a whole batch).
        example_weight: weight of one example from its targets (with a leading dim of 1).

    Attributes:
        mode, check_error: as in :class:`PointGradients`.
        evaluations: per-example gradients computed (including the verification).
    """

    def __init__(
        self,
        problem: Problem,
        *,
        mode: str = "auto",
        chunk_size: int | None = None,
        example_weight: Callable[[Any], float] = default_weight,
    ):
        _check_mode(mode)
        if chunk_size is not None and chunk_size < 1:
            raise SmoothprobeError(f"chunk size must be ≥ 1, got {chunk_size}")
        self.problem = problem
        self.mode = mode
        self.chunk_size = chunk_size
        self.example_weight = example_weight
        self.evaluations = 0
        self.check_error: float | None = None
        self._verified = False

    def _loss(self, theta, x, y):
        unsqueeze = pytree.tree_map(lambda t: t.unsqueeze(0) if torch.is_tensor(t) else t, (x, y))
        return self.problem.batch_loss(theta, Batch(unsqueeze[0], unsqueeze[1], 1.0))

    def _vmapped(self, theta: torch.Tensor, part: Batch) -> torch.Tensor:
        return vmap(grad(self._loss), in_dims=(None, 0, 0))(theta, part.inputs, part.targets)

    def _looped(self, theta: torch.Tensor, part: Batch, n: int) -> torch.Tensor:
        rows = [
            _loop_gradient(
                self.problem,
                theta,
                Batch(
                    slice_batch(part.inputs, slice(i, i + 1)),
                    slice_batch(part.targets, slice(i, i + 1)),
                    1.0,
                ),
            )
            for i in range(n)
        ]
        return torch.stack(rows)

    def _first(self, theta: torch.Tensor, part: Batch, n: int) -> torch.Tensor:
        try:
            fast = self._vmapped(theta, part)
        except Exception as exc:  # noqa: BLE001 - any failure of the batched path falls back
            if self.mode == "vmap":
                raise SmoothprobeError(f"vmapped per-example gradients failed: {exc}") from exc
            warnings.warn(
                f"vmapped per-example gradients unavailable ({quoted(exc)}); "
                "falling back to a loop over examples (slower, same values)",
                RuntimeWarning,
                stacklevel=4,
            )
            self.mode = "loop"
            return self._looped(theta, part, n)
        slow = self._looped(theta, part, 1)[0]
        self.evaluations += 1
        ok, self.check_error = _agrees(fast[0], slow)
        if not ok:
            message = (
                f"vmapped per-example gradient differs from the loop by {self.check_error:.2e}"
            )
            if self.mode == "vmap":
                raise SmoothprobeError(message + "; use mode='loop'")
            warnings.warn(message + "; using the loop", RuntimeWarning, stacklevel=4)
            self.mode = "loop"
            return self._looped(theta, part, n)
        self.mode = "vmap"
        return fast

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields (weights (n,) float64, gradients (n, d)) for chunks of examples.

        Raises:
            DataError: a batch cannot be split into examples.
            NonFiniteError: a per-example gradient has NaN or Inf entries.
        """
        theta = self.problem.theta.detach()
        for batch in self.problem.batches:
            size = batch_size_of(batch)
            step = self.chunk_size or size
            for start in range(0, size, step):
                index = slice(start, min(start + step, size))
                part = Batch(
                    slice_batch(batch.inputs, index), slice_batch(batch.targets, index), 1.0
                )
                n = index.stop - index.start
                if self.mode == "loop":
                    grads = self._looped(theta, part, n)
                elif not self._verified:
                    self._verified = True
                    grads = self._first(theta, part, n)
                else:
                    grads = self._vmapped(theta, part)
                self.evaluations += n
                if not torch.isfinite(grads).all():
                    raise NonFiniteError("a per-example gradient has NaN or Inf entries")
                yield self._weights(part.targets, n), grads

    def _weights(self, targets: Any, n: int) -> torch.Tensor:
        """(n,) float64 CPU weights of the examples of a chunk."""
        if self.example_weight is default_weight and torch.is_tensor(targets):
            if targets.ndim >= 2 and not targets.is_floating_point():  # scored tokens per row
                scored = scored_targets(targets, ignore_index=self.problem.ignore_index)
                return scored.reshape(n, -1).sum(1).to("cpu", torch.float64)
            return torch.ones(n, dtype=torch.float64)
        return torch.tensor(
            [float(self.example_weight(slice_batch(targets, slice(i, i + 1)))) for i in range(n)],
            dtype=torch.float64,
        )
