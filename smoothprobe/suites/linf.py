"""The ℓ∞ suite: ‖H‖₁,₁ with a CI, the H∞ = ‖H‖∞→1 bracket, ‖H‖∞→∞.

``measure_linf`` is what ``smoothprobe measure --norm linf`` runs (and ``--norm both`` with the
ℓ2 suite's L₂ passed as ``l2_norm``). HVP accounting: ``max_hvps`` is the budget of the (1,1)-norm
estimate alone; the max-row refinement (≤ ``max_row_hvps``), sign ascent (≤ (restarts + column
starts)·``ascent_iters`` + 1) and the H∞ bracket (≤ ``hinf_hvps``) add their own HVPs, reported
in their Estimates.

The H∞ bracket (``estimators.hinf_bracket``, MATH.md §7) is ``hinf_lower`` (certified: the larger
of the bracket's rounding + sign-ascent value and ``linf_lower``) and ``hinf_upper`` (the SDP dual
certificate, Bound.PROB_UPPER with failure probability 1e-6, or Bound.UPPER when its eigenvalue
is exact). Default budget ``DEFAULT_HINF_HVPS`` = 2,048 HVPs: at most 512 for the rank-4
Burer–Monteiro factor (it stops at a 1e-4 relative change, after 60–100 HVPs on the examples), at
most 512 for the rounding polish, and the rest (≈ 750 Lanczos steps) for the eigenvalue bound,
whose Kuczyński–Woźniakowski slack d·ε·‖A − Diag(u)‖ then costs < 1% of H∞ on the examples
(ε ≈ 1.7e-4 at 750 steps, d ≈ 30k, δ = 1e-6). That is 8× the (1,1)-norm default and about a
minute on the 28k-parameter demo GPT on one CPU core. ``measure`` (``MeasureSettings.hinf_hvps``,
``--hinf-hvps``) uses that default; the library functions here default to ``hinf_hvps=0`` (no
bracket), so existing callers do not silently pay for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import torch

from smoothprobe.compare.brackets import l11_over_dl2_estimate
from smoothprobe.estimate import Estimate
from smoothprobe.estimators.cauchy import DEFAULT_MEMORY_LIMIT
from smoothprobe.estimators.hinf_bracket import hinf_bracket
from smoothprobe.estimators.l11 import L11Method, estimate_l11
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint, resumed, saved
from smoothprobe.estimators.row_norms import RowNorms, max_row_estimate, refine_max_row
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.estimators.sign_ascent import sign_ascent
from smoothprobe.finished_phases import estimate_from_dict
from smoothprobe.linear_operator import as_operator
from smoothprobe.records import _clean

COLUMN_STARTS = 1  # largest exact rows used as extra sign-ascent starts (unit vectors e_j)
ASCENT_ITERS = 30  # sign-ascent steps per start at most
MAX_ROW_HVPS = 32  # HVPs at most of the max-row refinement
REFINE_ROUND = 8  # rows evaluated exactly per refinement round (whatever the probe block)
DEFAULT_HINF_HVPS = 2048  # HVP budget of the H∞ bracket (see the module docstring)


@dataclass(frozen=True)
class LinfResult:
    """Everything one ℓ∞ measurement produced.

    Attributes:
        items: ``l11_norm``, ``linf_lower``, ``max_row``, (with ``hinf_hvps``)
            ``hinf_lower`` and ``hinf_upper``, and (with L₂) ``l11_over_dl2``.
        rows: per-coordinate row ℓ1 norms (``rows.summary()`` per tensor, ``rows.to_numpy()``).
    """

    items: tuple[Estimate, ...]
    rows: RowNorms

    def estimates(self) -> list[Estimate]:
        """The Estimates, in the order of ``items``."""
        return list(self.items)


def measure_linf(
    operator,
    *,
    method: L11Method | str = L11Method.AUTO,
    max_hvps: int = 256,
    confidence: float = 0.95,
    restarts: int = 8,
    generator: torch.Generator | int | None = None,
    l2_norm: float | Estimate | None = None,
    ascent_iters: int = ASCENT_ITERS,
    max_row_hvps: int = MAX_ROW_HVPS,
    chunk_size: int = 32,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    hinf_hvps: int = 0,
    checkpoint: LoopCheckpoint | None = None,
) -> LinfResult:
    """Measures the ℓ∞ geometry: ‖H‖₁,₁ with a CI, H∞ lower bound, max row norm, and ρ.

    Args:
        operator: an Operator, a ``Problem`` (its HVP operator is used) or a symmetric matrix.
        method: an ``L11Method``: ``"auto"`` (default: exact if ``max_hvps`` ≥ d, else
            two-phase), ``"two-phase"``, ``"cauchy-median"``, ``"cauchy-iqr"``,
            ``"cauchy-geomean"``, ``"uniform"``, ``"stratified"`` or ``"exact"``.
        max_hvps: HVP budget of the (1,1)-norm estimate; the max-row refinement
            (≤ ``max_row_hvps``), sign ascent (≤ (restarts + 1)·``ascent_iters`` + 1) and the H∞
            bracket (≤ ``hinf_hvps``) add theirs, so the run uses at most the sum.
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
        hinf_hvps: HVP budget of the H∞ bracket (default 0: skip it; ``DEFAULT_HINF_HVPS`` is
            what ``smoothprobe measure`` uses).
        checkpoint: saves each stage as it goes and resumes a rerun where it stopped: the
            Cauchy sketch and the sampled columns probe by probe, the max-row refinement and
            the sign ascent when each ends (``loop_checkpoint``); the H∞ bracket is not kept.

    Returns:
        ``LinfResult`` with the row norms and ``.estimates()``, in order: ``l11_norm``
        (Bound.ESTIMATE with ci_low/ci_high, or EXACT; ``extra["l11_per_d"]`` = ‖H‖₁,₁/d, the
        seed paper's convention), ``linf_lower`` (Bound.LOWER: the larger of sign ascent and the
        largest exact row norm), ``max_row``
        (‖H‖∞→∞; ``extra`` has the certified lower bound, the argmax tensor and the per-tensor
        summary of row norms), when ``hinf_hvps`` > 0 ``hinf_lower`` (Bound.LOWER) and
        ``hinf_upper`` (Bound.PROB_UPPER or UPPER; ``extra`` has the Burer–Monteiro value, the
        rank, the HVPs per phase and the surrogate ‖H‖₁,₁ beside it) and, when ``l2_norm`` is
        given, ``l11_over_dl2``.

    Raises:
        SmoothprobeError: bad options (unknown method, budget too small, l2_norm ≤ 0, ...).

    Example:
        >>> import torch
        >>> H = torch.diag(torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64))
        >>> out = measure_linf(H, max_hvps=8, l2_norm=3.0, hinf_hvps=DEFAULT_HINF_HVPS)
        >>> found = out.estimates()
        >>> [(e.quantity, round(e.value, 3)) for e in found]  # doctest: +NORMALIZE_WHITESPACE
        [('l11_norm', 4.5), ('linf_lower', 4.5), ('max_row', 3.0), ('hinf_lower', 4.5),
         ('hinf_upper', 4.5), ('l11_over_dl2', 0.5)]
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
        checkpoint=checkpoint,
    )
    l11, rows = run.estimate, run.rows
    del run  # its rows are refined in place, or replaced by the saved refinement
    rows, used, seconds = _refined(
        operator, rows, max_hvps=max_row_hvps, chunk_size=chunk_size, checkpoint=checkpoint
    )
    max_row = max_row_estimate(
        rows,
        hvps=used,
        seconds=seconds,
        seed=seed,
        method=f"{l11.method}+refine",
        settings={"max_row_hvps": max_row_hvps},
    )
    max_row = replace(max_row, extra={**max_row.extra, "per_tensor": rows.summary()})
    exact_rows = torch.nonzero(rows.exact).reshape(-1)
    top = exact_rows[torch.argsort(rows.estimates[exact_rows], descending=True)[:COLUMN_STARTS]]
    lower = _ascended(
        operator,
        restarts=restarts,
        max_iters=ascent_iters,
        generator=gen,
        column_starts=top,
        chunk_size=chunk_size,
        checkpoint=checkpoint,
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
    if hinf_hvps:
        estimates += hinf_estimates(
            operator, lower=lower, l11=l11, max_hvps=hinf_hvps, generator=gen, chunk_size=chunk_size
        )
    if l2_norm is not None:
        estimates.append(l11_over_dl2_estimate(l11, l2_norm, d=operator.d))
    return LinfResult(tuple(estimates), rows)


def linf_hvps_at_most(*, max_hvps: int, restarts: int, hinf_hvps: int = 0) -> int:
    """The HVPs ``measure_linf`` takes at most with its default refinement and ascent (the
    (1,1)-norm budget, the refinement, the sign ascent, the H∞ bracket): a progress bar's total."""
    ascent = (restarts + COLUMN_STARTS) * ASCENT_ITERS + 1
    return max_hvps + MAX_ROW_HVPS + ascent + hinf_hvps


def _refined(operator, rows: RowNorms, *, max_hvps: int, chunk_size: int, checkpoint):
    """``refine_max_row`` (its result kept in, or restored from, the checkpoint):
    (rows, HVPs used, seconds)."""
    found = resumed(checkpoint, "refine")
    if found is not None:
        operator.cost.hvps += found["used"]
        restored = RowNorms(
            found["estimates"], found["exact"], found["lower"], rows.layout, found["source"]
        )
        return restored, found["used"], found["seconds"]
    t0 = time.perf_counter()
    rows, used = refine_max_row(  # in place: the sketch's rows are not needed again
        operator,
        rows,
        max_hvps=max_hvps,
        round_size=REFINE_ROUND,
        chunk_size=chunk_size,
        in_place=True,
    )
    seconds = time.perf_counter() - t0
    state = {
        "position": used,
        "estimates": rows.estimates,
        "exact": rows.exact,
        "lower": rows.lower,
        "source": rows.source,
        "used": used,
        "seconds": seconds,
    }
    saved(checkpoint, "refine", lambda: state, done=True)
    return rows, used, seconds


def _ascended(operator, *, generator: torch.Generator, checkpoint, **options) -> Estimate:
    """``sign_ascent(...).estimate()`` (kept in, or restored from, the checkpoint together with
    the generator state after it, so later stages draw the same numbers)."""
    found = resumed(checkpoint, "sign_ascent")
    if found is not None:
        generator.set_state(found["generator"])
        estimate = estimate_from_dict(json.loads(found["estimate"]))
        operator.cost.hvps += estimate.hvps
        return estimate
    estimate = sign_ascent(operator, generator=generator, **options).estimate()
    state = {
        "position": estimate.hvps,
        "estimate": json.dumps(_clean(estimate.to_dict(), keep_nonfinite=True)),
        "generator": generator.get_state(),
    }
    saved(checkpoint, "sign_ascent", lambda: state, done=True)
    return estimate


def hinf_estimates(
    operator,
    *,
    lower: Estimate,
    l11: Estimate,
    max_hvps: int,
    generator: torch.Generator,
    chunk_size: int,
) -> list[Estimate]:
    """``hinf_lower`` and ``hinf_upper`` from :func:`hinf_bracket`, never below ``lower``.

    Args:
        operator: the operator.
        lower: the suite's ``linf_lower`` (sign ascent or the largest exact row).
        l11: the suite's ``l11_norm`` (reported beside the bracket as the surrogate).
        max_hvps: the bracket's HVP budget.
        generator: the suite's generator.
        chunk_size: probes per ``matvec`` call.
    """
    bracket = hinf_bracket(operator, max_hvps=max_hvps, generator=generator, chunk_size=chunk_size)
    low, high = bracket.estimates()
    if lower.value > low.value:
        low = replace(
            low,
            value=lower.value,
            method=f"{low.method}|{lower.method}",
            extra={**low.extra, "bracket_lower": bracket.lower},
        )
    surrogate = {
        "l11_norm": l11.value,
        "l11_bound": l11.bound.value,
        "l11_over_hinf_upper": l11.value / high.value if high.value > 0 else None,
    }
    return [
        replace(low, extra={**low.extra, "linf_lower": lower.value, "hinf_upper": high.value}),
        replace(high, extra={**high.extra, **surrogate, "hinf_lower": low.value}),
    ]
