"""The result of one estimator: a value, what kind of bound it is, its error bar and its cost.

Quantity names (records, reports and the CLI agree on these) are the members of
``smoothprobe.quantities.Quantity``, whose docstring is the table of what each one means.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Bound(str, enum.Enum):
    """What a reported value is, relative to the true quantity."""

    EXACT = "exact"  # equal up to floating point
    LOWER = "lower"  # certified: never above the truth
    UPPER = "upper"  # certified: never below the truth
    ESTIMATE = "estimate"  # statistical: see stderr / ci_low / ci_high
    PROB_UPPER = "prob_upper"  # never below the truth except with probability ≤ failure_prob


@dataclass(frozen=True)
class Estimate:
    """One estimated quantity with its error bar and cost.

    Attributes:
        quantity: name from the table in this module's docstring.
        value: the estimate.
        bound: what kind of number ``value`` is.
        stderr: standard error for statistical estimates.
        ci_low, ci_high: confidence interval at level ``confidence``.
        confidence: level of the interval, e.g. 0.95.
        failure_prob: for ``Bound.PROB_UPPER``, the probability (over the estimator's own random
            draws) that ``value`` lies below the truth.
        hvps: Hessian-vector products used (one per probe vector).
        gradients: gradient evaluations used.
        seconds: wall time.
        seed: seed of the generator the estimator drew from.
        method: estimator name, e.g. ``"lanczos"`` or ``"two-phase"``.
        geometry: ``"l2"``, ``"linf"`` or ``"block"`` (empty when not applicable).
        settings: JSON-serializable options the estimator ran with.
        extra: JSON-serializable diagnostics (residuals, iterations, top-k values, ...).
    """

    quantity: str
    value: float
    bound: Bound = Bound.ESTIMATE
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    failure_prob: float | None = None
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    method: str = ""
    geometry: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def estimates(self) -> list[Estimate]:
        """Returns ``[self]``: an Estimate is also an estimator result (the common contract)."""
        return [self]

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (the bound as its string value)."""
        out = asdict(self)
        out["bound"] = self.bound.value
        return out
