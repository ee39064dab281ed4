"""tr H by Hutchinson and Hutch++ with Rademacher probes, each with a standard error.

- Hutchinson: tr H = E[zᵀHz] for z with iid ±1 entries; the estimate is the mean of n samples
  zᵢᵀHzᵢ and its standard error the sample standard deviation / √n. Var[zᵀHz] =
  2(‖H‖_F² − Σᵢ H_ii²), so it is exact for diagonal H.
- Hutch++ (Meyer, Musco, Musco & Woodruff 2021): a third of the budget sketches the range of H
  (Q = orth(H S), S Rademacher), a third computes tr(QᵀHQ) exactly, and a third runs Hutchinson
  on the deflated (I − QQᵀ)H(I − QQᵀ). When a few eigenvalues dominate ‖H‖_F (typical for
  network Hessians) the deflated part has far smaller variance. The standard error is that of
  the Hutchinson part, conditional on Q (the deflation term is exact given Q).

Probes are applied in blocks of ``chunk_size`` through one ``matvec`` call each.
The interval is mean ± t_{(1+confidence)/2, n−1}·stderr (Student t over the n probes).
Hutch++'s products (Q, HQ, G⊥, HG⊥) also give ‖H‖_F² = ‖HQ‖_F² + E‖HG⊥‖², so the trace and the
Frobenius estimate can share one set of HVPs (``deflated_probes``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import (
    check_int,
    rademacher,
    resolve_generator,
    sample_mean,
)
from smoothprobe.linear_operator import Operator, apply_in_chunks, as_operator


class SumMethod(str, enum.Enum):
    """Estimator of a spectral sum (tr H, ‖H‖_F²): plain Hutchinson or Hutch++ deflation."""

    HUTCHPP = "hutch++"
    HUTCHINSON = "hutchinson"


def _check(max_hvps: int, chunk_size: int, minimum: int) -> None:
    check_int("max_hvps", max_hvps, minimum=minimum)
    check_int("chunk_size", chunk_size, minimum=1)


def hutchinson_trace(
    operator: Operator,
    *,
    max_hvps: int = 64,
    chunk_size: int = 16,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = 0,
) -> Estimate:
    """Hutchinson's estimate of tr H with a Student-t confidence interval.

    Args:
        operator: symmetric operator.
        max_hvps: number of Rademacher probes (= HVPs), ≥ 2.
        chunk_size: probes per ``matvec`` call.
        confidence: level of the interval.
        generator: generator or int seed.

    Returns:
        Estimate ``trace`` (bound ``estimate``) with stderr and interval.

    Raises:
        SmoothprobeError: invalid options.

    Example:
        >>> import torch
        >>> from smoothprobe.linear_operator import DenseOperator
        >>> op = DenseOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
        >>> hutchinson_trace(op, max_hvps=4).value  # exact for a diagonal matrix
        55.0
    """
    operator = as_operator(operator)
    _check(max_hvps, chunk_size, 2)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    z = rademacher(max_hvps, operator.d, generator=generator, device=operator.device)
    hz = apply_in_chunks(operator, z, chunk_size=chunk_size)
    stats = sample_mean((z * hz).sum(dim=1), confidence=confidence)
    return Estimate(
        quantity="trace",
        value=stats.mean,
        bound=Bound.ESTIMATE,
        stderr=stats.stderr,
        ci_low=stats.ci_low,
        ci_high=stats.ci_high,
        confidence=confidence,
        hvps=operator.cost.hvps - hvps0,
        seconds=time.perf_counter() - t0,
        seed=seed,
        method="hutchinson",
        geometry="l2",
        settings={"max_hvps": max_hvps, "chunk_size": chunk_size, "confidence": confidence},
        extra={"probes": stats.n},
    )


@dataclass(frozen=True)
class DeflatedProbes:
    """Hutch++'s HVPs, reusable by every estimator of a spectral sum tr f(H).

    Attributes:
        q: (k, d) orthonormal basis of range(H S) for a Rademacher sketch S.
        hq: (k, d) H applied to the rows of q.
        g: (n, d) Rademacher probes projected onto the orthogonal complement of q.
        hg: (n, d) H applied to the rows of g.
        hvps: HVPs spent (k + k + n).
        seconds: wall time.
        seed: seed of the generator.
        settings: options they were drawn with.
    """

    q: torch.Tensor
    hq: torch.Tensor
    g: torch.Tensor
    hg: torch.Tensor
    hvps: int
    seconds: float
    seed: int
    settings: dict


def deflated_probes(
    operator: Operator,
    *,
    max_hvps: int = 66,
    chunk_size: int = 16,
    generator: torch.Generator | int | None = 0,
    subspace: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DeflatedProbes:
    """Computes Hutch++'s products with ``max_hvps`` HVPs split in thirds.

    k = max_hvps // 3 sketch probes give Q = orth(H S); k HVPs give HQ; the remaining
    max_hvps − 2k Rademacher probes are projected, g ← (I − QQᵀ)g, and multiplied by H.
    With ``subspace = (Q, HQ)`` already known, e.g. a Lanczos basis and its images
    (``KrylovBasis.images``, free), all ``max_hvps`` HVPs go to deflated probes; a converged
    Lanczos basis holds the extreme eigenvectors almost exactly, which removes the outliers
    that make Hutchinson's samples skewed.

    Args:
        operator: symmetric operator.
        max_hvps: HVP budget, ≥ 6 (≥ 2 with ``subspace``).
        chunk_size: probes per ``matvec`` call.
        generator: generator or int seed.
        subspace: optional (Q (k, d) orthonormal rows, HQ (k, d)), float64.

    Returns:
        The products.

    Raises:
        SmoothprobeError: invalid options.
    """
    operator = as_operator(operator)
    _check(max_hvps, chunk_size, 6 if subspace is None else 2)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    d = operator.d
    if subspace is None:
        k = min(max_hvps // 3, d)
        sketch = rademacher(k, d, generator=generator, device=operator.device)
        q = torch.linalg.qr(apply_in_chunks(operator, sketch, chunk_size=chunk_size).T).Q.T
        hq = apply_in_chunks(operator, q, chunk_size=chunk_size)
    else:
        q, hq = (t.to(device=operator.device, dtype=torch.float64) for t in subspace)
        k = 0
    g = rademacher(max_hvps - 2 * k, d, generator=generator, device=operator.device)
    g = g - (g @ q.T) @ q  # (I − QQᵀ) g
    hg = apply_in_chunks(operator, g, chunk_size=chunk_size)
    settings = {
        "max_hvps": max_hvps,
        "chunk_size": chunk_size,
        "deflation": "sketch" if subspace is None else "given",
    }
    return DeflatedProbes(
        q, hq, g, hg, operator.cost.hvps - hvps0, time.perf_counter() - t0, seed, settings
    )


def deflated_method(probes: DeflatedProbes) -> str:
    """Method label: ``"hutch++"`` for a sketched subspace, else ``"deflated-hutchinson"``."""
    return "hutch++" if probes.settings.get("deflation") == "sketch" else "deflated-hutchinson"


def hutchpp_trace(
    operator: Operator,
    *,
    max_hvps: int = 66,
    chunk_size: int = 16,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = 0,
    products: DeflatedProbes | None = None,
) -> Estimate:
    """Hutch++ estimate of tr H: exact trace on a sketched top subspace plus Hutchinson on the rest.

    tr H = tr(QᵀHQ) + E[gᵀ(I − QQᵀ)H(I − QQᵀ)g] (see ``deflated_probes``).

    Args:
        operator: symmetric operator.
        max_hvps: total HVP budget, ≥ 6.
        chunk_size: probes per ``matvec`` call.
        confidence: level of the interval.
        generator: generator or int seed.
        products: Hutch++ products computed earlier (then no HVP is spent here and ``hvps``
            reports theirs).

    Returns:
        Estimate ``trace`` with method ``"hutch++"``; ``extra`` holds the exact part
        ``trace_sketch`` (tr QᵀHQ), the sketch rank and the deflated Hutchinson mean.

    Raises:
        SmoothprobeError: invalid options.
    """
    operator = as_operator(operator)
    t0 = time.perf_counter()
    probes = products
    if probes is None:
        probes = deflated_probes(
            operator, max_hvps=max_hvps, chunk_size=chunk_size, generator=generator
        )
    exact = float((probes.q * probes.hq).sum())
    stats = sample_mean((probes.g * probes.hg).sum(dim=1), confidence=confidence)
    return Estimate(
        quantity="trace",
        value=exact + stats.mean,
        bound=Bound.ESTIMATE,
        stderr=stats.stderr,
        ci_low=exact + stats.ci_low,
        ci_high=exact + stats.ci_high,
        confidence=confidence,
        hvps=probes.hvps,
        seconds=probes.seconds + time.perf_counter() - t0,
        seed=probes.seed,
        method=deflated_method(probes),
        geometry="l2",
        settings={**probes.settings, "confidence": confidence},
        extra={
            "trace_sketch": exact,
            "sketch_rank": probes.q.shape[0],
            "deflated_mean": stats.mean,
            "probes": stats.n,
        },
    )
