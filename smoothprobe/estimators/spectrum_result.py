"""The result of Lanczos / power iteration and its Estimates (what is certified, what is not).

Certified (Cauchy interlacing, up to rounding): θ_max ≤ λ_max, θ_min ≥ λ_min, so θ_max and
max(θ_max, −θ_min) are lower bounds of λ_max and ‖H‖₂. The residual r = ‖Hy − θy‖ says some
eigenvalue lies within r of θ — *the extreme one only if the Krylov space did not miss it*, so
θ + r is no certified upper end (MATH.md §6). An upper end is given only as a probabilistic
bound (``Bound.PROB_UPPER``, Kuczyński–Woźniakowski, ``krylov_bound``) when the start vector
was uniformly random; it holds with probability ≥ 1 − ``failure_prob``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.krylov_bound import KrylovBounds


@dataclass(frozen=True)
class KrylovBasis:
    """The Lanczos basis and projected matrix of a run, kept for deflation (``keep_basis=True``).

    Attributes:
        basis: (m, d) float64 orthonormal rows q_1 … q_m.
        projection: (m, m) T_m = QᵀHQ (tridiagonal, or arrow-plus-tridiagonal after a thick
            restart).
        residual: (d,) the part of H q_m outside the basis, so H Qᵀ = Qᵀ T + residual e_mᵀ.
    """

    basis: torch.Tensor
    projection: torch.Tensor
    residual: torch.Tensor

    def images(self) -> torch.Tensor:
        """Returns H q_j for every basis row from the Lanczos relation (no HVP)."""
        hq = self.projection @ self.basis
        hq[-1] += self.residual
        return hq


@dataclass(frozen=True)
class SpectrumResult:
    """Extreme eigenvalue estimates of a symmetric operator (Lanczos or power iteration).

    Attributes:
        lambda_max: largest Ritz value θ_max (≤ λ_max up to rounding).
        lambda_min: smallest Ritz value θ_min (≥ λ_min up to rounding).
        l2_norm: max(|θ_max|, |θ_min|) (≤ ‖H‖₂ up to rounding).
        residual_max, residual_min: ‖H y − θ y‖ of the corresponding Ritz vectors; some
            eigenvalue lies within this distance (the nearest one, unless the Krylov space
            missed it).
        error_max, error_min: Kato–Temple estimate min(r, r²/gap) of the eigenvalue error.
        converged_max, converged_min: whether that end met the stopping rule.
        top_values: the top-k largest Ritz values, descending.
        top_residuals, top_errors: their residuals and error estimates.
        ritz_values, ritz_residuals: all final Ritz values (ascending) and their residuals.
        iterations: Lanczos steps taken (power iteration: number of iterations).
        hvps: HVPs used (measured on ``operator.cost``).
        converged: every wanted eigenpair met the stopping rule.
        stop_reason: ``"converged"``, ``"budget"``, ``"invariant"`` or ``"exhausted"``.
        d: dimension.
        seconds: wall time.
        seed: seed of the generator the start vector came from.
        method: ``"lanczos"`` or ``"power_iteration"``.
        settings: options the estimator ran with.
        history: per-iteration ``lambda_max``, ``residual_max``, ``lambda_min``,
            ``residual_min`` (tuples), for convergence plots and benchmarks.
        krylov: the basis and projected matrix when asked for (``keep_basis=True``), else None.
        prob_bounds: Kuczyński–Woźniakowski bounds (random start only), else None.
        restarts: thick restarts done (0: plain Lanczos).
        basis_bytes: bytes of the stored basis.
    """

    lambda_max: float
    lambda_min: float
    l2_norm: float
    residual_max: float
    residual_min: float
    error_max: float
    error_min: float
    converged_max: bool
    converged_min: bool
    top_values: tuple[float, ...]
    top_residuals: tuple[float, ...]
    top_errors: tuple[float, ...]
    ritz_values: tuple[float, ...]
    ritz_residuals: tuple[float, ...]
    iterations: int
    hvps: int
    converged: bool
    stop_reason: str
    d: int
    seconds: float
    seed: int | None
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    history: dict[str, tuple[float, ...]] = field(default_factory=dict)
    krylov: KrylovBasis | None = field(default=None, repr=False, compare=False)
    prob_bounds: KrylovBounds | None = None
    restarts: int = 0
    basis_bytes: int = 0

    @property
    def residual_l2(self) -> float:
        """r such that θ + r covers both ends: max(θ_max + r_max, −θ_min + r_min) − ‖θ‖."""
        return (
            max(self.lambda_max + self.residual_max, -self.lambda_min + self.residual_min)
            - self.l2_norm
        )

    def estimates(self) -> list[Estimate]:
        """Returns ``lambda_max``, ``lambda_min``, ``l2_norm``, ``d_l2`` and probabilistic ends.

        The first four carry the Ritz value: a certified lower bound of λ_max, ‖H‖₂ and d·‖H‖₂
        and an upper bound of λ_min (Cauchy interlacing). They have no interval: ``extra``
        holds the residual r (a diagnostic — θ + r is an upper end only if the Krylov space
        found the extreme eigenvector; for ``l2_norm`` r covers both ends), the Kato–Temple
        error estimate, whether the stopping rule was met, the iteration count and the top-k
        Ritz values. When the start was uniformly random, ``lambda_max``, ``l2_norm`` and
        ``d_l2`` also get a ``Bound.PROB_UPPER`` estimate (finite ones only) with its
        ``failure_prob``; all estimates share one run (``hvps``, ``seconds`` not additive).
        """
        shared = {
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "converged_all": self.converged,
            "top_values": list(self.top_values),
            "top_residuals": list(self.top_residuals),
            "top_errors": list(self.top_errors),
            "restarts": self.restarts,
            "shared_run": True,
        }
        l2_is_max = self.lambda_max >= -self.lambda_min
        l2_ok = self.converged_max and self.converged_min
        l2_err = max(self.error_max, self.error_min)
        rows = [
            ("lambda_max", self.lambda_max, Bound.LOWER, self.residual_max, self.error_max,
             self.converged_max),
            ("lambda_min", self.lambda_min, Bound.UPPER, self.residual_min, self.error_min,
             self.converged_min),
            ("l2_norm", self.l2_norm, Bound.LOWER, self.residual_l2, l2_err, l2_ok),
            ("d_l2", self.d * self.l2_norm, Bound.LOWER, self.d * self.residual_l2,
             self.d * l2_err, l2_ok),
        ]  # fmt: skip
        out = [
            self._estimate(
                name,
                value,
                bound,
                extra={
                    **shared,
                    "residual": float(residual),
                    "error_estimate": float(error),
                    "converged": bool(ok),
                    **({"attained_at": "lambda_max" if l2_is_max else "lambda_min"}
                       if name in ("l2_norm", "d_l2") else {}),
                },
            )
            for name, value, bound, residual, error, ok in rows
        ]  # fmt: skip
        out += self._prob_estimates(shared)
        return out

    def _estimate(self, name: str, value: float, bound: Bound, **kw: Any) -> Estimate:
        return Estimate(
            quantity=name,
            value=float(value),
            bound=bound,
            hvps=self.hvps,
            seconds=self.seconds,
            seed=self.seed,
            method=self.method,
            geometry="l2",
            settings=dict(self.settings),
            **kw,
        )

    def _prob_estimates(self, shared: dict[str, Any]) -> list[Estimate]:
        b = self.prob_bounds
        if b is None:
            return []
        note = {
            **shared,
            "bound_method": "kuczynski-wozniakowski",
            "krylov_steps": b.steps,
            "lambda_min_prob_lower": b.lambda_min_lower if math.isfinite(b.lambda_min_lower)
            else None,
            "note": "holds with probability ≥ 1 − failure_prob over the random start vector",
        }  # fmt: skip
        ends = [
            ("lambda_max", max(b.lambda_max_upper, self.lambda_max)),
            ("l2_norm", max(b.norm_upper, self.l2_norm)),
            ("d_l2", self.d * max(b.norm_upper, self.l2_norm)),
        ]
        return [
            self._estimate(name, value, Bound.PROB_UPPER, failure_prob=b.failure_prob, extra=note)
            for name, value in ends
            if math.isfinite(value)
        ]


def summarize(
    theta: np.ndarray,
    res: np.ndarray,
    errs: np.ndarray,
    ok: np.ndarray,
    *,
    which: str,
    top_k: int,
    stop_reason: str,
    **fields: Any,
) -> SpectrumResult:
    """Builds a SpectrumResult from the final Ritz values (ascending) and their diagnostics.

    ``fields`` are the remaining ``SpectrumResult`` attributes (iterations, hvps, d, ...).
    """
    top = list(range(len(theta) - 1, max(-1, len(theta) - 1 - top_k), -1))
    want_max = which in ("both", "largest")
    want_min = which in ("both", "smallest")
    converged_max, converged_min = bool(ok[-1]), bool(ok[0])
    if want_max:
        converged_max = bool(all(ok[top]))
    converged = (converged_max or not want_max) and (converged_min or not want_min)
    if stop_reason in ("invariant", "exhausted"):
        converged = converged_max = converged_min = True
    history = fields.pop("history")
    return SpectrumResult(
        lambda_max=float(theta[-1]),
        lambda_min=float(theta[0]),
        l2_norm=float(max(theta[-1], -theta[0])),
        residual_max=float(res[-1]),
        residual_min=float(res[0]),
        error_max=float(errs[-1]),
        error_min=float(errs[0]),
        converged_max=converged_max,
        converged_min=converged_min,
        top_values=tuple(float(theta[i]) for i in top),
        top_residuals=tuple(float(res[i]) for i in top),
        top_errors=tuple(float(errs[i]) for i in top),
        ritz_values=tuple(float(t) for t in theta),
        ritz_residuals=tuple(float(r) for r in res),
        converged=converged,
        stop_reason=stop_reason,
        history={k: tuple(v) for k, v in history.items()},
        **fields,
    )
