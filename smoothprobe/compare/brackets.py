"""Pandas-free interval arithmetic of the comparison: a constant's bracket and ρ, for everyone.

``bracket`` turns lower/upper-bound intervals of one constant into its bracket and honest point
value; ``rho_interval`` is THE one place where ρ(Φ) = H(Φ)/(d·L₂) is formed. The suites call
``l11_over_dl2_estimate`` and ``rho_block_estimate`` here (records that print in ``measure``), and
the comparison tables call the same functions, so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from smoothprobe.compare.intervals import abs_interval, best_end, record_interval
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.interval import Interval, Kind

_PROVEN = (Kind.EXACT, Kind.CERTIFIED)


def bracket(
    lows: list[Interval],
    ups: list[Interval],
    l2: Interval | None,
    dl2: Interval | None,
    *,
    surrogate: Interval | None = None,
    name: str = "‖H‖₁,₁",
) -> tuple[Interval, str]:
    """A constant H's bracket and its honest point value, with a note saying what the point is.

    The lower end is the best lower end of ``lows`` (records that bound H from below), the upper
    end the best upper end of ``ups`` (records that bound H from above), several of each combined
    as in ``combine_intervals``; then capped by d·L₂ and raised to L₂ (L₂ ≤ H(Φ) ≤ d·L₂).

    The point value is the surrogate (``surrogate``: ‖H‖₁,₁ or U(Φ)) capped at d·L₂ and clipped
    into the bracket, so it never lies outside what the same row proves; without a surrogate it
    is the lower end. The note names it, and says so when the surrogate is uninformative
    (≥ d·L₂) or was raised to the certified lower bound.

    Returns:
        (interval, note).
    """
    low, low_kind, low_alpha = best_end([(iv.low, iv.low_kind, iv.low_alpha) for iv in lows])
    neg, high_kind, high_alpha = best_end([(-iv.high, iv.high_kind, iv.high_alpha) for iv in ups])
    iv = Interval(math.nan, low, -neg, low_kind, high_kind, low_alpha, high_alpha).resolved()
    if iv.low_kind is Kind.NONE:
        iv = Interval(math.nan, 0.0, iv.high, Kind.NONE, iv.high_kind, 0.0, iv.high_alpha)
    if dl2 is not None:
        iv = iv.cap_high(dl2.high, dl2.high_kind, alpha=dl2.high_alpha)
    if l2 is not None:
        iv = iv.raise_low(l2.low, l2.low_kind, alpha=l2.low_alpha)
    if surrogate is None or not math.isfinite(surrogate.value):
        if iv.low_kind is Kind.NONE:
            return replace(iv, value=iv.high), "upper end (nothing else measured)"
        return replace(iv, value=iv.low), "lower end (no surrogate measured)"
    sketched = surrogate.low_kind is Kind.NONE and surrogate.high_kind is Kind.PROBABILISTIC
    what = f"{name} sketched estimate" if sketched else f"{name} surrogate"
    value, notes = surrogate.value, []
    if dl2 is not None and value >= dl2.value:
        value = dl2.value
        notes.append(f"{name} ≥ d·L₂: uninformative here, capped at d·L₂")
    else:
        notes.append("capped at d·L₂")
    if value < iv.low:
        notes.append("raised to the lower end")
    elif value > iv.high:
        notes.append("lowered to the upper end")
    return replace(iv, value=value).clipped(), f"{what} ({'; '.join(notes)})"


def rho_interval(h: Interval, dl2: Interval) -> Interval:
    """ρ(Φ) = H(Φ)/(d·L₂), capped at the proven 1 (H(Φ) ≤ d·L₂ for every Φ); point inside."""
    return (h / dl2).cap_high(1.0, Kind.CERTIFIED).clipped()


def l2_from(l2_norm: float | Estimate) -> Interval:
    """L₂ as an interval: a float is taken as exact, an Estimate read like its record."""
    if isinstance(l2_norm, Estimate):
        return abs_interval(record_interval(l2_norm.to_dict()))
    return Interval.exact(abs(float(l2_norm)))


def l11_over_dl2_estimate(l11: Estimate, l2_norm: float | Estimate, *, d: int) -> Estimate:
    """The ``l11_over_dl2`` record: ‖H‖₁,₁/(d·L₂), the seed paper's ratio (NOT ρ: it can exceed 1).

    Its bound kind follows from both inputs (with L₂ a certified lower bound, ‖H‖₁,₁/(d·θ) is a
    certified *upper* bound on the ratio, not its exact value); ``extra`` holds both ends.
    """
    l2 = l2_from(l2_norm)
    if not l2.low > 0 and not l2.value > 0:
        from smoothprobe.errors import SmoothprobeError

        raise SmoothprobeError(f"l2_norm must be a positive number, got {l2_norm!r}")
    ratio = record_interval(l11.to_dict()) / l2.scale(d)
    return _estimate(
        ratio,
        quantity="l11_over_dl2",
        method=f"{l11.method}/(d*L2)",
        geometry="linf",
        seed=l11.seed,
        settings=l11.settings,
        extra={"l11_norm": l11.value, "l2_norm": l2.value, "d": d},
    )


def rho_block_estimate(
    upper: Estimate, lower: Estimate, l2_norm: float | Estimate, *, d: int
) -> Estimate:
    """The ``rho_block`` record: ρ(Φ) = H(Φ)/(d·L₂) bracketed by block_lower and block_upper."""
    l2 = l2_from(l2_norm)
    dl2 = l2.scale(d)
    up, low = record_interval(upper.to_dict()), record_interval(lower.to_dict())
    h, note = bracket([low], [up], l2, dl2, surrogate=up, name="U(Φ)")
    return _estimate(
        rho_interval(h, dl2),
        quantity="rho_block",
        method="H(Phi)/(d*L2)",
        geometry="block",
        seed=upper.seed,
        settings=upper.settings,
        extra={"point": note, "l2_norm": l2.value, "d": d},
    )


SAME_END = 1e-12  # relative: a point this close to a proven end is that end (round-off)


def _estimate(iv: Interval, *, extra: dict[str, Any], **fields: Any) -> Estimate:
    """An Estimate stating what the interval proves (both ends and their kinds in ``extra``)."""
    ends = {
        "low": iv.low if math.isfinite(iv.low) else None,
        "high": iv.high if math.isfinite(iv.high) else None,
        "low_kind": iv.low_kind.value,
        "high_kind": iv.high_kind.value,
        "low_alpha": iv.low_alpha,
        "high_alpha": iv.high_alpha,
    }
    kw: dict[str, Any] = {}
    value = iv.value
    at = lambda end: math.isclose(value, end, rel_tol=SAME_END)  # noqa: E731
    if iv.low_kind is Kind.EXACT and iv.high_kind is Kind.EXACT:
        bound = Bound.EXACT
    elif iv.high_kind in _PROVEN and at(iv.high):  # an ulp below the end is the end
        bound, value = Bound.UPPER, iv.high
        if math.isfinite(iv.low) and iv.low_alpha > 0:
            kw = {"ci_low": iv.low, "confidence": 1 - 2 * iv.low_alpha}
    elif iv.low_kind in _PROVEN and at(iv.low):
        bound, value = Bound.LOWER, iv.low
        if math.isfinite(iv.high) and iv.high_alpha > 0:
            kw = {"ci_high": iv.high, "confidence": 1 - 2 * iv.high_alpha}
    else:
        bound = Bound.ESTIMATE
        if math.isfinite(iv.low) and math.isfinite(iv.high) and iv.confidence is not None:
            kw = {"ci_low": iv.low, "ci_high": iv.high, "confidence": iv.confidence}
    return Estimate(value=value, bound=bound, **kw, **fields, extra={**extra, **ends})
