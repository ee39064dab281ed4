"""tr H by Hutchinson and Hutch++ with Rademacher probes, each with a standard error.

- Hutchinson: tr H = E[zᵀHz] for z with iid ±1 entries; the estimate is the mean of n samples
  zᵢᵀHzᵢ and its standard error the sample standard deviation / √n. Var[zᵀHz] =
  2(‖H‖_F² − Σᵢ H_ii²), so it is exact for diagonal H.
- Hutch++ (Meyer, Musco, Musco & Woodruff 2021): a third of the budget sketches the range of H
  (Q = orth(H S), S Rademacher), a third computes tr(QᵀHQ) exactly, and a third runs Hutchinson
  on the deflated (I − QQᵀ)H(I − QQᵀ). When a few eigenvalues dominate ‖H‖_F (typical for
  network Hessians) the deflated part has far smaller variance. The standard error is that of
  the Hutchinson part, conditional on Q (the deflation term is exact given Q).

Probes are applied in blocks of ``block_size`` through one ``matvec`` call each.
The interval is mean ± t_{(1+confidence)/2, n−1}·stderr (Student t over the n probes).
Hutch++'s products (Q, HQ, G⊥, HG⊥) also give ‖H‖_F² = ‖HQ‖_F² + E‖HG⊥‖², so the trace and the
Frobenius estimate can share one set of HVPs (``deflated_probes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import rademacher, resolve_generator, sample_mean
from smoothprobe.linear_operator import Operator


def apply_in_blocks(operator: Operator, probes: torch.Tensor, *, block_size: int) -> torch.Tensor:
    """Returns H·z for each row z of ``probes`` (float64), ``block_size`` rows per matvec call.

    Args:
        operator: symmetric operator.
        probes: (k, d) float64 probes.
        block_size: rows per ``matvec`` call.

    Returns:
        (k, d) float64 products.
    """
    rows = [
        operator.matvec(probes[i : i + block_size].to(operator.dtype)).to(torch.float64)
        for i in range(0, probes.shape[0], block_size)
    ]
    return torch.cat(rows)


def _check(num_probes: int, block_size: int, minimum: int) -> None:
    if num_probes < minimum:
        raise SmoothprobeError(f"num_probes must be ≥ {minimum}, got {num_probes}")
    if block_size < 1:
        raise SmoothprobeError(f"block_size must be ≥ 1, got {block_size}")


def hutchinson_trace(
    operator: Operator,
    *,
    num_probes: int = 64,
    block_size: int = 16,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = 0,
) -> Estimate:
    """Hutchinson's estimate of tr H with a Student-t confidence interval.

    Args:
        operator: symmetric operator.
        num_probes: number of Rademacher probes (= HVPs), ≥ 2.
        block_size: probes per ``matvec`` call.
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
        >>> hutchinson_trace(op, num_probes=4).value  # exact for a diagonal matrix
        55.0
    """
    _check(num_probes, block_size, 2)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    z = rademacher(num_probes, operator.d, generator=generator, device=operator.device)
    hz = apply_in_blocks(operator, z, block_size=block_size)
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
        settings={"num_probes": num_probes, "block_size": block_size, "confidence": confidence},
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
    num_probes: int = 66,
    block_size: int = 16,
    generator: torch.Generator | int | None = 0,
    subspace: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> DeflatedProbes:
    """Computes Hutch++'s products with ``num_probes`` HVPs split in thirds.

    k = num_probes // 3 sketch probes give Q = orth(H S); k HVPs give HQ; the remaining
    num_probes − 2k Rademacher probes are projected, g ← (I − QQᵀ)g, and multiplied by H.
    With ``subspace = (Q, HQ)`` already known, e.g. a Lanczos basis and its images
    (``KrylovBasis.images``, free), all ``num_probes`` HVPs go to deflated probes; a converged
    Lanczos basis holds the extreme eigenvectors almost exactly, which removes the outliers
    that make Hutchinson's samples skewed.

    Args:
        operator: symmetric operator.
        num_probes: HVP budget, ≥ 6 (≥ 2 with ``subspace``).
        block_size: probes per ``matvec`` call.
        generator: generator or int seed.
        subspace: optional (Q (k, d) orthonormal rows, HQ (k, d)), float64.

    Returns:
        The products.

    Raises:
        SmoothprobeError: invalid options.
    """
    _check(num_probes, block_size, 6 if subspace is None else 2)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    d = operator.d
    if subspace is None:
        k = min(num_probes // 3, d)
        sketch = rademacher(k, d, generator=generator, device=operator.device)
        q = torch.linalg.qr(apply_in_blocks(operator, sketch, block_size=block_size).T).Q.T
        hq = apply_in_blocks(operator, q, block_size=block_size)
    else:
        q, hq = (t.to(device=operator.device, dtype=torch.float64) for t in subspace)
        k = 0
    g = rademacher(num_probes - 2 * k, d, generator=generator, device=operator.device)
    g = g - (g @ q.T) @ q  # (I − QQᵀ) g
    hg = apply_in_blocks(operator, g, block_size=block_size)
    settings = {
        "num_probes": num_probes,
        "block_size": block_size,
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
    num_probes: int = 66,
    block_size: int = 16,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = 0,
    probes: DeflatedProbes | None = None,
) -> Estimate:
    """Hutch++ estimate of tr H: exact trace on a sketched top subspace plus Hutchinson on the rest.

    tr H = tr(QᵀHQ) + E[gᵀ(I − QQᵀ)H(I − QQᵀ)g] (see ``deflated_probes``).

    Args:
        operator: symmetric operator.
        num_probes: total HVP budget, ≥ 6.
        block_size: probes per ``matvec`` call.
        confidence: level of the interval.
        generator: generator or int seed.
        probes: products computed earlier (then no HVP is spent here and ``hvps`` reports theirs).

    Returns:
        Estimate ``trace`` with method ``"hutch++"``; ``extra`` holds the exact part
        ``trace_sketch`` (tr QᵀHQ), the sketch rank and the deflated Hutchinson mean.

    Raises:
        SmoothprobeError: invalid options.
    """
    t0 = time.perf_counter()
    if probes is None:
        probes = deflated_probes(
            operator, num_probes=num_probes, block_size=block_size, generator=generator
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
