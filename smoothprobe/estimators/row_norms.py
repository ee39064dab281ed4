"""Per-coordinate row ℓ1 norms r_i = ‖H_{i,:}‖₁ ("coordinate-wise smoothness") and ‖H‖∞→∞.

Σ_i r_i = ‖H‖₁,₁ and max_i r_i = ‖H‖∞→∞ (MATH.md §2). Row norms come from a (1,1)-norm run:
Cauchy estimates r̂_i for every row, and — by symmetry of H — the *exact* r_j of every column j
that was evaluated (H e_j is row j). Exact columns also certify a lower bound on every row:
r_i ≥ Σ_{j∈S} |H_ij|. :class:`RowNorms` holds these, summarizes them per parameter tensor and
exports them for histograms; :func:`refine_max_row` spends a few more HVPs on the rows most likely
to be the largest, so the reported ‖H‖∞→∞ is an exact row norm whenever the estimates agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.column_sampling import evaluate_columns
from smoothprobe.estimators.sampling import check_int
from smoothprobe.layout import ParameterLayout

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class RowNorms:
    """Row ℓ1 norms of H: estimates, which of them are exact, and certified lower bounds.

    Attributes:
        estimates: (d,) float64; exact where ``exact``; NaN where nothing is known.
        exact: (d,) bool, rows computed exactly (from an exact column, by symmetry).
        lower: (d,) float64 certified lower bounds r_i ≥ lower_i (equal to r_i where exact).
        layout: parameter layout of the coordinates.
        source: how the estimates were made, e.g. ``"cauchy-geomean(k=128)+columns(128)"``.
    """

    estimates: torch.Tensor
    exact: torch.Tensor
    lower: torch.Tensor
    layout: ParameterLayout
    source: str

    @classmethod
    def empty(cls, layout: ParameterLayout, *, source: str = "none") -> RowNorms:
        """No information: NaN estimates, zero lower bounds."""
        d = layout.d
        nan = torch.full((d,), math.nan, dtype=torch.float64)
        return cls(
            nan,
            torch.zeros(d, dtype=torch.bool),
            torch.zeros(d, dtype=torch.float64),
            layout,
            source,
        )

    @classmethod
    def from_estimates(
        cls, estimates: torch.Tensor, layout: ParameterLayout, *, source: str
    ) -> RowNorms:
        """Rows with statistical estimates only (e.g. a Cauchy sketch)."""
        d = layout.d
        return cls(
            estimates.detach().to(torch.float64).cpu(),
            torch.zeros(d, dtype=torch.bool),
            torch.zeros(d, dtype=torch.float64),
            layout,
            source,
        )

    def with_columns(
        self,
        indices: torch.Tensor,
        norms: torch.Tensor,
        row_lower: torch.Tensor | None = None,
        *,
        source: str | None = None,
    ) -> RowNorms:
        """Returns a copy where rows ``indices`` are exact (``norms``) and lower bounds raised.

        Args:
            indices: (n,) evaluated columns (= exact rows by symmetry).
            norms: (n,) their exact ℓ1 norms.
            row_lower: optional (d,) Σ_{j∈S}|H_ij| from the same columns.
            source: new description (default: unchanged).
        """
        estimates, exact = self.estimates.clone(), self.exact.clone()
        lower = self.lower.clone()
        norms = norms.to(torch.float64).cpu()
        estimates[indices] = norms
        exact[indices] = True
        if row_lower is not None:
            lower = torch.maximum(lower, row_lower.to(torch.float64).cpu())
        lower[indices] = norms
        return replace(
            self, estimates=estimates, exact=exact, lower=lower, source=source or self.source
        )

    def add_columns_(
        self, indices: torch.Tensor, norms: torch.Tensor, row_lower: torch.Tensor | None = None
    ) -> RowNorms:
        """``with_columns`` in place (no copy of the three d-vectors); returns ``self``."""
        norms = norms.to(torch.float64).cpu()
        self.estimates[indices] = norms
        self.exact[indices] = True
        if row_lower is not None:
            torch.maximum(self.lower, row_lower.to(torch.float64).cpu(), out=self.lower)
        self.lower[indices] = norms
        return self

    @property
    def d(self) -> int:
        return self.layout.d

    def to_numpy(self) -> np.ndarray:
        """The (d,) row-norm estimates as float64 NumPy (for histograms; NaN where unknown)."""
        return self.estimates.numpy().copy()

    def location(self, index: int) -> dict:
        """Tensor name and index inside that tensor of flat coordinate ``index``."""
        for slot in self.layout.slots:
            if slot.start <= index < slot.stop:
                inner = np.unravel_index(index - slot.start, slot.shape) if slot.shape else ()
                return {
                    "index": int(index),
                    "tensor": slot.name,
                    "position": [int(i) for i in inner],
                }
        raise IndexError(index)

    def summary(self, *, quantiles: tuple[float, ...] = QUANTILES) -> list[dict]:
        """One JSON-ready row per parameter tensor.

        Returns:
            Dicts with name, numel, known (rows with a value), exact (exactly known rows), sum,
            mean, max, argmax (index inside the tensor) and ``q<p>`` quantiles of the estimates;
            sum is over known rows only.
        """
        values = self.to_numpy()
        exact = self.exact.numpy()
        out = []
        for slot in self.layout.slots:
            v = values[slot.start : slot.stop]
            known = ~np.isnan(v)
            row = {
                "name": slot.name,
                "numel": slot.numel,
                "known": int(known.sum()),
                "exact": int(exact[slot.start : slot.stop].sum()),
            }
            if known.any():
                kv = v[known]
                pos = int(np.nanargmax(v))
                row.update(
                    sum=float(kv.sum()),
                    mean=float(kv.mean()),
                    max=float(kv.max()),
                    argmax=[int(i) for i in np.unravel_index(pos, slot.shape)]
                    if slot.shape
                    else [],
                )
                for q in quantiles:
                    row[f"q{q:g}"] = float(np.quantile(kv, q))
            out.append(row)
        return out

    def certified_max_lower(self) -> float:
        """max_i lower_i: a certified lower bound on ‖H‖∞→∞ (and on ‖H‖∞→1 ≥ max_j ‖H e_j‖₁)."""
        return float(self.lower.max()) if self.d else 0.0

    def best_index(self) -> int | None:
        """Index of the largest known row value (None when nothing is known)."""
        values = torch.where(torch.isnan(self.estimates), -math.inf, self.estimates)
        if not bool(torch.isfinite(values).any()):
            return None
        return int(values.argmax())


def refine_max_row(
    operator,
    rows: RowNorms,
    *,
    max_hvps: int = 32,
    round_size: int = 8,
    chunk_size: int = 8,
    in_place: bool = False,
) -> tuple[RowNorms, int]:
    """Evaluates exactly the rows most likely to be the largest, until the estimates agree.

    Repeatedly takes the ``round_size`` non-exact rows with the largest estimates and computes
    them exactly (one HVP each, H e_j = row j by symmetry), stopping when no remaining estimate
    exceeds the largest exact row norm or after ``max_hvps`` HVPs.

    Args:
        operator: symmetric operator.
        rows: current row norms (estimates for every row, e.g. from a Cauchy sketch).
        max_hvps: HVP cap (0 disables refinement).
        round_size: rows evaluated per round (which rows are chosen depends on it).
        chunk_size: probes per ``matvec`` call (memory only: the result does not depend on it).
        in_place: update ``rows`` itself instead of a copy (at 124M the copy is 2 GB).

    Returns:
        (refined rows, HVPs used).
    """
    check_int("max_hvps", max_hvps, minimum=0)
    check_int("round_size", round_size, minimum=1)
    check_int("chunk_size", chunk_size, minimum=1)
    used = 0
    while used < max_hvps:
        candidates = torch.where(
            rows.exact | torch.isnan(rows.estimates), -math.inf, rows.estimates
        )
        best_exact = float(rows.estimates[rows.exact].max()) if rows.exact.any() else -math.inf
        take = min(round_size, max_hvps - used, int(torch.isfinite(candidates).sum()))
        if take == 0:
            break
        top = torch.topk(candidates, take)
        if float(top.values[0]) <= best_exact:
            break
        indices = top.indices[torch.isfinite(top.values)]
        lower = torch.zeros(rows.d, dtype=torch.float64)
        norms = evaluate_columns(operator, indices, chunk_size=chunk_size, row_lower=lower)
        if in_place:
            rows.add_columns_(indices, norms, lower)
        else:
            rows = rows.with_columns(indices, norms, lower)
        used += int(indices.numel())
    return rows, used


def max_row_estimate(
    rows: RowNorms,
    *,
    hvps: int = 0,
    seconds: float = 0.0,
    seed: int | None = None,
    method: str = "",
    settings: dict | None = None,
) -> Estimate:
    """‖H‖∞→∞ = max_i r_i as an Estimate, with the certified lower bound in ``extra``.

    The value is the largest known row value (exact where known, else a statistical estimate);
    it is EXACT when every row is exact, and a certified LOWER bound when only exact rows are
    known (uniform/stratified columns). ``extra`` holds ``certified_lower``, ``argmax`` (tensor
    and position) and ``argmax_exact``.

    Args:
        rows: row norms.
        hvps: HVPs spent on these rows (reported, not counted here).
        seconds: wall time to report.
        seed: generator seed to report.
        method: e.g. ``"two-phase+refine"``.
        settings: options to record.

    Returns:
        Estimate with quantity ``"max_row"``.
    """
    lower = rows.certified_max_lower()
    best = rows.best_index()
    if best is None:
        value, bound, where, at_exact = lower, Bound.LOWER, None, True
    else:
        value = float(rows.estimates[best])
        at_exact = bool(rows.exact[best])
        all_exact = bool(rows.exact.all())
        only_exact = bool((rows.exact | torch.isnan(rows.estimates)).all())
        bound = Bound.EXACT if all_exact else Bound.LOWER if only_exact else Bound.ESTIMATE
        if bound is Bound.LOWER:
            value = max(value, lower)
        where = rows.location(best)
    return Estimate(
        quantity="max_row",
        value=value,
        bound=bound,
        hvps=hvps,
        seconds=seconds,
        seed=seed,
        method=method,
        geometry="linf",
        settings=dict(settings or {}),
        extra={
            "certified_lower": lower,
            "argmax": where,
            "argmax_exact": at_exact,
            "exact_rows": int(rows.exact.sum()),
            "d": rows.d,
            "source": rows.source,
        },
    )


def row_norm_payload(
    values: np.ndarray | torch.Tensor,
    layout: ParameterLayout,
    *,
    bins: int = 40,
    raw_limit: int = 4096,
) -> dict[str, Any]:
    """The ``extra`` entry that lets the report plot row-norm histograms per tensor.

    Merge it into the ``extra`` of an ℓ∞ record (e.g. ``l11_norm``). Small models (d ≤
    ``raw_limit``) get the raw norms, ``{"row_norms": {tensor: [r_i, ...]}}``; larger ones a
    histogram on shared log-spaced edges, ``{"row_norm_hist": {tensor: {"edges", "counts"}}}``
    (O(bins) per tensor, whatever d is). NaN entries (rows not estimated) are left out.

    Args:
        values: (d,) row-norm estimates r̂_i (array or tensor), in the layout's flat order.
        layout: the ``ParameterLayout`` (slots with ``name``, ``start``, ``stop``).
        bins: histogram bins for large models.
        raw_limit: largest d exported raw.

    Returns:
        The dict to merge into ``extra``.
    """
    v = np.abs(np.asarray(values.tolist() if hasattr(values, "tolist") else values, dtype=float))
    per = {s.name: v[s.start : s.stop] for s in layout.slots}
    per = {name: x[np.isfinite(x)] for name, x in per.items()}
    if v.size <= raw_limit:
        return {"row_norms": {name: x.tolist() for name, x in per.items()}}
    positive = v[np.isfinite(v) & (v > 0)]
    if positive.size == 0:
        return {}
    lo, hi = float(positive.min()), float(positive.max())
    edges = np.logspace(np.log10(lo), np.log10(hi * 1.0001 if hi > lo else lo * 10), bins + 1)
    return {
        "row_norm_hist": {
            name: {"edges": edges.tolist(), "counts": np.histogram(x[x > 0], edges)[0].tolist()}
            for name, x in per.items()
        }
    }
