"""Gradient noise: per-coordinate variance σ_i² of minibatch gradients at a stated batch size B.

The stochastic bounds of MATH.md §5 add a noise term in each geometry's dual norm:
‖σ‖₁ (ℓ∞, Adam), √d·‖σ‖₂ (one block, SGD's term on the ℓ1 yardstick) and Σ_b √d_b‖σ_b‖₂
(blockwise Φ), where σ² = diag Cov[g_B] is the per-coordinate variance of the gradient g_B of a
minibatch of B examples. B counts examples (sequences for a language model); noise shrinks like
1/√B, so every record states ``settings["batch_size"]``.

**Estimators** (the population is the evaluation sample's data distribution; minibatches are
iid draws of B examples from it, so Var[g_B] = Var[g_1]/B):

- ``per-example`` (default): per-example gradients g_n = ∇ℓ_n(θ) by ``vmap(grad)`` (verified
  against a loop), weights w_n (1 per example, or its scored tokens) and the full gradient
  ḡ = Σ w_n g_n / Σ w_n = ∇L(θ). With a_n = w_n/w̄ (w̄ the mean weight),

      σ²_B = Σ_n a_n² (g_n − ḡ)² / ((N − 1)·B).

  For equal weights this is the unbiased sample variance of the per-example gradients divided by
  B; for unequal weights (sequences with different numbers of scored tokens) it is the
  first-order (delta-method) variance of the token-weighted minibatch mean Σ w g / Σ w. It needs
  a loss that is a weighted mean of per-example losses (no batch-level coupling; BatchNorm is
  evaluated with running statistics, so it qualifies): the estimator checks Σ w_n g_n / Σ w_n
  against ∇L and refuses otherwise.
- ``minibatch``: the examples are pooled, shuffled with the seed and cut into M disjoint
  minibatches of m = ``minibatch_size`` examples (default B; the remainder is dropped). The
  unbiased sample variance of their gradients, σ²_m = Σ_j (g_j − mean)²/(M − 1), is rescaled to
  σ²_B = σ²_m·m/B (exact when m = B). No per-example gradients are needed (works for any
  model and any loss that is a mean over its batch), but it needs M ≥ 2 and is noisier:
  relative error ≈ √(2/(M−1)) per coordinate.

Error bars: a delete-a-group jackknife over ``groups`` groups of examples (or of minibatches)
gives the standard error of every summary (the centre ḡ is held fixed: an O(1/N) effect) and
a Student-t interval on groups − 1 degrees of freedom (9 for the default 10 groups: t = 2.26, not
the normal 1.96, whose interval would hold ≈ 92% of the time instead of 95%).
Memory: 2 + 2·groups vectors of d float64.

Signal-to-noise ratio, per geometry: the dual norm of the full gradient over that of σ,
``snr_l1`` = ‖∇L‖₁/‖σ‖₁, ``snr_l2`` = ‖∇L‖₂/‖σ‖₂ (= √d‖∇L‖₂/(√d‖σ‖₂)), ``snr_block`` =
Σ√d_b‖∇L_b‖₂ / Σ√d_b‖σ_b‖₂. It grows like √B.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from smoothprobe.batches import Batch, default_weight
from smoothprobe.errors import DataError, SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators._batched_gradients import (
    ExampleGradients,
    _loop_gradient,
    agreement_tolerance,
    batch_size_of,
    slice_batch,
)
from smoothprobe.estimators.sampling import check_confidence, resolve_generator, t_interval
from smoothprobe.geometries import Geometry, l2, linf, resolve_geometry
from smoothprobe.problem import Problem

NOISE_METHODS = ("per-example", "minibatch")


@dataclass(frozen=True)
class NoiseResult:
    """Per-coordinate minibatch-gradient variance at ``batch_size`` (see the module docstring).

    Attributes:
        variance: (d,) float64 σ²_B (in the basis' coordinates when one was given).
        gradient: (d,) float64 ∇L(θ) (same coordinates).
        batch_size: B, in examples.
        method: ``"per-example"`` or ``"minibatch"``.
        units: N examples or M minibatches the variance is computed from.
        minibatch_size: m for the minibatch method (None otherwise).
        jackknife: (G, d) float64 leave-one-group-out variances at B, or None.
        gradients: backward passes used (per-example or per-minibatch, plus those of ∇L).
        seconds: wall time.
        seed: seed of the minibatch shuffle (None for per-example).
        gradient_mode: ``"vmap"`` or ``"loop"`` (per-example).
        consistency_error: relative ‖Σ w_n g_n/Σ w_n − ∇L‖₂ (per-example).
        basis: basis name.
        partition: geometry for ``noise_block``/``snr_block`` (or None).
    """

    variance: torch.Tensor
    gradient: torch.Tensor
    batch_size: int
    method: str
    units: int
    minibatch_size: int | None
    jackknife: torch.Tensor | None
    gradients: int
    seconds: float
    seed: int | None
    gradient_mode: str
    consistency_error: float | None
    basis: str = "identity"
    partition: Geometry | None = None
    confidence: float = 0.95

    @property
    def sigma(self) -> torch.Tensor:
        """(d,) float64 σ_B."""
        return self.variance.clamp_min(0).sqrt()

    def at_batch_size(self, batch_size: int) -> NoiseResult:
        """The same estimate restated for another batch size (σ² ∝ 1/B)."""
        _check_batch_size(batch_size)
        factor = self.batch_size / batch_size
        jack = None if self.jackknife is None else self.jackknife * factor
        return NoiseResult(
            **{
                **self.__dict__,
                "variance": self.variance * factor,
                "jackknife": jack,
                "batch_size": batch_size,
            }
        )

    def estimates(self, *, partitions: Sequence[Any] | None = None) -> list[Estimate]:
        """Noise summaries and SNRs as Estimates (``Bound.ESTIMATE``, jackknife stderr).

        Args:
            partitions: Partitions / label tensors / Geometries for ``noise_block`` and
                ``snr_block`` (default: the one given to ``gradient_noise``, if any).

        Returns:
            ``noise_l1``, ``noise_l2_sqrtd``, ``snr_l1``, ``snr_l2`` and, per partition,
            ``noise_block`` and ``snr_block``.
        """
        d = self.variance.numel()
        blocks = [self.partition] if partitions is None and self.partition else []
        blocks += [resolve_geometry(p, d=d) for p in (partitions or [])]
        sqrt_d = math.sqrt(d)
        specs: list[tuple[str, Geometry, Callable[[Geometry, torch.Tensor], float]]] = [
            ("noise_l1", linf(), _noise),
            ("noise_l2_sqrtd", l2(), lambda g, s: sqrt_d * _noise(g, s)),
            ("snr_l1", linf(), self._snr),
            ("snr_l2", l2(), self._snr),
        ]
        for geo in blocks:
            specs += [("noise_block", geo, _noise), ("snr_block", geo, self._snr)]
        out = []
        for quantity, geo, fn in specs:
            value = fn(geo, self.variance)
            stderr, dof = None, None
            if self.jackknife is not None:
                values = torch.tensor([fn(geo, v) for v in self.jackknife], dtype=torch.float64)
                g = values.numel()
                stderr = float(
                    math.sqrt((g - 1) / g * float(((values - values.mean()) ** 2).sum()))
                )
                dof = g - 1  # a delete-a-group jackknife of g groups: t with g − 1 dof
            low, high = t_interval(value, stderr, dof, self.confidence)
            out.append(
                Estimate(
                    quantity,
                    value,
                    Bound.ESTIMATE,
                    stderr=stderr,
                    ci_low=low,
                    ci_high=high,
                    confidence=None if low is None else self.confidence,
                    gradients=self.gradients,
                    seconds=self.seconds,
                    seed=self.seed,
                    method=f"noise:{self.method}",
                    geometry=geo.kind,
                    settings={
                        "batch_size": self.batch_size,
                        "method": self.method,
                        "units": self.units,
                        "minibatch_size": self.minibatch_size,
                        "partition": geo.partition,
                        "basis": self.basis,
                        "gradient_mode": self.gradient_mode,
                    },
                    extra={
                        "consistency_error": self.consistency_error,
                        "jackknife_groups": None
                        if self.jackknife is None
                        else int(self.jackknife.shape[0]),
                        "dof": dof,
                    },
                )
            )
        return out

    def _snr(self, geo: Geometry, variance: torch.Tensor) -> float:
        noise = _noise(geo, variance)
        signal = float(geo.dual_norm(self.gradient))
        return signal / noise if noise > 0 else math.inf


def _noise(geo: Geometry, variance: torch.Tensor) -> float:
    """Dual norm of σ (for l2 this is ‖σ‖₂; callers multiply by √d where the record says so)."""
    return float(geo.dual_norm(variance.clamp_min(0).sqrt()))


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise SmoothprobeError(f"batch size must be a positive integer, got {batch_size!r}")


class _GroupSums:
    """Streaming Σ u and Σ u² per jackknife group of units u (plus their weights and counts).

    The variance of the units is (S₂ − S₁²/N)/(N − 1), divided by the squared mean weight for
    weighted units; leaving group g out subtracts its sums.
    """

    def __init__(self, groups: int, d: int, device: torch.device):
        self.groups = max(groups, 1)
        self.s1 = torch.zeros(self.groups, d, dtype=torch.float64, device=device)
        self.s2 = torch.zeros(self.groups, d, dtype=torch.float64, device=device)
        self.weight = torch.zeros(self.groups, dtype=torch.float64)
        self.count = torch.zeros(self.groups, dtype=torch.float64)
        self.seen = 0

    def add(self, weights: torch.Tensor, units: torch.Tensor) -> None:
        """Adds n units (n, d) with weights (n,), round-robin over the groups."""
        n = weights.numel()
        ids = (torch.arange(n) + self.seen) % self.groups
        dev = ids.to(self.s1.device)
        self.s1.index_add_(0, dev, units)
        self.s2.index_add_(0, dev, units.square())
        self.weight.index_add_(0, ids, weights.to(torch.float64).cpu())
        self.count.index_add_(0, ids, torch.ones(n, dtype=torch.float64))
        self.seen += n

    @staticmethod
    def _variance(s1, s2, weight, count, weighted: bool) -> torch.Tensor:
        n = float(count)
        var = (s2 - s1.square() / n) / (n - 1)
        return var / (float(weight) / n) ** 2 if weighted else var

    def variance(self, *, weighted: bool) -> torch.Tensor:
        return self._variance(
            self.s1.sum(0), self.s2.sum(0), self.weight.sum(), self.count.sum(), weighted
        )

    def jackknife(self, *, weighted: bool) -> torch.Tensor | None:
        """(G, d) leave-one-group-out variances, or None with < 2 usable groups."""
        if self.groups < 2 or bool((self.count == 0).any()):
            return None
        s1, s2 = self.s1.sum(0), self.s2.sum(0)
        w, n = self.weight.sum(), self.count.sum()
        if float(n - self.count.max()) < 2:
            return None
        return torch.stack(
            [
                self._variance(
                    s1 - self.s1[g],
                    s2 - self.s2[g],
                    w - self.weight[g],
                    n - self.count[g],
                    weighted,
                )
                for g in range(self.groups)
            ]
        )


def _per_example(problem, *, grad_full, from_params, mode, chunk_size, example_weight, groups):
    engine = ExampleGradients(
        problem, mode=mode, chunk_size=chunk_size, example_weight=example_weight
    )
    sums = _GroupSums(groups, problem.d, grad_full.device)
    weighted_sum = torch.zeros_like(grad_full)
    for weights, grads in engine:
        g = from_params(grads.to(torch.float64))
        w = weights.to(g.device)
        weighted_sum.add_((w[:, None] * g).sum(0))
        sums.add(weights, w[:, None] * (g - grad_full))
    n, total_w = int(sums.count.sum()), float(sums.weight.sum())
    if n < 2:
        raise DataError(f"gradient noise needs at least 2 examples, the sample has {n}")
    if not math.isclose(total_w, problem.total_weight, rel_tol=1e-9):
        raise SmoothprobeError(
            f"per-example weights sum to {total_w:g} but the batches weigh "
            f"{problem.total_weight:g}: pass example_weight= matching the batch weights, "
            "or use method='minibatch'"
        )
    error = float(torch.linalg.vector_norm(weighted_sum / total_w - grad_full)) / max(
        float(torch.linalg.vector_norm(grad_full)), 1e-300
    )
    if error > agreement_tolerance(problem.dtype):
        raise SmoothprobeError(
            f"the per-example gradients do not average to ∇L (relative error {error:.1e}): "
            "the loss is not a weighted mean of per-example losses (batch-level coupling?); "
            "use method='minibatch'"
        )
    return sums, engine, n, error


def _pool(problem: Problem) -> tuple[Any, Any, int]:
    """All examples of the sample concatenated along dim 0."""
    for b in problem.batches:
        batch_size_of(b)
    try:
        inputs = pytree.tree_map(lambda *ts: torch.cat(ts), *[b.inputs for b in problem.batches])
        targets = pytree.tree_map(lambda *ts: torch.cat(ts), *[b.targets for b in problem.batches])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise DataError(
            f"cannot pool the batches into one set of examples ({exc}); the minibatch method "
            "needs batches of the same structure and per-example shape"
        ) from None
    return inputs, targets, sum(batch_size_of(b) for b in problem.batches)


def _minibatch(problem, *, from_params, center, size, generator, groups):
    """Gradients of M shuffled disjoint minibatches of ``size`` examples, streamed into sums."""
    inputs, targets, n = _pool(problem)
    count = n // size
    if count < 2:
        raise DataError(
            f"the minibatch method needs at least 2 minibatches of {size} examples; the sample "
            f"has {n} examples: use a smaller minibatch size or more data"
        )
    order = torch.randperm(n, generator=generator)
    sums = _GroupSums(groups, problem.d, center.device)
    for j in range(count):
        idx = order[j * size : (j + 1) * size]
        batch = Batch(
            slice_batch(inputs, idx.to(_device_of(inputs))),
            slice_batch(targets, idx.to(_device_of(targets))),
            float(size),
        )
        g = from_params(_loop_gradient(problem, problem.theta, batch).to(torch.float64))
        # centred at ∇L (close to the minibatch mean) for accuracy; the variance re-centres
        sums.add(torch.ones(1, dtype=torch.float64), (g - center)[None])
    return sums, count


def _device_of(value: Any) -> torch.device:
    leaves = [t for t in pytree.tree_leaves(value) if torch.is_tensor(t)]
    return leaves[0].device if leaves else torch.device("cpu")


def gradient_noise(
    problem: Problem,
    *,
    batch_size: int,
    method: str = "per-example",
    minibatch_size: int | None = None,
    partition: Any = None,
    basis=None,
    groups: int = 10,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = None,
    gradient_mode: str = "auto",
    chunk_size: int | None = None,
    example_weight: Callable[[Any], float] = default_weight,
) -> NoiseResult:
    """Per-coordinate variance of minibatch gradients at batch size B, at θ.

    Args:
        problem: the loss; its evaluation sample is the population examples are drawn from.
        batch_size: B, examples per minibatch the noise is stated for.
        method: ``"per-example"`` or ``"minibatch"`` (see the module docstring).
        minibatch_size: m for the minibatch method (default B).
        partition: Partition / labels / Geometry for ``noise_block`` and ``snr_block``.
        basis: optional change of basis: gradients are mapped by Rᵀ before the variance.
        groups: jackknife groups for standard errors (< 2 disables them); the intervals are
            Student-t with groups − 1 degrees of freedom.
        confidence: level of those intervals.
        generator: seed of the minibatch shuffle (torch.Generator or int; default 0).
        gradient_mode: per-example gradients by ``"auto"``, ``"vmap"`` or ``"loop"``.
        chunk_size: examples per vmapped call (bounds memory).
        example_weight: weight of one example from its targets (default: 1, or scored tokens).

    Returns:
        The result (``.estimates()`` for records, ``.at_batch_size(B')`` to restate it).

    Raises:
        SmoothprobeError: invalid options; a loss that is not a mean over examples.
        DataError: too few examples, or batches that cannot be split into examples.
    """
    _check_batch_size(batch_size)
    confidence = check_confidence(confidence)
    if method not in NOISE_METHODS:
        raise SmoothprobeError(f"unknown noise method {method!r}: use {', '.join(NOISE_METHODS)}")
    geo = None if partition is None else resolve_geometry(partition, d=problem.d)
    start = time.perf_counter()
    from_params = (lambda g: g) if basis is None else basis.from_params
    grad_full = from_params(problem.gradient().to(torch.float64))
    base_cost = len(problem.batches)
    if method == "per-example":
        sums, engine, units, error = _per_example(
            problem,
            grad_full=grad_full,
            from_params=from_params,
            mode=gradient_mode,
            chunk_size=chunk_size,
            example_weight=example_weight,
            groups=groups,
        )
        scale, weighted, seed, size = 1.0 / batch_size, True, None, None
        cost, mode = engine.evaluations + base_cost, engine.mode
    else:
        size = minibatch_size or batch_size
        _check_batch_size(size)
        gen, seed = resolve_generator(generator)
        sums, units = _minibatch(
            problem,
            from_params=from_params,
            center=grad_full,
            size=size,
            generator=gen,
            groups=groups,
        )
        scale, weighted, error = size / batch_size, False, None
        cost, mode = units + base_cost, "loop"
    jack = sums.jackknife(weighted=weighted) if groups >= 2 else None
    return NoiseResult(
        variance=sums.variance(weighted=weighted) * scale,
        gradient=grad_full,
        batch_size=batch_size,
        method=method,
        units=units,
        minibatch_size=size,
        jackknife=None if jack is None else jack * scale,
        gradients=cost,
        seconds=time.perf_counter() - start,
        seed=seed,
        gradient_mode=mode,
        consistency_error=error,
        basis=getattr(basis, "name", "identity"),
        partition=geo,
        confidence=confidence,
    )
