"""Records → intervals: what one record proves about its quantity, and how several combine.

Second step of the comparison's data flow. ``record_interval`` reads one record's bound kind and
error bar; ``combine_intervals`` merges several measurements of one quantity (intersection, with
the miss probabilities of the statistical/probabilistic ends added: Bonferroni); ``l2_interval``
derives L₂ = ‖H‖₂ from whichever ℓ2 records exist, accounting for both ends of the spectrum.
Tables store intervals as flat columns (``interval_columns``) and read them back
(``interval_from_row``). This module needs no pandas (the suites use it through ``ratio``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

from smoothprobe.interval import Interval, Kind, weaker

L2_QUANTITIES = ("l2_norm", "lambda_max", "lambda_min", "d_l2")
RITZ_LOWER = ("lambda_max", "l2_norm", "d_l2")  # a Ritz value bounds these from below
RESIDUAL_KEYS = ("residual", "ritz_residual")
_PROVEN = (Kind.EXACT, Kind.CERTIFIED)
_NO_END = (Kind.POINT, Kind.NONE)


def to_float(x: Any) -> float:
    """A record field as a float (NaN when absent or not a number)."""
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def record_interval(record: Mapping[str, Any]) -> Interval:
    """Turns one record into an Interval for the quantity it measured.

    Rules by ``bound``:

    - ``exact`` → [v, v].
    - ``prob_upper`` → (−∞, v], the upper end probabilistic with miss probability
      ``failure_prob`` (no stated failure probability: no upper end at all).
    - ``lower`` → [v, ci_high (statistical) or ∞); ``upper`` → [ci_low (statistical) or −∞, v].
    - ``estimate`` → its confidence interval, else v ± z·stderr, else a point without error bar;
      a sketched estimate with ``extra["upper_whp"]`` (and its failure probability) proves
      nothing below and gives that probabilistic upper end.

    Lanczos records (ℓ2 quantities with ``extra["residual"]`` r, a Ritz value θ): θ is certified
    (Rayleigh quotient); the other end is ``extra["prob_upper"]`` (Kuczyński–Woźniakowski, with
    ``extra["failure_prob"]``) when present, else θ ± r labelled *Lanczos residual* when the run
    converged, else unbounded: without convergence θ + r can lie below λ_max.

    Args:
        record: a record dict or DataFrame row.

    Returns:
        The interval for the record's own quantity.
    """
    value = to_float(record.get("value"))
    bound = record.get("bound") or "estimate"
    extra = record.get("extra") if isinstance(record.get("extra"), Mapping) else {}
    confidence = to_float(record.get("confidence"))
    confidence = confidence if 0 < confidence < 1 else 0.95
    tail = (1.0 - confidence) / 2.0  # each end of an equal-tailed two-sided interval
    ci_low, ci_high = to_float(record.get("ci_low")), to_float(record.get("ci_high"))
    if bound == "exact":
        return Interval.exact(value)
    if bound == "prob_upper":
        fp = _probability(record.get("failure_prob"), extra.get("failure_prob"))
        if fp is None:
            return Interval(value, -math.inf, math.inf, Kind.NONE, Kind.NONE)
        return Interval(value, -math.inf, value, Kind.NONE, Kind.PROBABILISTIC, 0.0, fp)
    residual = _residual(extra)
    if residual is not None and record.get("quantity") in L2_QUANTITIES:
        return _ritz_interval(record.get("quantity"), value, residual, extra)
    if bound == "lower":
        if math.isfinite(ci_high):
            return Interval(value, value, ci_high, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, tail)
        return Interval(value, value, math.inf, Kind.CERTIFIED, Kind.NONE)
    if bound == "upper":
        if math.isfinite(ci_low):
            return Interval(value, ci_low, value, Kind.STATISTICAL, Kind.CERTIFIED, tail, 0.0)
        return Interval(value, -math.inf, value, Kind.NONE, Kind.CERTIFIED)
    whp = to_float(extra.get("upper_whp"))
    whp_fp = _probability(extra.get("upper_whp_failure_probability"))
    if math.isfinite(whp) and whp_fp is not None:  # sketched: below the truth's bound, not ours
        return Interval(value, -math.inf, whp, Kind.NONE, Kind.PROBABILISTIC, 0.0, whp_fp)
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


def _probability(*candidates: Any) -> float | None:
    for x in candidates:
        p = to_float(x)
        if 0 <= p <= 1:
            return p
    return None


def _ritz_interval(
    quantity: str, value: float, residual: float, extra: Mapping[str, Any]
) -> Interval:
    converged = extra.get("converged") is True
    if quantity == "lambda_min":  # θ_min ≥ λ_min: the Ritz value is a certified upper end
        prob = to_float(extra.get("prob_lower"))
        fp = _probability(extra.get("failure_prob"))
        if math.isfinite(prob) and fp is not None:
            return Interval(value, prob, value, Kind.PROBABILISTIC, Kind.CERTIFIED, fp, 0.0)
        if converged:
            return Interval(value, value - residual, value, Kind.RESIDUAL, Kind.CERTIFIED)
        return Interval(value, -math.inf, value, Kind.NONE, Kind.CERTIFIED)
    prob = to_float(extra.get("prob_upper"))
    fp = _probability(extra.get("failure_prob"))
    if math.isfinite(prob) and fp is not None:
        return Interval(value, value, prob, Kind.CERTIFIED, Kind.PROBABILISTIC, 0.0, fp)
    if converged and quantity == "lambda_max":  # l2_norm/d_l2: one end only, see l2_interval
        return Interval(value, value, value + residual, Kind.CERTIFIED, Kind.RESIDUAL)
    return Interval(value, value, math.inf, Kind.CERTIFIED, Kind.NONE)


def _residual(extra: Mapping[str, Any]) -> float | None:
    for key in RESIDUAL_KEYS:
        r = to_float(extra.get(key))
        if math.isfinite(r) and r >= 0:
            return r
    return None


def combine_intervals(intervals: Sequence[Interval]) -> Interval | None:
    """Combines several measurements of one quantity into one interval (their intersection).

    An exact measurement wins. Otherwise the lower end is the largest lower end and the upper
    end the smallest upper end. An end chosen from a certified one is certified; otherwise its
    miss probability is the sum of the miss probabilities of every statistical or probabilistic
    end on that side (Bonferroni: the truth is below the largest of several lower ends only if
    it is below one of them), and its kind the weakest among them. Keeping only the narrowest
    of several statistical intervals would void the stated level; this never does. The point
    value is that of the narrowest input, clipped into the result.

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
    if len(intervals) == 1:
        return intervals[0].clipped()
    lows = [(iv.low, iv.low_kind, iv.low_alpha) for iv in intervals if iv.low_kind not in _NO_END]
    highs = [
        (-iv.high, iv.high_kind, iv.high_alpha) for iv in intervals if iv.high_kind not in _NO_END
    ]
    low, low_kind, low_alpha = best_end(lows)
    high, high_kind, high_alpha = best_end(highs)
    high = -high

    def width(iv: Interval) -> float:
        scale = abs(iv.value) if iv.value and math.isfinite(iv.value) else 1.0
        return (iv.high - iv.low) / scale

    finite = [iv for iv in intervals if math.isfinite(iv.value)]
    value = min(reversed(finite), key=width).value if finite else math.nan
    if not lows and not highs:  # only points without error bars: keep the latest one
        return intervals[-1]
    return Interval(value, low, high, low_kind, high_kind, low_alpha, high_alpha).resolved()


def best_end(ends: list[tuple[float, Kind, float]]) -> tuple[float, Kind, float]:
    """The largest of several (end, kind, alpha) triples, with its Bonferroni kind and alpha."""
    if not ends:
        return -math.inf, Kind.NONE, 0.0
    best, kind, _ = max(ends, key=lambda e: e[0])
    if kind in _PROVEN:
        return best, kind, 0.0
    loose = [(k, a) for _, k, a in ends if k not in _PROVEN]
    return best, weaker(*(k for k, _ in loose)), min(1.0, sum(a for _, a in loose))


def quantity_interval(records: Any, quantity: str) -> Interval | None:
    """Returns the combined interval of one quantity among the given records (None if absent).

    Args:
        records: a records DataFrame, or record dicts.
        quantity: the quantity name.
    """
    rows = [r for r in _dicts(records) if r.get("quantity") == quantity]
    return combine_intervals([record_interval(r) for r in rows])


def _dicts(records: Any) -> list[dict[str, Any]]:
    if isinstance(records, list):
        return [r for r in records if not math.isnan(to_float(r.get("value")))]
    from smoothprobe.compare.frame import as_dicts  # a DataFrame: needs pandas

    return as_dicts(records)


def abs_interval(iv: Interval) -> Interval:
    """|x| for x in the interval (the ends keep their kinds)."""
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


def max_interval(a: Interval, b: Interval) -> Interval:
    """max(x, y) for x, y in two intervals: the larger lower end, the larger upper end."""
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


def l2_interval(records: Any, d: float) -> tuple[Interval, str] | None:
    """Returns L₂ = ‖H‖₂ = max(|λ_max|, |λ_min|) as an interval and the quantities it came from.

    Every available source is intersected (``combine_intervals``): ``l2_norm`` (its lower end;
    its upper end only when it is certified or probabilistic, since a residual covers one end of
    the spectrum), max(|λ_max|, |λ_min|) when both ends were measured (the upper end then covers
    both: max(θ_max + r_max, |θ_min| + r_min)), one λ alone as a lower end, and ``d_l2``/d.

    Args:
        records: records of one checkpoint and basis (DataFrame or dicts).
        d: number of parameters (used only for the ``d_l2`` source).

    Returns:
        (interval, source) or None when no ℓ2 quantity was measured.
    """
    records = _dicts(records)
    found: list[tuple[str, Interval]] = []
    for quantity in ("l2_norm", "d_l2"):
        iv = quantity_interval(records, quantity)
        if iv is None or (quantity == "d_l2" and not d > 0):
            continue
        iv = abs_interval(iv.scale(1.0 / d) if quantity == "d_l2" else iv)
        if iv.high_kind is Kind.RESIDUAL:  # θ + r covers one end of the spectrum only
            iv = Interval(iv.value, iv.low, math.inf, iv.low_kind, Kind.NONE, iv.low_alpha)
        found.append((quantity, iv))
    lam = {q: quantity_interval(records, q) for q in ("lambda_max", "lambda_min")}
    lam = {q: abs_interval(iv) for q, iv in lam.items() if iv is not None}
    if len(lam) == 2:
        found.append(("lambda_max/lambda_min", max_interval(lam["lambda_max"], lam["lambda_min"])))
    elif lam:  # one end of the spectrum only: max|λ| may be the other one
        ((q, iv),) = lam.items()
        iv = Interval(iv.value, iv.low, math.inf, iv.low_kind, Kind.NONE, iv.low_alpha)
        found.append((q, iv))
    if not found:
        return None
    return combine_intervals([iv for _, iv in found]), " + ".join(q for q, _ in found)


def interval_columns(iv: Interval | None, prefix: str = "") -> dict[str, Any]:
    """An interval as flat table columns under ``prefix`` (all NaN/none for None)."""
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
