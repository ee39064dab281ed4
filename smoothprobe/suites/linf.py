"""The ℓ∞ suite: ‖H‖₁,₁ with a CI, a certified lower bound on H∞ = ‖H‖∞→1, ‖H‖∞→∞.

``measure_linf`` is what ``smoothprobe measure --norm linf`` runs (and ``--norm both`` with the
ℓ2 suite's L₂ passed as ``l2_norm``). HVP accounting: ``hvps`` is the budget of the (1,1)-norm
estimate alone; the max-row refinement (≤ ``max_row_hvps``) and sign ascent (≤ (restarts +
column starts)·``ascent_iters`` + 1) add their own HVPs, reported in their Estimates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from smoothprobe.compare.brackets import l11_over_dl2_estimate
from smoothprobe.estimate import Estimate
from smoothprobe.estimators.cauchy import DEFAULT_MEMORY_LIMIT
from smoothprobe.estimators.l11 import run_l11
from smoothprobe.estimators.row_norms import RowNorms, max_row_estimate, refine_max_row
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.estimators.sign_ascent import linf_lower
from smoothprobe.suites.l2 import as_operator

COLUMN_STARTS = 1  # largest exact rows used as extra sign-ascent starts (unit vectors e_j)


@dataclass(frozen=True)
class LinfResult:
    """Everything one ℓ∞ measurement produced.

    Attributes:
        estimates: ``l11_norm``, ``linf_lower``, ``max_row`` and (with L₂) ``l11_over_dl2``.
        rows: per-coordinate row ℓ1 norms (``rows.summary()`` per tensor, ``rows.to_numpy()``).
    """

    estimates: list[Estimate]
    rows: RowNorms


def run_linf(
    operator,
    *,
    method: str = "auto",
    hvps: int = 256,
    confidence: float = 0.95,
    restarts: int = 8,
    generator: torch.Generator | int | None = None,
    l2_norm: float | Estimate | None = None,
    ascent_iters: int = 30,
    max_row_hvps: int = 32,
    chunk_size: int = 32,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> LinfResult:
    """Like :func:`measure_linf`, also returning the row norms (for tables and histograms)."""
    operator = as_operator(operator)
    gen, seed = resolve_generator(generator)
    run = run_l11(
        operator,
        method=method,
        hvps=hvps,
        confidence=confidence,
        generator=gen,
        chunk_size=chunk_size,
        memory_limit=memory_limit,
    )
    l11 = run.estimate
    t0 = time.perf_counter()
    rows, used = refine_max_row(
        operator, run.rows, max_hvps=max_row_hvps, chunk_size=min(8, chunk_size)
    )
    max_row = max_row_estimate(
        rows,
        hvps=used,
        seconds=time.perf_counter() - t0,
        seed=seed,
        method=f"{l11.method}+refine",
        settings={"max_row_hvps": max_row_hvps},
    )
    max_row = replace(max_row, extra={**max_row.extra, "per_tensor": rows.summary()})
    exact_rows = torch.nonzero(rows.exact).reshape(-1)
    top = exact_rows[torch.argsort(rows.estimates[exact_rows], descending=True)[:COLUMN_STARTS]]
    lower = linf_lower(
        operator,
        restarts=restarts,
        max_iters=ascent_iters,
        generator=gen,
        column_starts=top,
        chunk_size=chunk_size,
    )
    floor = rows.certified_max_lower()
    if floor > lower.value:
        lower = replace(
            lower,
            value=floor,
            method="max-exact-row",
            extra={**lower.extra, "sign_ascent_value": lower.value},
        )
    lower = replace(lower, seed=seed, extra={**lower.extra, "max_exact_row": floor})
    estimates = [l11, lower, max_row]
    if l2_norm is not None:
        estimates.append(l11_over_dl2_estimate(l11, l2_norm, d=operator.d))
    return LinfResult(estimates, rows)


def measure_linf(
    operator,
    *,
    method: str = "auto",
    hvps: int = 256,
    confidence: float = 0.95,
    restarts: int = 8,
    generator: torch.Generator | int | None = None,
    l2_norm: float | Estimate | None = None,
    ascent_iters: int = 30,
    max_row_hvps: int = 32,
    chunk_size: int = 32,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> list[Estimate]:
    """Measures the ℓ∞ geometry: ‖H‖₁,₁ with a CI, H∞ lower bound, max row norm, and ρ.

    Args:
        operator: an Operator, a ``Problem`` (its HVP operator is used) or a symmetric matrix.
        method: (1,1)-norm method: ``"auto"`` (default: exact if ``hvps`` ≥ d, else
            two-phase), ``"two-phase"``, ``"cauchy-median"``, ``"cauchy-iqr"``,
            ``"cauchy-geomean"``, ``"uniform"``, ``"stratified"`` or ``"exact"``.
        hvps: HVP budget of the (1,1)-norm estimate.
        confidence: level of the (1,1)-norm interval (and of ρ's).
        restarts: random sign-ascent restarts (the largest exact row's e_j is one more start).
        generator: torch.Generator or int seed (default seed 0); one stream for every stage.
        l2_norm: L₂ = ‖H‖₂ from the ℓ2 suite (a float is taken as exact, or its Estimate);
            when given, ``l11_over_dl2`` = ‖H‖₁,₁/(d·L₂) is added (the seed paper's ratio, not
            ρ = H∞/(d·L₂), which the comparison layer brackets).
        ascent_iters: sign-ascent steps per restart at most.
        max_row_hvps: HVPs at most for evaluating the likeliest largest rows exactly.
        chunk_size: probes per ``matvec`` call (memory O(chunk_size·d)).
        memory_limit: bytes the exact Cauchy median/IQR may hold (else streaming quantiles).

    Returns:
        Estimates, in order: ``l11_norm`` (Bound.ESTIMATE with ci_low/ci_high, or EXACT;
        ``extra["l11_per_d"]`` = ‖H‖₁,₁/d, the seed paper's convention), ``linf_lower``
        (Bound.LOWER: the larger of sign ascent and the largest exact row norm), ``max_row``
        (‖H‖∞→∞; ``extra`` has the certified lower bound, the argmax tensor and the per-tensor
        summary of row norms) and, when ``l2_norm`` is given, ``l11_over_dl2``.

    Raises:
        SmoothprobeError: bad options (unknown method, budget too small, l2_norm ≤ 0, ...).

    Example:
        >>> import torch
        >>> H = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
        >>> [(e.quantity, round(e.value, 3)) for e in measure_linf(H, hvps=8, l2_norm=3.0)]
        [('l11_norm', 4.5), ('linf_lower', 4.5), ('max_row', 3.0), ('l11_over_dl2', 0.5)]
    """
    return run_linf(
        operator,
        method=method,
        hvps=hvps,
        confidence=confidence,
        restarts=restarts,
        generator=generator,
        l2_norm=l2_norm,
        ascent_iters=ascent_iters,
        max_row_hvps=max_row_hvps,
        chunk_size=chunk_size,
        memory_limit=memory_limit,
    ).estimates
