"""Records → intervals: what one record proves about its quantity, and how several combine.

Second step of the comparison's data flow. ``record_interval`` reads one record's bound kind and
error bar; ``combine_intervals`` merges several measurements of one quantity; ``l2_interval``
derives L₂ = ‖H‖₂ from whichever ℓ2 records exist. Tables store intervals as flat columns
(``interval_columns``) and read them back (``interval_from_row``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import pandas as pd

from smoothprobe.compare.frame import as_dicts, to_float
from smoothprobe.interval import Interval, Kind, weaker

L2_QUANTITIES = ("l2_norm", "lambda_max", "lambda_min", "d_l2")
RESIDUAL_KEYS = ("residual", "ritz_residual")


def record_interval(record: Mapping[str, Any]) -> Interval:
    """Turns one record into an Interval for the quantity it measured.

    Rules: ``exact`` → [v, v]; ``lower`` → [v, ci_high or ∞); ``upper`` → [ci_low or 0, v];
    ``estimate`` → its confidence interval, else v ± z·stderr, else a point without error bar.
    ℓ2 quantities with ``extra["residual"]`` r (a Ritz value θ) give [θ, θ + r] (θ certified
    by the Rayleigh quotient; the top holds when the extreme eigenpair was found), or
    [θ − r, θ] for ``lambda_min``; for ``d_l2`` the residual must already be scaled by d (as
    ``LanczosResult.to_estimates`` writes it).

    Args:
        record: a record dict or DataFrame row.

    Returns:
        The interval for the record's own quantity.
    """
    value = to_float(record.get("value"))
    bound = record.get("bound") or "estimate"
    confidence = to_float(record.get("confidence"))
    confidence = confidence if 0 < confidence < 1 else 0.95
    tail = (1.0 - confidence) / 2.0  # each end of an equal-tailed two-sided interval
    ci_low, ci_high = to_float(record.get("ci_low")), to_float(record.get("ci_high"))
    if bound == "exact":
        return Interval.exact(value)
    residual = _residual(record)
    if residual is not None and record.get("quantity") in L2_QUANTITIES:
        return _ritz_interval(record.get("quantity"), value, residual)
    if bound == "lower":
        if math.isfinite(ci_high):
            return Interval(value, value, ci_high, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, tail)
        return Interval(value, value, math.inf, Kind.CERTIFIED, Kind.NONE)
    if bound == "upper":
        if math.isfinite(ci_low):
            return Interval(value, ci_low, value, Kind.STATISTICAL, Kind.CERTIFIED, tail, 0.0)
        return Interval(value, -math.inf, value, Kind.NONE, Kind.CERTIFIED)
    if math.isfinite(ci_low) and math.isfinite(ci_high):
        return Interval(value, ci_low, ci_high, Kind.STATISTICAL, Kind.STATISTICAL, tail, tail)
    stderr = to_float(record.get("stderr"))
    if math.isfinite(stderr):
        z = NormalDist().inv_cdf(1.0 - tail)
        return Interval(
            value,
            value - z * stderr,
            value + z * stderr,
            Kind.STATISTICAL,
            Kind.STATISTICAL,
            tail,
            tail,
        )
    return Interval.point(value)


def _ritz_interval(quantity: str, value: float, residual: float) -> Interval:
    if quantity == "lambda_min":  # θ_min ≥ λ_min: the Ritz value is a certified upper end
        return Interval(value, value - residual, value, Kind.RESIDUAL, Kind.CERTIFIED)
    return Interval(value, value, value + residual, Kind.CERTIFIED, Kind.RESIDUAL)


def _residual(record: Mapping[str, Any]) -> float | None:
    extra = record.get("extra") or {}
    for key in RESIDUAL_KEYS:
        r = to_float(extra.get(key)) if isinstance(extra, Mapping) else math.nan
        if math.isfinite(r) and r >= 0:
            return r
    return None


def combine_intervals(intervals: Sequence[Interval]) -> Interval | None:
    """Combines several measurements of one quantity into one interval.

    An exact measurement wins. Otherwise the narrowest interval (relative width; the later one
    on ties) is kept and tightened by every certified end of the others (the largest certified
    lower end, the smallest certified upper end). Statistical intervals are never intersected.

    Args:
        intervals: intervals for the same quantity.

    Returns:
        The combined interval, or None for an empty input.
    """
    if not intervals:
        return None
    exact = [iv for iv in intervals if iv.low_kind is Kind.EXACT and iv.high_kind is Kind.EXACT]
    if exact:
        return exact[-1]

    def width(iv: Interval) -> float:
        scale = abs(iv.value) if iv.value and math.isfinite(iv.value) else 1.0
        return (iv.high - iv.low) / scale

    best = min(reversed(intervals), key=width)
    for iv in intervals:
        if iv.low_kind is Kind.CERTIFIED:
            best = best.raise_low(iv.low, Kind.CERTIFIED)
        if iv.high_kind is Kind.CERTIFIED:
            best = best.cap_high(iv.high, Kind.CERTIFIED)
    return best


def quantity_interval(
    records: pd.DataFrame | list[dict[str, Any]], quantity: str
) -> Interval | None:
    """Returns the combined interval of one quantity among the given records (None if absent).

    Args:
        records: a records DataFrame, or record dicts.
        quantity: the quantity name.
    """
    rows = [r for r in as_dicts(records) if r.get("quantity") == quantity]
    return combine_intervals([record_interval(r) for r in rows])


def _abs_interval(iv: Interval) -> Interval:
    if iv.low >= 0:
        return iv
    if iv.high <= 0:
        return Interval(
            -iv.value, -iv.high, -iv.low, iv.high_kind, iv.low_kind, iv.high_alpha, iv.low_alpha
        )
    top = max(-iv.low, iv.high)
    top_kind, top_alpha = (
        (iv.low_kind, iv.low_alpha) if -iv.low >= iv.high else (iv.high_kind, iv.high_alpha)
    )
    return Interval(abs(iv.value), 0.0, top, Kind.NONE, top_kind, 0.0, top_alpha)


def _max_interval(a: Interval, b: Interval) -> Interval:
    low, low_kind, low_alpha = (
        (a.low, a.low_kind, a.low_alpha) if a.low >= b.low else (b.low, b.low_kind, b.low_alpha)
    )
    return Interval(
        max(a.value, b.value),
        low,
        max(a.high, b.high),
        low_kind,
        weaker(a.high_kind, b.high_kind),
        low_alpha,
        min(1.0, a.high_alpha + b.high_alpha),
    )


def l2_interval(
    records: pd.DataFrame | list[dict[str, Any]], d: float
) -> tuple[Interval, str] | None:
    """Returns L₂ = ‖H‖₂ as an interval and the quantity it came from.

    Args:
        records: records of one checkpoint and basis.
        d: number of parameters (used only for the ``d_l2`` fallback).

    Returns:
        (interval, source) or None when no ℓ2 quantity was measured.
    """
    records = as_dicts(records)
    iv = quantity_interval(records, "l2_norm")
    if iv is not None:
        return _abs_interval(iv), "l2_norm"
    lam = [quantity_interval(records, q) for q in ("lambda_max", "lambda_min")]
    lam = [_abs_interval(x) for x in lam if x is not None]
    if lam:
        source = "lambda_max/lambda_min" if len(lam) == 2 else "lambda_max or lambda_min"
        out = lam[0] if len(lam) == 1 else _max_interval(*lam)
        if len(lam) == 1:  # one end of the spectrum only: max|λ| may be the other one
            out = Interval(out.value, out.low, math.inf, out.low_kind, Kind.NONE, out.low_alpha)
        return out, source
    iv = quantity_interval(records, "d_l2")
    if iv is not None and d > 0:
        return iv.scale(1.0 / d), "d_l2"
    return None


def interval_columns(iv: Interval | None, prefix: str = "") -> dict[str, Any]:
    if iv is None:
        iv = Interval(math.nan, math.nan, math.nan, Kind.NONE, Kind.NONE)
    return {
        f"{prefix}value": iv.value,
        f"{prefix}low": iv.low,
        f"{prefix}high": iv.high,
        f"{prefix}low_kind": iv.low_kind.value,
        f"{prefix}high_kind": iv.high_kind.value,
        f"{prefix}low_alpha": iv.low_alpha,
        f"{prefix}high_alpha": iv.high_alpha,
        f"{prefix}low_label": iv.low_label(),
        f"{prefix}high_label": iv.high_label(),
        f"{prefix}confidence": iv.confidence,
    }


def interval_from_row(row: Mapping[str, Any], prefix: str = "") -> Interval:
    """Rebuilds the Interval stored in a table row under ``prefix`` (inverse of the tables)."""
    return Interval(
        float(row[f"{prefix}value"]),
        float(row[f"{prefix}low"]),
        float(row[f"{prefix}high"]),
        Kind(row[f"{prefix}low_kind"]),
        Kind(row[f"{prefix}high_kind"]),
        float(row[f"{prefix}low_alpha"]),
        float(row[f"{prefix}high_alpha"]),
    )
