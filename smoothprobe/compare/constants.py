"""Intervals → the constants H(Φ): d·L₂, H∞ and blockwise H(Φ) per checkpoint × basis, bracketed.

Third step of the comparison's data flow. Each row brackets one constant between its best lower
end and its best upper end (capped by d·L₂, raised to L₂: L₂ ≤ H(Φ) ≤ d·L₂ for every Φ, see
docs/theory.md), each end labelled with the kind of bound it is.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from smoothprobe.compare.frame import (
    as_dicts,
    basis_order,
    dimension,
    normalize_records,
    partition_order,
    runs,
    step_out,
)
from smoothprobe.compare.intervals import (
    combine_intervals,
    interval_columns,
    l2_interval,
    record_interval,
)
from smoothprobe.interval import Interval, Kind

OPTIMIZER_FOR_PARTITION = {
    "singleton": "Adam",
    "row": "Adam-mini (neurons)",
    "head": "Adam-mini (heads)",
    "tensor": "per-tensor Adam",
    "layer": "Adalayer",
    "one": "AdaSGD",
}


def _bracket(
    lower: Interval | None,
    upper: Interval | None,
    l2: Interval | None,
    dl2: Interval | None,
) -> Interval:
    """H ∈ [lower bound's low end, upper bound's high end], capped by d·L₂ and raised to L₂."""
    low, low_kind, low_alpha = 0.0, Kind.NONE, 0.0
    high, high_kind, high_alpha = math.inf, Kind.NONE, 0.0
    if lower is not None:
        low, low_kind, low_alpha = lower.low, lower.low_kind, lower.low_alpha
    if upper is not None:
        high, high_kind, high_alpha = upper.high, upper.high_kind, upper.high_alpha
    value = upper.value if upper is not None else (lower.value if lower is not None else math.nan)
    iv = Interval(value, low, high, low_kind, high_kind, low_alpha, high_alpha)
    if dl2 is not None:
        iv = iv.cap_high(dl2.high, dl2.high_kind, alpha=dl2.high_alpha)
    if l2 is not None:
        iv = iv.raise_low(l2.low, l2.low_kind, alpha=l2.low_alpha)
    return iv


def _point_note(lower: Interval | None, upper: Interval | None, surrogate: str) -> str:
    if upper is not None:
        return f"{surrogate} (upper-bound surrogate)"
    if lower is not None:
        return "certified lower bound (no upper bound measured)"
    return ""


def constants_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The constants H(Φ) per checkpoint × basis × geometry/partition, with labelled intervals.

    Rows: ``d·L₂`` (geometry l2, partition one), ``H∞`` (linf, singleton) and ``H(Φ)`` for each
    blockwise partition; a row appears only when its records exist.

    Args:
        frame: records.

    Returns:
        DataFrame with columns checkpoint, step, basis, geometry, partition, constant, optimizer,
        d, source, point, then the interval: value, low, high, low_kind, high_kind, low_alpha,
        high_alpha, low_label, high_label, confidence.
    """
    rows: list[dict[str, Any]] = []
    frame = normalize_records(frame)
    if frame.empty:
        return pd.DataFrame(rows, columns=CONSTANT_COLUMNS)
    for checkpoint, step, run_frame in runs(frame):
        run = as_dicts(run_frame)
        for basis in basis_order([r["basis"] for r in run]):
            recs = [r for r in run if r["basis"] == basis]
            d = dimension(recs)
            d = dimension(run) if math.isnan(d) else d
            found = l2_interval(recs, d)
            if found is None:  # L₂ is rotation invariant: borrow another basis's measurement
                found = _any_l2(run, d)
            l2, l2_source = found if found else (None, "")
            dl2 = l2.scale(d) if l2 is not None and d > 0 else None
            base = {"checkpoint": checkpoint, "step": step_out(step), "basis": basis, "d": d}
            if dl2 is not None:
                rows.append(
                    {
                        **base,
                        "geometry": "l2",
                        "partition": "one",
                        "constant": "d·L₂",
                        "optimizer": "SGD",
                        "source": l2_source,
                        "point": "d·L₂",
                        **interval_columns(dl2),
                    }
                )
            # H(singletons) = H∞: blockwise singleton records bound the same constant
            singleton = [r for r in recs if r["partition"] == "singleton"]
            lows = _pick(recs, "linf_lower") + _pick(singleton, "block_lower")
            ups = _pick(recs, "l11_norm") + _pick(singleton, "block_upper")
            if lows or ups:
                lower, upper = _combine_records(lows), _combine_records(ups)
                rows.append(
                    {
                        **base,
                        "geometry": "linf",
                        "partition": "singleton",
                        "constant": "H∞",
                        "optimizer": "Adam",
                        "source": _record_sources(lows + ups),
                        "point": _point_note(lower, upper, "‖H‖₁,₁"),
                        **interval_columns(_bracket(lower, upper, l2, dl2)),
                    }
                )
            block = [
                r
                for r in recs
                if r["quantity"] in ("block_upper", "block_lower") and r["partition"] != "singleton"
            ]
            for partition in partition_order([r["partition"] for r in block]):
                part = [r for r in block if r["partition"] == partition]
                lows, ups = _pick(part, "block_lower"), _pick(part, "block_upper")
                lower, upper = _combine_records(lows), _combine_records(ups)
                rows.append(
                    {
                        **base,
                        "geometry": "block",
                        "partition": partition,
                        "constant": f"H(Φ={partition})",
                        "optimizer": OPTIMIZER_FOR_PARTITION.get(
                            partition, f"blockwise ({partition})"
                        ),
                        "source": _record_sources(lows + ups),
                        "point": _point_note(lower, upper, "U(Φ)"),
                        **interval_columns(_bracket(lower, upper, l2, dl2)),
                    }
                )
    return pd.DataFrame(rows, columns=CONSTANT_COLUMNS)


CONSTANT_COLUMNS = [
    "checkpoint",
    "step",
    "basis",
    "geometry",
    "partition",
    "constant",
    "optimizer",
    "d",
    "source",
    "point",
    *interval_columns(None).keys(),
]


def _any_l2(run: list[dict[str, Any]], d: float) -> tuple[Interval, str] | None:
    for basis in basis_order([r["basis"] for r in run]):
        found = l2_interval([r for r in run if r["basis"] == basis], d)
        if found is not None:
            return found[0], f"{found[1]} (basis {basis}; rotation-invariant)"
    return None


def _pick(records: list[dict[str, Any]], quantity: str) -> list[dict[str, Any]]:
    return [r for r in records if r["quantity"] == quantity]


def _combine_records(records: list[dict[str, Any]]) -> Interval | None:
    return combine_intervals([record_interval(r) for r in records])


def _record_sources(records: list[dict[str, Any]]) -> str:
    names = [
        r["quantity"] + (f"[{r['partition']}]" if r["quantity"].startswith("block") else "")
        for r in records
    ]
    return ", ".join(dict.fromkeys(names))
