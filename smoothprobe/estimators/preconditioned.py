"""Sharpness as Adam sees it: λ(P⁻¹H) from the checkpoint's own optimizer state (MATH.md §9).

Adam's step −η·m̂/(√v̂ + ε) is, locally, preconditioned gradient descent with P = diag(√v̂ + ε).
Its stability is governed by λ_max(P⁻¹H) = λ_max(P^{-½}HP^{-½}): the same spectrum as the
*symmetric* operator P^{-½}HP^{-½} (one HVP plus two diagonal scalings), so the ordinary Lanczos
of ``estimators.lanczos`` applies. Cohen et al. (2022, "Adaptive gradient methods at the edge of
stability") observe that λ_max(P⁻¹H) rises to and hovers at the adaptive edge-of-stability
threshold (2 + 2β₁)/((1 − β₁)η) — 38/η for β₁ = 0.9 — just as plain GD's λ_max(H) hovers at 2/η.

Records (geometry ``preconditioned``): ``precond_lambda_max`` (Ritz value: certified lower bound,
``ci_high`` = θ + residual, top-k in ``extra``), ``precond_lambda_max_upper`` (``prob_upper``: the
Kuczyński–Woźniakowski bound of the random-start run, holding with probability ≥ 1 − δ),
``precond_lambda_min`` (certified upper bound), ``aeos_threshold`` and ``gd_threshold`` = 2/η
(exact, from the checkpoint's param groups).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.lanczos import SpectrumResult, lanczos
from smoothprobe.linear_operator import Operator
from smoothprobe.optimizer_state import AdamPreconditioner


class PreconditionedOperator:
    """P^{-½} H P^{-½} for a positive diagonal P (symmetric; same eigenvalues as P⁻¹H).

    Args:
        operator: H.
        diagonal: (d,) positive P.

    Raises:
        SmoothprobeError: wrong length or a non-positive entry.
    """

    def __init__(self, operator: Operator, diagonal: torch.Tensor):
        from smoothprobe.errors import SmoothprobeError

        if diagonal.numel() != operator.d:
            raise SmoothprobeError(
                f"the preconditioner has {diagonal.numel():,} entries but the operator has "
                f"d={operator.d:,}; build it from the same layout"
            )
        if not bool((diagonal > 0).all()) or not bool(torch.isfinite(diagonal).all()):
            raise SmoothprobeError("the preconditioner diagonal must be positive and finite")
        self.operator = operator
        self.d = operator.d
        self.dtype = torch.promote_types(operator.dtype, torch.float32)
        self.device = operator.device
        self.layout = operator.layout
        self.cost = operator.cost
        self.scale = diagonal.to(device=operator.device, dtype=torch.float64).rsqrt()

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """Returns P^{-½}HP^{-½}v for each row ((k, d) or (d,))."""
        s = self.scale.to(self.dtype)
        inner = (vectors.to(self.dtype) * s).to(self.operator.dtype)
        return (self.operator.matvec(inner).to(self.dtype) * s).to(self.dtype)


@dataclass(frozen=True)
class PreconditionedResult:
    """λ(P⁻¹H) next to the step's thresholds.

    Attributes:
        spectrum: the Lanczos result on P^{-½}HP^{-½}.
        preconditioner: hyper-parameters (``AdamPreconditioner.describe()``).
        aeos_threshold: (2 + 2β₁)/((1 − β₁)η).
        gd_threshold: 2/η.
        lambda_max: unpreconditioned λ_max(H) when known (for comparison), else None.
        failure_prob: δ of the ``prob_upper`` record.
    """

    spectrum: SpectrumResult
    preconditioner: dict[str, Any]
    aeos_threshold: float
    gd_threshold: float
    lambda_max: float | None = None
    failure_prob: float = 1e-3

    def estimates(self) -> list[Estimate]:
        """``precond_lambda_max``, ``precond_lambda_min``, ``aeos_threshold``, ``gd_threshold``."""
        spec = {  # the Ritz values (the spectrum's own prob_upper ends are listed after them)
            e.quantity: e for e in self.spectrum.estimates() if e.bound is not Bound.PROB_UPPER
        }
        settings = {**self.preconditioner, **spec["lambda_max"].settings}
        comparison = {
            "aeos_threshold": self.aeos_threshold,
            "ratio_to_threshold": self.spectrum.lambda_max / self.aeos_threshold,
            "gd_threshold": self.gd_threshold,
            "unpreconditioned_lambda_max": self.lambda_max,
        }
        out = [
            replace(
                spec[name],
                quantity=f"precond_{name}",
                geometry="preconditioned",
                method="lanczos:P^-1/2 H P^-1/2",
                settings=settings,
                extra={**spec[name].extra, **comparison},
            )
            for name in ("lambda_max", "lambda_min")
        ]
        from smoothprobe.estimators.ritz_bounds import ritz_upper_bounds

        kw = (
            self.spectrum.prob_bounds  # restarted: only the first basis-full is a Krylov space
            if self.spectrum.restarts
            else ritz_upper_bounds(
                self.spectrum.ritz_values,
                self.spectrum.ritz_residuals,
                d=self.spectrum.d,
                failure_prob=self.failure_prob,
            )
        )
        if kw is not None:
            out.append(
                Estimate(
                    quantity="precond_lambda_max_upper",
                    value=kw.lambda_max_upper,
                    bound=Bound.PROB_UPPER,
                    failure_prob=self.failure_prob,
                    hvps=0,
                    seed=self.spectrum.seed,
                    method="kuczynski-wozniakowski",
                    geometry="preconditioned",
                    settings=settings,
                    extra={
                        "steps": kw.steps,
                        "what": "upper end of lambda_max(P^-1 H), random start",
                    },
                )
            )
        for quantity, value, what in (
            ("aeos_threshold", self.aeos_threshold, "(2 + 2 beta1)/((1 - beta1) lr)"),
            ("gd_threshold", self.gd_threshold, "2/lr"),
        ):
            out.append(
                Estimate(
                    quantity=quantity,
                    value=value,
                    bound=Bound.EXACT,
                    method="from optimizer state",
                    geometry="preconditioned",
                    settings=dict(self.preconditioner),
                    extra={"what": what},
                )
            )
        return out


def preconditioned_sharpness(
    operator: Operator,
    preconditioner: AdamPreconditioner,
    *,
    tol: float = 1e-6,
    max_hvps: int = 300,
    top_k: int = 1,
    generator: torch.Generator | int | None = 0,
    lambda_max: float | None = None,
    failure_prob: float = 1e-3,
    max_basis: int | None = None,
    basis_dtype: torch.dtype = torch.float64,
) -> PreconditionedResult:
    """λ_max and λ_min of P⁻¹H by Lanczos on P^{-½}HP^{-½}, with the step's thresholds.

    Args:
        operator: H (anything ``suites.l2.as_operator`` accepts).
        preconditioner: from ``optimizer_state.adam_preconditioner``.
        tol, max_hvps, top_k: Lanczos options (one HVP per step).
        generator: torch.Generator or int seed of the start vector.
        lambda_max: the unpreconditioned λ_max(H), to show next to it (optional).
        failure_prob: δ of the Kuczyński–Woźniakowski upper end (the start is random).
        max_basis, basis_dtype: the Lanczos basis memory (``lanczos``; a restarted run takes
            its upper end from the first basis-full).

    Returns:
        The result (``.estimates()`` gives the records).

    Raises:
        SmoothprobeError: a preconditioner of the wrong length, bad Lanczos options.
    """
    from smoothprobe.suites.l2 import as_operator

    op = PreconditionedOperator(as_operator(operator), preconditioner.diagonal)
    spectrum = lanczos(
        op,
        tol=tol,
        max_hvps=max_hvps,
        top_k=top_k,
        generator=generator,
        max_basis=max_basis,
        basis_dtype=basis_dtype,
        failure_prob=failure_prob,
    )
    return PreconditionedResult(
        spectrum=spectrum,
        preconditioner=preconditioner.describe(),
        aeos_threshold=preconditioner.aeos_threshold,
        gd_threshold=2.0 / preconditioner.lr,
        lambda_max=lambda_max,
        failure_prob=failure_prob,
    )
