"""The ℓ∞ suite: ‖H‖₁,₁ with a CI, a certified lower bound on H∞ = ‖H‖∞→1, ‖H‖∞→∞ and ρ.

``measure_linf`` is what ``smoothprobe measure --norm linf`` runs (and ``--norm both`` with the
ℓ2 suite's L₂ passed as ``l2_norm``). HVP accounting: ``max_hvps`` is the budget of the (1,1)-norm
estimate alone; the max-row refinement (≤ ``max_row_hvps``) and sign ascent (≤ (restarts +
column starts)·``ascent_iters`` + 1) add their own HVPs, reported in their Estimates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Estimate
from smoothprobe.estimators.cauchy import DEFAULT_MEMORY_LIMIT
from smoothprobe.estimators.l11 import L11Method, estimate_l11
from smoothprobe.estimators.row_norms import RowNorms, max_row_estimate, refine_max_row
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.estimators.sign_ascent import sign_ascent
from smoothprobe.linear_operator import as_operator

COLUMN_STARTS = 1  # largest exact rows used as extra sign-ascent starts (unit vectors e_j)


@dataclass(frozen=True)
class LinfResult:
    """Everything one ℓ∞ measurement produced.

    Attributes:
        items: ``l11_norm``, ``linf_lower``, ``max_row`` and (with L₂) ``rho``.
        rows: per-coordinate row ℓ1 norms (``rows.summary()`` per tensor, ``rows.to_numpy()``).
    """

    items: tuple[Estimate, ...]
    rows: RowNorms

    def estimates(self) -> list[Estimate]:
        """The Estimates, in the order of ``items``."""
        return list(self.items)


def rho_estimate(l11: Estimate, *, d: int, l2_norm: float) -> Estimate:
    """ρ = ‖H‖₁,₁ / (d·L₂) from an ``l11_norm`` Estimate; its interval scales by 1/(d·L₂).

    L₂ is taken as exact (a Lanczos value with a tiny residual); the interval is the (1,1)-norm
    interval divided by d·L₂.

    Raises:
        SmoothprobeError: when ``l2_norm`` is not a positive finite number.
    """
    if not (isinstance(l2_norm, (int, float)) and math.isfinite(l2_norm) and l2_norm > 0):
        raise SmoothprobeError(f"l2_norm must be a positive number, got {l2_norm!r}")
    scale = d * float(l2_norm)

    def div(x: float | None) -> float | None:
        return None if x is None else x / scale

    return replace(
        l11,
        quantity="rho",
        value=l11.value / scale,
        stderr=div(l11.stderr),
        ci_low=div(l11.ci_low),
        ci_high=div(l11.ci_high),
        hvps=0,
        gradients=0,
        seconds=0.0,
        extra={
            "l2_norm": float(l2_norm),
            "d_l2": scale,
            "d": d,
            "l11_norm": l11.value,
            "l11_method": l11.method,
        },
    )


def measure_linf(
    operator,
    *,
    method: L11Method | str = L11Method.AUTO,
    max_hvps: int = 256,
    confidence: float = 0.95,
    restarts: int = 8,
    generator: torch.Generator | int | None = None,
    l2_norm: float | None = None,
    ascent_iters: int = 30,
    max_row_hvps: int = 32,
    chunk_size: int = 32,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> LinfResult:
    """Measures the ℓ∞ geometry: ‖H‖₁,₁ with a CI, H∞ lower bound, max row norm, and ρ.

    Args:
        operator: an Operator, a ``Problem`` (its HVP operator is used) or a symmetric matrix.
        method: an ``L11Method``: ``"auto"`` (default: exact if ``max_hvps`` ≥ d, else
            two-phase), ``"two-phase"``, ``"cauchy-median"``, ``"cauchy-iqr"``,
            ``"cauchy-geomean"``, ``"uniform"``, ``"stratified"`` or ``"exact"``.
        max_hvps: HVP budget of the (1,1)-norm estimate; the max-row refinement
            (≤ ``max_row_hvps``) and sign ascent (≤ (restarts + 1)·``ascent_iters`` + 1) add
            theirs, so the run uses at most the sum.
        confidence: level of the (1,1)-norm interval (and of ρ's).
        restarts: random sign-ascent restarts (the largest exact row's e_j is one more start).
        generator: torch.Generator or int seed (default seed 0); one stream for every stage.
        l2_norm: L₂ = ‖H‖₂ from the ℓ2 suite; when given, ρ = ‖H‖₁,₁/(d·L₂) is added.
        ascent_iters: sign-ascent steps per restart at most.
        max_row_hvps: HVPs at most for evaluating the likeliest largest rows exactly.
        chunk_size: probes per ``matvec`` call (memory O(chunk_size·d)).
        memory_limit: bytes the exact Cauchy median/IQR may hold (else streaming quantiles).

    Returns:
        ``LinfResult`` with the row norms and ``.estimates()``, in order: ``l11_norm``
        (Bound.ESTIMATE with ci_low/ci_high, or EXACT; ``extra["l11_per_d"]`` = ‖H‖₁,₁/d, the
        seed paper's convention), ``linf_lower`` (Bound.LOWER: the larger of sign ascent and
        the largest exact row norm), ``max_row`` (‖H‖∞→∞; ``extra`` has the certified lower
        bound, the argmax tensor and the per-tensor summary of row norms) and, when ``l2_norm``
        is given, ``rho``.

    Raises:
        SmoothprobeError: bad options (unknown method, budget too small, l2_norm ≤ 0, ...).

    Example:
        >>> import torch
        >>> H = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
        >>> result = measure_linf(H, max_hvps=8, l2_norm=3.0)
        >>> [(e.quantity, round(e.value, 3)) for e in result.estimates()]
        [('l11_norm', 4.5), ('linf_lower', 4.5), ('max_row', 3.0), ('rho', 0.5)]
    """
    operator = as_operator(operator)
    gen, seed = resolve_generator(generator)
    run = estimate_l11(
        operator,
        method=method,
        max_hvps=max_hvps,
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
    lower = sign_ascent(
        operator,
        restarts=restarts,
        max_iters=ascent_iters,
        generator=gen,
        column_starts=top,
        chunk_size=chunk_size,
    ).estimate()
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
        estimates.append(rho_estimate(l11, d=operator.d, l2_norm=l2_norm))
    return LinfResult(tuple(estimates), rows)
