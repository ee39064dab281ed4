"""Intervals whose two ends each remember what kind of bound they are.

A reported constant is rarely a single number: the ℓ∞ constant H∞ lies between a certified lower
bound (sign ascent) and a statistical upper bound (a confidence limit of ‖H‖₁,₁), and L₂ comes from
Lanczos with a residual. When such numbers are divided (ρ = H(Φ)/(d·L₂)), each end of the result
inherits the weakest kind of the ends it was computed from, and each end carries the probability
that it is wrong (its miscoverage; 0 for certified ends). Miscoverages add (union bound): the
interval holds with probability at least 1 − low_alpha − high_alpha, and that joint level is what
the labels print. A two-sided confidence interval at level c gives each end (1 − c)/2 (equal-tailed
intervals, as every normal-theory CI is), so the ratio of two 95% intervals is a 90% interval and
a certified lower end paired with a 95% CI's upper limit is a 97.5% interval.

Example:
    >>> h = Interval(value=360.0, low=194.0, high=380.0,
    ...              low_kind=Kind.CERTIFIED, high_kind=Kind.STATISTICAL, high_alpha=0.05)
    >>> r = h / Interval.exact(604.9)
    >>> round(r.low, 3), r.low_label(), r.high_label()
    (0.321, 'certified lower', 'statistical upper (95% CI)')
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Any


class Kind(str, enum.Enum):
    """What kind of statement one end of an interval makes about the true value."""

    EXACT = "exact"  # equal to the truth up to floating point
    CERTIFIED = "certified"  # a proven bound (e.g. sign ascent, Rayleigh quotient)
    PROBABILISTIC = "probabilistic"  # holds except with a stated failure probability (the alpha)
    STATISTICAL = "statistical"  # a confidence limit; see Interval.low_alpha, high_alpha
    RESIDUAL = "residual"  # θ ± Lanczos residual: holds only if Lanczos found the extreme eigenpair
    POINT = "point"  # an estimate without an error bar: the end is the estimate itself
    NONE = "none"  # nothing is known on this side (the end is ±∞ or a placeholder)


_RANK = {
    Kind.EXACT: 0,
    Kind.CERTIFIED: 1,
    Kind.PROBABILISTIC: 2,
    Kind.STATISTICAL: 3,
    Kind.RESIDUAL: 4,  # no stated probability: weaker than any end that states one
    Kind.POINT: 5,
    Kind.NONE: 6,
}
_WITH_ALPHA = (Kind.PROBABILISTIC, Kind.STATISTICAL)


def weaker(*kinds: Kind) -> Kind:
    """Returns the weakest of the given kinds (the one a combined number inherits)."""
    return max(kinds, key=_RANK.__getitem__)


@dataclass(frozen=True)
class Interval:
    """A point value and an interval [low, high] around the truth, each end labelled.

    Attributes:
        value: the point value (the estimate a table shows; NaN when there is none).
        low: lower end (``-inf`` when unknown).
        high: upper end (``inf`` when unknown).
        low_kind: what kind of bound ``low`` is.
        high_kind: what kind of bound ``high`` is.
        low_alpha: probability that the truth is below ``low`` (0 unless statistical).
        high_alpha: probability that the truth is above ``high`` (0 unless statistical).
    """

    value: float
    low: float
    high: float
    low_kind: Kind
    high_kind: Kind
    low_alpha: float = 0.0
    high_alpha: float = 0.0

    @classmethod
    def exact(cls, value: float) -> Interval:
        """An exactly known number."""
        return cls(float(value), float(value), float(value), Kind.EXACT, Kind.EXACT)

    @classmethod
    def point(cls, value: float) -> Interval:
        """An estimate without an error bar."""
        return cls(float(value), float(value), float(value), Kind.POINT, Kind.POINT)

    @property
    def confidence(self) -> float | None:
        """Joint level of the statistical/probabilistic ends (1 − Σ alpha); None without any."""
        if self.low_kind not in _WITH_ALPHA and self.high_kind not in _WITH_ALPHA:
            return None
        return max(0.0, 1.0 - self.low_alpha - self.high_alpha)

    def scale(self, factor: float) -> Interval:
        """Multiplies by a positive exact constant."""
        if not factor > 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return replace(
            self, value=self.value * factor, low=self.low * factor, high=self.high * factor
        )

    def reciprocal(self) -> Interval:
        """Returns 1/x for a positive interval; an end at or below zero makes the top unbounded."""
        high = 1.0 / self.low if self.low > 0 else math.inf
        high_kind = self.low_kind if self.low > 0 else Kind.NONE
        low = 1.0 / self.high if self.high > 0 else 0.0
        value = math.inf if self.value == 0 else 1.0 / self.value  # NaN stays NaN, 1/∞ = 0
        return Interval(
            value,
            low,
            high,
            self.high_kind,
            high_kind,
            self.high_alpha,
            self.low_alpha if self.low > 0 else 0.0,
        )

    def __truediv__(self, other: Interval) -> Interval:
        """Divides by an interval with a positive lower end (nonnegative numerator assumed)."""
        return self * other.reciprocal()

    def __mul__(self, other: Interval) -> Interval:
        """Multiplies two nonnegative intervals end by end."""
        low = _product(self.low, other.low)
        high = _product(self.high, other.high)
        value = _product(self.value, other.value)
        return Interval(
            value,
            low,
            high,
            weaker(self.low_kind, other.low_kind),
            weaker(self.high_kind, other.high_kind),
            min(1.0, self.low_alpha + other.low_alpha),
            min(1.0, self.high_alpha + other.high_alpha),
        )

    def cap_high(self, bound: float, kind: Kind, *, alpha: float = 0.0) -> Interval:
        """Replaces the upper end by ``bound`` (miscoverage ``alpha``) when that is tighter.

        The point value is clipped into the new interval, so it never lies above a proven end.
        """
        if not bound < self.high:
            return self
        return replace(self, high=bound, high_kind=kind, high_alpha=alpha).resolved()

    def raise_low(self, bound: float, kind: Kind, *, alpha: float = 0.0) -> Interval:
        """Replaces the lower end by ``bound`` (miscoverage ``alpha``) when that is tighter.

        The point value is clipped into the new interval, so it never lies below a proven end.
        """
        if not bound > self.low:
            return self
        return replace(self, low=bound, low_kind=kind, low_alpha=alpha).resolved()

    def resolved(self) -> Interval:
        """Settles ends that cross (low > high: one of them is wrong), then clips the point.

        The weaker end is the one that was wrong (a proven end never is), so it is dropped: the
        interval says nothing on that side rather than something contradicted.
        """
        if not self.low > self.high:
            return self.clipped()
        if _RANK[self.low_kind] <= _RANK[self.high_kind]:
            out = replace(self, high=math.inf, high_kind=Kind.NONE, high_alpha=0.0)
        else:
            out = replace(self, low=-math.inf, low_kind=Kind.NONE, low_alpha=0.0)
        return out.clipped()

    def clipped(self) -> Interval:
        """The same interval with its point value moved into [low, high] (NaN stays NaN)."""
        if math.isnan(self.value) or self.low > self.high:
            return self
        return replace(self, value=min(max(self.value, self.low), self.high))

    @property
    def certified(self) -> bool:
        """True when both ends are proven (exact or certified)."""
        return {self.low_kind, self.high_kind} <= {Kind.EXACT, Kind.CERTIFIED}

    def low_label(self) -> str:
        """Human label of the lower end, e.g. ``"certified lower"``."""
        return _label(self.low_kind, "lower", self.confidence)

    def high_label(self) -> str:
        """Human label of the upper end, e.g. ``"statistical upper (95% CI)"``."""
        return _label(self.high_kind, "upper", self.confidence)

    def to_dict(self) -> dict[str, Any]:
        """Returns a flat JSON-ready dict (infinite ends become None)."""
        return {
            "value": _finite_or_none(self.value),
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "low_kind": self.low_kind.value,
            "high_kind": self.high_kind.value,
            "low_label": self.low_label(),
            "high_label": self.high_label(),
            "confidence": self.confidence,
        }


def _product(a: float, b: float) -> float:
    """a·b for nonnegative extended reals, with 0·∞ = 0 (an exact zero bound stays zero)."""
    if a == 0 or b == 0:
        return 0.0
    return a * b


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _label(kind: Kind, side: str, confidence: float | None) -> str:
    if kind is Kind.EXACT:
        return "exact"
    if kind is Kind.CERTIFIED:
        return f"certified {side}"
    if kind is Kind.RESIDUAL:
        return f"Lanczos-residual {side}"
    if kind is Kind.PROBABILISTIC:
        level = f" ({percent(confidence)} level)" if confidence is not None else ""
        return f"probabilistic {side}{level}"
    if kind is Kind.STATISTICAL:
        level = f" ({percent(confidence)} CI)" if confidence is not None else ""
        return f"statistical {side}{level}"
    if kind is Kind.POINT:
        return "point estimate (no error bar)"
    return "unbounded"


def percent(p: float) -> str:
    """A level as a percentage that never rounds up to 100%: 0.95 → '95%', 0.998 → '99.8%'.

    Example:
        >>> percent(0.975), percent(0.998), percent(0.99996), percent(1.0)
        ('97.5%', '99.8%', '99.996%', '100%')
    """
    if p >= 1:
        return "100%"
    digits = 1
    while round(100 * p, digits) >= 100 and digits < 12:
        digits += 1
    return f"{100 * p:.{digits}f}".rstrip("0").rstrip(".") + "%"
