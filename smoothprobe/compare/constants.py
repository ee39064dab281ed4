"""Intervals → the constants H(Φ): d·L₂, H∞ and blockwise H(Φ) per checkpoint × basis, bracketed.

Third step of the comparison's data flow. Each row brackets one constant between its best lower
end and its best upper end (capped by d·L₂, raised to L₂: L₂ ≤ H(Φ) ≤ d·L₂ for every Φ, see
docs/theory.md), each end labelled with the kind of bound it is.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from smoothprobe.compare.brackets import bracket
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
from smoothprobe.interval import Interval

HINF_LOWER = ("linf_lower", "hinf_lower")  # certified lower bounds on H∞
HINF_UPPER = ("l11_norm", "hinf_upper")  # upper ends: ‖H‖₁,₁'s, the H∞ certificate's
OPTIMIZER_FOR_PARTITION = {
    "singleton": "Adam",
    "row": "Adam-mini (neurons)",
    "head": "Adam-mini (heads)",
    "tensor": "per-tensor Adam",
    "layer": "Adalayer",
    "one": "AdaSGD",
}


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
                        "point": "d·L₂ (L₂'s point value)",
                        "surrogate": dl2.value,
                        **interval_columns(dl2),
                    }
                )
            # H(singletons) = H∞: blockwise singleton records bound the same constant
            singleton = [r for r in recs if r["partition"] == "singleton"]
            lows = [*_pick(recs, *HINF_LOWER), *_pick(singleton, "block_lower")]
            ups = [*_pick(recs, *HINF_UPPER), *_pick(singleton, "block_upper")]
            if lows or ups:
                surrogate = _combine_records(_pick(recs, "l11_norm") or _pick(ups, "block_upper"))
                iv, note = bracket(_intervals(lows), _intervals(ups), l2, dl2, surrogate=surrogate)
                rows.append(
                    {
                        **base,
                        "geometry": "linf",
                        "partition": "singleton",
                        "constant": "H∞",
                        "optimizer": "Adam",
                        "source": _record_sources(lows + ups),
                        "point": note,
                        "surrogate": _value(surrogate),
                        **interval_columns(iv),
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
                surrogate = _combine_records(ups)
                iv, note = bracket(
                    _intervals(lows), _intervals(ups), l2, dl2, surrogate=surrogate, name="U(Φ)"
                )
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
                        "point": note,
                        "surrogate": _value(surrogate),
                        **interval_columns(iv),
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
    "surrogate",
    *interval_columns(None).keys(),
]


def _any_l2(run: list[dict[str, Any]], d: float) -> tuple[Interval, str] | None:
    for basis in basis_order([r["basis"] for r in run]):
        found = l2_interval([r for r in run if r["basis"] == basis], d)
        if found is not None:
            return found[0], f"{found[1]} (basis {basis}; rotation-invariant)"
    return None


def _pick(records: list[dict[str, Any]], *quantities: str) -> list[dict[str, Any]]:
    return [r for r in records if r["quantity"] in quantities]


def _intervals(records: list[dict[str, Any]]) -> list[Interval]:
    return [record_interval(r) for r in records]


def _value(iv: Interval | None) -> float:
    return math.nan if iv is None else iv.value


def _combine_records(records: list[dict[str, Any]]) -> Interval | None:
    return combine_intervals([record_interval(r) for r in records])


def _record_sources(records: list[dict[str, Any]]) -> str:
    names = [
        r["quantity"] + (f"[{r['partition']}]" if r["quantity"].startswith("block") else "")
        for r in records
    ]
    return ", ".join(dict.fromkeys(names))
