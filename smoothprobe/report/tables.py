"""Display tables: the comparison's numbers as strings, one row per checkpoint × basis × geometry.

``summary_table``, ``rotation_display``, ``noise_display``, ``measurements_display`` and
``compare_frame`` show every interval with the kind of bound at each end; ``measurements_table``
is the tidy table behind the measurements section. Formatting lives in ``report.format``, figure
data in ``report.figure_data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from smoothprobe import compare as bounds
from smoothprobe.compare import interval_from_row
from smoothprobe.interval import percent
from smoothprobe.records import RECORD_COLUMNS
from smoothprobe.report.format import (  # noqa: F401  (re-exported: the formatting helpers)
    GEOMETRY_NAMES,
    checkpoint_label,
    fmt_ends,
    fmt_interval,
    fmt_num,
    short_label,
    to_csv,
    to_html,
    to_markdown,
    to_text,
)


def summary_table(frame: pd.DataFrame, *, checkpoint_column: bool = True) -> pd.DataFrame:
    """Constants and ρ per checkpoint × basis × geometry/partition, as display strings.

    Args:
        frame: records.
        checkpoint_column: include the Checkpoint column (drop it for one-checkpoint tables).

    Returns:
        DataFrame with columns Checkpoint, Basis, Geometry, Constant (H(Φ=partition)),
        Optimizer, Bracket, Ends (lower / upper), Point, Point is (what the point value is), ρ
        bracket, ρ point, T_Φ/T_SGD (one row per constant): the proven bracket comes first.
        Rows without d·L₂ show "—" for ρ.
    """
    consts = bounds.constants_table(frame)
    rho = bounds.rho_table(frame)
    rows = []
    for _, row in consts.iterrows():
        iv = interval_from_row(row)
        match = rho[
            (rho["checkpoint"] == row["checkpoint"])
            & _same(rho["step"], row["step"])
            & (rho["basis"] == row["basis"])
            & (rho["geometry"] == row["geometry"])
            & (rho["partition"] == row["partition"])
        ]
        r = interval_from_row(match.iloc[0], "rho_") if not match.empty else None
        status = match.iloc[0]["t_ratio_status"] if not match.empty else ""
        rows.append(
            {
                "Checkpoint": checkpoint_label(row["checkpoint"], row["step"]),
                "Basis": row["basis"],
                "Geometry": GEOMETRY_NAMES.get(row["geometry"], row["geometry"]),
                "Constant": row["constant"],
                "Optimizer": row["optimizer"],
                "Bracket": fmt_interval(iv),
                "Ends (lower / upper)": fmt_ends(iv),
                "Point": fmt_num(iv.value),
                "Point is": row["point"],
                "ρ bracket": fmt_interval(r) if r else "—",
                "ρ point": fmt_num(r.value) if r else "—",
                "T_Φ/T_SGD": f"= ρ, {status}" if r else "—",
            }
        )
    columns = _SUMMARY_COLUMNS if checkpoint_column else _SUMMARY_COLUMNS[1:]
    return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)[columns]


_SUMMARY_COLUMNS = [
    "Checkpoint",
    "Basis",
    "Geometry",
    "Constant",
    "Optimizer",
    "Bracket",
    "Ends (lower / upper)",
    "Point",
    "Point is",
    "ρ bracket",
    "ρ point",
    "T_Φ/T_SGD",
]


def _same(series: pd.Series, value: Any) -> pd.Series:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return series.isna()
    return series == value


def rotation_display(frame: pd.DataFrame, *, checkpoint_column: bool = True) -> pd.DataFrame:
    """Original vs rotated ρ per checkpoint × geometry/partition, as display strings.

    Args:
        frame: records.
        checkpoint_column: include the Checkpoint column.

    Returns:
        DataFrame with Checkpoint, Constant, Optimizer, Rotated basis, ρ original, ρ rotated
        (bracket, then point), H_rot/H_orig bracket, its ends, and its point (the ratio of the
        capped surrogates). Empty when only one basis was measured.
    """
    table = bounds.rotation_table(frame)
    rows = []
    for _, row in table.iterrows():
        orig = interval_from_row(row, "original_rho_")
        rot = interval_from_row(row, "rotated_rho_")
        change = interval_from_row(row, "change_")
        rows.append(
            {
                "Checkpoint": checkpoint_label(row["checkpoint"], row["step"]),
                "Constant": row["constant"],
                "Optimizer": row["optimizer"],
                "Rotated basis": row["basis_rotated"],
                "ρ original": f"{fmt_interval(orig)} pt {fmt_num(orig.value)}",
                "ρ rotated": f"{fmt_interval(rot)} pt {fmt_num(rot.value)}",
                "H_rot/H_orig bracket": fmt_interval(change),
                "Ends (lower / upper)": fmt_ends(change),
                "Point (capped surrogates)": fmt_num(change.value),
            }
        )
    columns = [
        "Checkpoint",
        "Constant",
        "Optimizer",
        "Rotated basis",
        "ρ original",
        "ρ rotated",
        "H_rot/H_orig bracket",
        "Ends (lower / upper)",
        "Point (capped surrogates)",
    ]
    return pd.DataFrame(rows, columns=columns)[columns[0 if checkpoint_column else 1 :]]


def noise_display(frame: pd.DataFrame, *, checkpoint_column: bool = True) -> pd.DataFrame:
    """Gradient-noise terms and their ratio to √d·‖σ‖₂, as display strings (empty if none).

    Args:
        frame: records.
        checkpoint_column: include the Checkpoint column.
    """
    table = bounds.noise_table(frame)
    rows = []
    for _, row in table.iterrows():
        iv = interval_from_row(row)
        ratio = interval_from_row(row, "ratio_")
        has_ratio = not math.isnan(ratio.value)
        rows.append(
            {
                "Checkpoint": checkpoint_label(row["checkpoint"], row["step"]),
                "Basis": row["basis"],
                "Batch size": "—" if row["batch_size"] is None else str(row["batch_size"]),
                "Term": row["term"]
                + (f" (Φ={row['partition']})" if row["quantity"].endswith("_block") else ""),
                "Optimizer": row["optimizer"],
                "Value": f"{fmt_num(iv.value)} {fmt_interval(iv)}",
                "Ends (lower / upper)": fmt_ends(iv),
                "÷ √d·‖σ‖₂": f"{fmt_num(ratio.value)} {fmt_interval(ratio)}" if has_ratio else "—",
                "Role in the bound": bounds.STRUCTURE_ONLY,
            }
        )
    columns = [
        "Checkpoint",
        "Basis",
        "Batch size",
        "Term",
        "Optimizer",
        "Value",
        "Ends (lower / upper)",
        "÷ √d·‖σ‖₂",
        "Role in the bound",
    ]
    return pd.DataFrame(rows, columns=columns)[columns[0 if checkpoint_column else 1 :]]


MEASUREMENT_COLUMNS = tuple(
    c
    for c in RECORD_COLUMNS  # the record schema drives the table: same names, same order
    if c not in ("stderr", "d", "checkpoint_sha256", "dtype", "num_examples", "batch_size")
    and c not in ("settings", "extra", "version", "timestamp")
)


def measurements_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every record as one row (without the bulky ``extra``), sorted by checkpoint, geometry, basis.

    Returns:
        DataFrame with checkpoint, step, geometry, basis, partition, quantity, value, bound,
        ci_low, ci_high, confidence, method, hvps, gradients, seconds, seed.
    """
    frame = bounds.normalize_records(frame)
    columns = list(MEASUREMENT_COLUMNS)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    order = {key: i for i, key in enumerate(bounds.checkpoint_order(frame))}
    frame = frame.assign(
        _order=[
            order[(c, bounds.step_key(s))]
            for c, s in zip(frame["checkpoint"], frame["step"], strict=True)
        ]
    )
    frame = frame.sort_values(
        ["_order", "geometry", "basis", "partition", "quantity"], kind="stable"
    )
    out = frame[columns].copy()
    out["step"] = [None if math.isnan(s) else int(s) for s in out["step"]]
    return out.reset_index(drop=True)


def measurements_display(frame: pd.DataFrame) -> pd.DataFrame:
    """``measurements_table`` with formatted numbers, for reports."""
    table = measurements_table(frame)
    out = pd.DataFrame(
        {
            "Checkpoint": [
                checkpoint_label(c, s)
                for c, s in zip(table["checkpoint"], table["step"], strict=True)
            ],
            "Geometry": [GEOMETRY_NAMES.get(g, g) for g in table["geometry"]],
            "Basis": table["basis"],
            "Partition": table["partition"],
            "Quantity": table["quantity"],
            "Value": [fmt_num(v, digits=4) for v in table["value"]],
            "Bound": table["bound"],
            "Interval": [
                _error_bar(b, lo, hi, c, fp)
                for b, lo, hi, c, fp in zip(
                    table["bound"],
                    table["ci_low"],
                    table["ci_high"],
                    table["confidence"],
                    table["failure_prob"],
                    strict=True,
                )
            ],
            "Method": table["method"].fillna(""),
            "HVPs": [_int_text(x) for x in table["hvps"]],
            "Gradients": [_int_text(x) for x in table["gradients"]],
            "Seconds": [fmt_num(x, digits=2) for x in table["seconds"]],
        }
    )
    return out


def _error_bar(bound: str, low: float, high: float, confidence: float, fp: float) -> str:
    if bound == "prob_upper":
        return "—" if math.isnan(fp) else f"upper bound w.p. ≥ {percent(1 - fp)}"
    if math.isnan(low) or math.isnan(high):
        return "—"
    level = f" ({percent(confidence)} CI)" if 0 < confidence < 1 else ""
    return f"[{fmt_num(low, digits=4)}, {fmt_num(high, digits=4)}]{level}"


def _int_text(x: Any) -> str:
    try:
        return str(int(x))
    except (TypeError, ValueError):
        return "—"


def compare_frame(
    frame_a: pd.DataFrame, frame_b: pd.DataFrame, *, labels: Sequence[str] = ("A", "B")
) -> pd.DataFrame:
    """Side-by-side constants of the latest checkpoint of two record sets.

    Rows are matched on geometry × partition within paired bases: bases both sides measured pair
    with themselves, the remaining ones pair in order, so an identity-basis file against a
    rotated one compares original with rotated (the Basis column then says "identity vs …").
    ``B/A`` is H_B/H_A as a bracket (ends labelled like every other number); the ρ columns are
    brackets of ρ(Φ).

    Args:
        frame_a: records of the first run.
        frame_b: records of the second run.
        labels: names of the two columns groups.

    Returns:
        DataFrame with Basis, Constant, Optimizer, "<A> value", "<A> ρ", "<B> value",
        "<B> ρ", "B/A".
    """
    a_name, b_name = labels
    tables = []
    for frame in (frame_a, frame_b):
        latest = bounds.select_checkpoint(frame)
        tables.append((bounds.constants_table(latest), bounds.rho_table(latest)))
    (consts_a, rho_a), (consts_b, rho_b) = tables
    geometry_rank = {"l2": 0, "linf": 1, "block": 2}
    keys = list(
        dict.fromkeys(
            (g, p)
            for consts in (consts_a, consts_b)
            for g, p in zip(consts["geometry"], consts["partition"], strict=True)
        )
    )
    partitions = bounds.partition_order([k[1] for k in keys])
    keys.sort(key=lambda k: (geometry_rank.get(k[0], 3), partitions.index(k[1])))
    rows = []
    for basis_a, basis_b in basis_pairs(consts_a["basis"], consts_b["basis"]):
        for geometry, partition in keys:
            ca = _pick(consts_a, basis_a, geometry, partition)
            cb = _pick(consts_b, basis_b, geometry, partition)
            if ca is None and cb is None:
                continue
            any_row = ca if ca is not None else cb
            same = basis_a == basis_b
            row = {
                "Basis": basis_a if same else f"{basis_a or '—'} vs {basis_b or '—'}",
                "Constant": any_row["constant"],
                "Optimizer": any_row["optimizer"],
            }
            sides = (
                (a_name, ca, _pick(rho_a, basis_a, geometry, partition)),
                (b_name, cb, _pick(rho_b, basis_b, geometry, partition)),
            )
            for name, c, r in sides:
                iv = interval_from_row(c) if c is not None else None
                row[f"{name} value"] = f"{fmt_num(iv.value)} {fmt_interval(iv)}" if iv else "—"
                rho = interval_from_row(r, "rho_") if r is not None else None
                row[f"{name} ρ"] = fmt_interval(rho) if rho is not None else "—"
            if ca is not None and cb is not None:
                ratio = interval_from_row(cb) / interval_from_row(ca)
                row[f"{b_name}/{a_name}"] = (
                    f"{fmt_num(ratio.value)} {fmt_interval(ratio)} ({fmt_ends(ratio)})"
                )
            else:
                row[f"{b_name}/{a_name}"] = "—"
            rows.append(row)
    columns = [
        "Basis",
        "Constant",
        "Optimizer",
        f"{a_name} value",
        f"{a_name} ρ",
        f"{b_name} value",
        f"{b_name} ρ",
        f"{b_name}/{a_name}",
    ]
    return pd.DataFrame(rows, columns=columns)


def basis_pairs(bases_a: Sequence[str], bases_b: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs the bases of two record sets: shared names with themselves, the rest in order.

    Example:
        >>> basis_pairs(["identity"], ["hadamard:seed=0"])
        [('identity', 'hadamard:seed=0')]
        >>> basis_pairs(["identity", "sign:seed=0"], ["identity"])
        [('identity', 'identity'), ('sign:seed=0', '')]
    """
    a, b = bounds.basis_order(list(bases_a)), bounds.basis_order(list(bases_b))
    pairs = [(x, x) for x in a if x in b]
    rest_a, rest_b = [x for x in a if x not in b], [x for x in b if x not in a]
    n = max(len(rest_a), len(rest_b))
    rest_a, rest_b = rest_a + [""] * (n - len(rest_a)), rest_b + [""] * (n - len(rest_b))
    return pairs + list(zip(rest_a, rest_b, strict=True))


def _pick(table: pd.DataFrame, basis: str, geometry: str, partition: str) -> pd.Series | None:
    sel = table[
        (table["basis"] == basis)
        & (table["geometry"] == geometry)
        & (table["partition"] == partition)
    ]
    return None if sel.empty else sel.iloc[0]
