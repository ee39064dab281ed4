"""‖H‖_F² = tr(H²) = E‖Hz‖² for Rademacher z, with a standard error.

- ``method="hutchinson"``: each probe costs one HVP and gives the sample ‖Hzᵢ‖² = zᵢᵀH²zᵢ, a
  Hutchinson sample for H² (unbiased, Var = 2(‖H²‖_F² − Σᵢ (H²)_ii²)).
- ``method="hutch++"`` (default): with Hutch++'s products (``trace.deflated_probes``),
  ‖H‖_F² = ‖HQ‖_F² + E‖H(I − QQᵀ)g‖². The few large eigenvalues that dominate ‖H‖_F² of a
  network Hessian are captured exactly by Q, so the remaining samples have a small, nearly
  symmetric spread: the Student-t interval then covers the truth at its nominal level, where
  plain Hutchinson's skewed samples (a few huge ones) make it undercover.

The estimate is the (shifted) sample mean with a Student-t interval over the random probes.
"""

from __future__ import annotations

import math
import time

import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import (
    check_choice,
    check_int,
    rademacher,
    resolve_generator,
    sample_mean,
)
from smoothprobe.estimators.trace import (
    DeflatedProbes,
    SumMethod,
    deflated_method,
    deflated_probes,
)
from smoothprobe.linear_operator import Operator, apply_in_chunks, as_operator


def frobenius_sq(
    operator: Operator,
    *,
    max_hvps: int = 66,
    chunk_size: int = 16,
    confidence: float = 0.95,
    method: SumMethod | str = SumMethod.HUTCHPP,
    generator: torch.Generator | int | None = 0,
    products: DeflatedProbes | None = None,
) -> Estimate:
    """Estimates ‖H‖_F² with a standard error and a Student-t interval.

    Args:
        operator: symmetric operator.
        max_hvps: HVP budget (≥ 2 for Hutchinson, ≥ 6 for Hutch++).
        chunk_size: probes per ``matvec`` call.
        confidence: level of the interval.
        method: ``"hutch++"`` or ``"hutchinson"`` (see the module docstring).
        generator: generator or int seed.
        products: Hutch++ products computed earlier (e.g. for the trace): no new HVPs, and
            ``hvps`` reports theirs.

    Returns:
        Estimate ``frobenius_sq`` (bound ``estimate``) with stderr and interval; ``extra`` has
        ``frobenius`` = √value.

    Raises:
        SmoothprobeError: invalid options.

    Example:
        >>> import torch
        >>> from smoothprobe.linear_operator import DenseOperator
        >>> op = DenseOperator(2 * torch.eye(5, dtype=torch.float64))
        >>> frobenius_sq(op, method="hutchinson").value
        20.0
    """
    operator = as_operator(operator)
    method = check_choice("Frobenius method", method, SumMethod)
    if method is SumMethod.HUTCHPP or products is not None:
        return _from_deflated(
            operator,
            max_hvps=max_hvps,
            chunk_size=chunk_size,
            confidence=confidence,
            generator=generator,
            products=products,
        )
    check_int("max_hvps", max_hvps, minimum=2)
    check_int("chunk_size", chunk_size, minimum=1)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    z = rademacher(max_hvps, operator.d, generator=generator, device=operator.device)
    hz = apply_in_chunks(operator, z, chunk_size=chunk_size)
    stats = sample_mean((hz * hz).sum(dim=1), confidence=confidence)
    return _estimate(
        0.0,
        stats,
        method="hutchinson",
        hvps=operator.cost.hvps - hvps0,
        seconds=time.perf_counter() - t0,
        seed=seed,
        settings={"max_hvps": max_hvps, "chunk_size": chunk_size},
    )


def _from_deflated(operator, *, max_hvps, chunk_size, confidence, generator, products) -> Estimate:
    t0 = time.perf_counter()
    probes = products
    if probes is None:
        probes = deflated_probes(
            operator, max_hvps=max_hvps, chunk_size=chunk_size, generator=generator
        )
    exact = float((probes.hq * probes.hq).sum())  # ‖HQ‖_F²
    stats = sample_mean((probes.hg * probes.hg).sum(dim=1), confidence=confidence)
    return _estimate(
        exact,
        stats,
        method=deflated_method(probes),
        hvps=probes.hvps,
        seconds=probes.seconds + time.perf_counter() - t0,
        seed=probes.seed,
        settings=dict(probes.settings),
        extra={"frobenius_sq_sketch": exact},
    )


def _estimate(exact, stats, *, method, hvps, seconds, seed, settings, extra=None) -> Estimate:
    value = exact + stats.mean
    low, high = _log_interval(stats)
    return Estimate(
        quantity="frobenius_sq",
        value=value,
        bound=Bound.ESTIMATE,
        stderr=stats.stderr,
        ci_low=exact + low,
        ci_high=exact + high,
        confidence=stats.confidence,
        hvps=hvps,
        seconds=seconds,
        seed=seed,
        method=method,
        geometry="l2",
        settings={**settings, "confidence": stats.confidence, "method": method},
        extra={
            "frobenius": max(value, 0.0) ** 0.5,
            "probes": stats.n,
            "ci_method": "student-t on the log of the sampled mean",
            **(extra or {}),
        },
    )


def _log_interval(stats) -> tuple[float, float]:
    """Interval of the sampled part's mean, taken on the log scale: m·exp(∓ t·se/m).

    The samples ‖Hz‖² are nonnegative and right-skewed (a few large eigen-directions dominate),
    so a symmetric t interval's upper end missed the truth in 7-8.5% of runs (200 seeds, dense
    test matrices) against 2.5% claimed; on the log scale it keeps its level
    (tests/test_coverage.py).
    """
    if not stats.mean > 0:
        return stats.ci_low, stats.ci_high
    t = (stats.ci_high - stats.mean) / stats.stderr if stats.stderr > 0 else 0.0
    half = t * stats.stderr / stats.mean
    return stats.mean * math.exp(-half), stats.mean * math.exp(half)
