"""Tidy tables from records, and their rendering as Markdown, HTML, CSV and terminal text.

Two kinds of functions live here:

- tidy data for plots and tables (``spectral_density_data``, ``row_norm_histograms``,
  ``block_contribution_data``, ``graddiff_data``, ``measurements_table``): one row per
  observation, numbers as floats;
- display tables (``summary_table``, ``rotation_display``, ``noise_display``,
  ``compare_frame``): strings, one row per checkpoint × basis × geometry/partition, every interval
  shown with the kind of bound at each end; and renderers (``to_markdown``, ``to_html``,
  ``to_text``, ``to_csv``) that need no extra dependency (pandas' ``to_markdown`` would need
  tabulate).

Record conventions read for plots (absent keys mean the plot is skipped):

- spectral density: quantity ``spectral_density`` with ``extra["grid"]`` (eigenvalues) and
  ``extra["density"]`` (same length);
- row norms: any record (ℓ∞ ones are preferred) with ``extra["row_norms"]`` = {tensor name:
  [r_i, ...]} or ``extra["row_norm_hist"]`` = {tensor name: {"edges": [...], "counts": [...]}};
- blockwise heatmap: ``block_upper`` records with ``extra["contributions"]`` (n × n nested list of
  √(d_b d_b')‖H_bb'‖₂) and ``extra["block_names"]`` (n names);
- gradient differences: quantities ``graddiff_<statistic>`` with ``settings["radius"]``;
- trajectories: ordinary records with a ``step``, and ``step_ratio`` records (one per step and
  geometry) for the step-wise ratio.

``row_norm_payload`` builds the row-norm entry for an estimator's ``extra``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from smoothprobe import bounds
from smoothprobe.bounds import interval_from_row
from smoothprobe.interval import Interval

GEOMETRY_NAMES = {"l2": "ℓ2", "linf": "ℓ∞", "block": "blockwise"}


# ---------------------------------------------------------------------------------- formatting


def fmt_num(x: Any, *, digits: int = 3) -> str:
    """Formats a number with ``digits`` significant digits (plain between 1e-3 and 1e6,
    exponent otherwise; no thousands separator, which would clash with "[low, high]");
    None/NaN become "—", infinities "∞"."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    a = abs(float(f"{x:.{digits - 1}e}"))  # after rounding: 0.99996 counts as 1.00
    if 1e-3 <= a < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(a)))
        text = f"{x:.{decimals}f}"
        if text.strip("-0.") == "":  # rounding ate every digit
            return f"{x:.{digits - 1}e}"
        return text
    return f"{x:.{digits - 1}e}"


def fmt_interval(iv: Interval, *, digits: int = 3) -> str:
    """``[low, high]`` with ``fmt_num``."""
    return f"[{fmt_num(iv.low, digits=digits)}, {fmt_num(iv.high, digits=digits)}]"


def short_label(label: str) -> str:
    """Short form of an end label: 'statistical upper (97.5% CI)' → '97.5% CI',
    'certified lower' → 'certified', 'Lanczos-residual upper' → 'Lanczos residual'."""
    label = label.replace(" lower", "").replace(" upper", "")
    if label.startswith("statistical ("):
        return label[len("statistical (") : -1]
    short = {
        "Lanczos-residual": "Lanczos residual",
        "point estimate (no error bar)": "no error bar",
    }
    return short.get(label, label)


def fmt_ends(iv: Interval) -> str:
    """The kinds of both ends, lower / upper, e.g. ``"certified / 95% CI"``."""
    low, high = short_label(iv.low_label()), short_label(iv.high_label())
    return low if low == high else f"{low} / {high}"


def checkpoint_label(checkpoint: str, step: Any) -> str:
    """``name @ step N`` (or just the name without a step)."""
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return str(checkpoint)
    return f"{checkpoint} @ step {int(step)}"


# ------------------------------------------------------------------------------ display tables


def summary_table(frame: pd.DataFrame, *, checkpoint_column: bool = True) -> pd.DataFrame:
    """Constants and ρ per checkpoint × basis × geometry/partition, as display strings.

    Args:
        frame: records.
        checkpoint_column: include the Checkpoint column (drop it for one-checkpoint tables).

    Returns:
        DataFrame with columns Checkpoint, Basis, Geometry, Constant (H(Φ=partition)),
        Optimizer, Value, Bracket, Ends (lower / upper), ρ̂, ρ bracket, T_Φ/T_SGD (one row per
        constant). Rows without d·L₂ show "—" for ρ.
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
                "Value": fmt_num(iv.value),
                "Bracket": fmt_interval(iv),
                "Ends (lower / upper)": fmt_ends(iv),
                "ρ̂": fmt_num(r.value) if r else "—",
                "ρ bracket": fmt_interval(r) if r else "—",
                "T_Φ/T_SGD": f"= ρ̂, {status}" if r else "—",
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
    "Value",
    "Bracket",
    "Ends (lower / upper)",
    "ρ̂",
    "ρ bracket",
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
        DataFrame with Checkpoint, Constant, Optimizer, Rotated basis, ρ̂ original, ρ̂ rotated,
        H_rot/H_orig (point, bracket, bracket ends). Empty when only one basis was measured.
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
                "ρ̂ original": f"{fmt_num(orig.value)} {fmt_interval(orig)}",
                "ρ̂ rotated": f"{fmt_num(rot.value)} {fmt_interval(rot)}",
                "H_rot/H_orig": fmt_num(change.value),
                "Bracket": fmt_interval(change),
                "Ends (lower / upper)": fmt_ends(change),
            }
        )
    columns = [
        "Checkpoint",
        "Constant",
        "Optimizer",
        "Rotated basis",
        "ρ̂ original",
        "ρ̂ rotated",
        "H_rot/H_orig",
        "Bracket",
        "Ends (lower / upper)",
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


def measurements_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every record as one row (without the bulky ``extra``), sorted by checkpoint, geometry, basis.

    Returns:
        DataFrame with checkpoint, step, geometry, basis, partition, quantity, value, bound,
        ci_low, ci_high, confidence, method, hvps, gradients, seconds, seed.
    """
    frame = bounds.normalize_records(frame)
    columns = [
        "checkpoint",
        "step",
        "geometry",
        "basis",
        "partition",
        "quantity",
        "value",
        "bound",
        "ci_low",
        "ci_high",
        "confidence",
        "method",
        "hvps",
        "gradients",
        "seconds",
        "seed",
    ]
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
            "CI": [
                "—"
                if math.isnan(lo) or math.isnan(hi)
                else f"[{fmt_num(lo, digits=4)}, {fmt_num(hi, digits=4)}]"
                for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
            "Method": table["method"].fillna(""),
            "HVPs": [_int_text(x) for x in table["hvps"]],
            "Gradients": [_int_text(x) for x in table["gradients"]],
            "Seconds": [fmt_num(x, digits=2) for x in table["seconds"]],
        }
    )
    return out


def _int_text(x: Any) -> str:
    try:
        return str(int(x))
    except (TypeError, ValueError):
        return "—"


def compare_frame(
    frame_a: pd.DataFrame, frame_b: pd.DataFrame, *, labels: Sequence[str] = ("A", "B")
) -> pd.DataFrame:
    """Side-by-side constants of the latest checkpoint of two record sets.

    Rows are matched on basis × geometry × partition; ``B/A`` is H_B/H_A as a bracket (ends
    labelled like every other number).

    Args:
        frame_a: records of the first run.
        frame_b: records of the second run.
        labels: names of the two columns groups.

    Returns:
        DataFrame with Basis, Constant, Optimizer, "<A> value", "<A> ρ̂", "<B> value",
        "<B> ρ̂", "B/A", "B/A bracket".
    """
    a_name, b_name = labels
    tables = []
    for frame in (frame_a, frame_b):
        latest = bounds.select_checkpoint(frame)
        consts = bounds.constants_table(latest)
        rho = bounds.rho_table(latest)
        tables.append((consts, rho))
    keys: list[tuple[str, str, str]] = []
    for consts, _ in tables:
        for k in zip(consts["basis"], consts["geometry"], consts["partition"], strict=True):
            if k not in keys:
                keys.append(k)
    geometry_rank = {"l2": 0, "linf": 1, "block": 2}
    partitions = bounds.partition_order([k[2] for k in keys])
    bases = bounds.basis_order([k[0] for k in keys])
    keys.sort(key=lambda k: (bases.index(k[0]), geometry_rank.get(k[1], 3), partitions.index(k[2])))
    rows = []
    for basis, geometry, partition in keys:
        found = []
        for consts, rho in tables:
            c = _pick(consts, basis, geometry, partition)
            r = _pick(rho, basis, geometry, partition)
            found.append((c, r))
        (ca, ra), (cb, rb) = found
        any_row = ca if ca is not None else cb
        row = {
            "Basis": basis,
            "Constant": any_row["constant"],
            "Optimizer": any_row["optimizer"],
        }
        for name, c, r in ((a_name, ca, ra), (b_name, cb, rb)):
            iv = interval_from_row(c) if c is not None else None
            row[f"{name} value"] = f"{fmt_num(iv.value)} {fmt_interval(iv)}" if iv else "—"
            row[f"{name} ρ̂"] = fmt_num(interval_from_row(r, "rho_").value) if r is not None else "—"
        if ca is not None and cb is not None:
            ratio = interval_from_row(cb) / interval_from_row(ca)
            row[f"{b_name}/{a_name}"] = fmt_num(ratio.value)
            row[f"{b_name}/{a_name} bracket"] = f"{fmt_interval(ratio)} ({fmt_ends(ratio)})"
        else:
            row[f"{b_name}/{a_name}"] = "—"
            row[f"{b_name}/{a_name} bracket"] = "—"
        rows.append(row)
    columns = [
        "Basis",
        "Constant",
        "Optimizer",
        f"{a_name} value",
        f"{a_name} ρ̂",
        f"{b_name} value",
        f"{b_name} ρ̂",
        f"{b_name}/{a_name}",
        f"{b_name}/{a_name} bracket",
    ]
    return pd.DataFrame(rows, columns=columns)


def _pick(table: pd.DataFrame, basis: str, geometry: str, partition: str) -> pd.Series | None:
    sel = table[
        (table["basis"] == basis)
        & (table["geometry"] == geometry)
        & (table["partition"] == partition)
    ]
    return None if sel.empty else sel.iloc[0]


# ------------------------------------------------------------------------------ data for plots


def spectral_density_data(frame: pd.DataFrame) -> pd.DataFrame:
    """Spectral densities in long form: checkpoint, step, basis, eigenvalue, density."""
    frame = bounds.normalize_records(frame)
    rows = []
    for _, rec in frame[frame["quantity"] == "spectral_density"].iterrows():
        grid, density = rec["extra"].get("grid"), rec["extra"].get("density")
        if not _same_length_lists(grid, density):
            continue
        for x, y in zip(grid, density, strict=True):
            rows.append(
                {
                    "checkpoint": rec["checkpoint"],
                    "step": rec["step"],
                    "basis": rec["basis"],
                    "eigenvalue": _num(x),
                    "density": _num(y),
                }
            )
    return pd.DataFrame(rows, columns=["checkpoint", "step", "basis", "eigenvalue", "density"])


def _same_length_lists(a: Any, b: Any) -> bool:
    return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and len(a) > 0


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def row_norm_histograms(frame: pd.DataFrame, *, bins: int = 40) -> pd.DataFrame:
    """Histograms of the row ℓ1 norms r_i = ‖H_i,:‖₁ per tensor, on shared log-spaced bins.

    Raw ``extra["row_norms"]`` lists are binned here (bins shared by all tensors, bases and
    checkpoints, so panels compare); ready-made ``extra["row_norm_hist"]`` histograms are kept as
    they are. Per checkpoint × basis, the first record carrying row norms is used (ℓ∞ records
    first).

    Args:
        frame: records.
        bins: number of log-spaced bins for raw row norms.

    Returns:
        DataFrame with checkpoint, step, basis, tensor, left, right, count, rows (total in tensor).
    """
    frame = bounds.normalize_records(frame)
    frame = frame.assign(_pref=(frame["geometry"] != "linf").astype(int)).sort_values(
        "_pref", kind="stable"
    )
    raw: dict[tuple[str, float, str], dict[str, np.ndarray]] = {}
    ready: dict[tuple[str, float, str], dict[str, tuple[list, list]]] = {}
    for _, rec in frame.iterrows():
        key = (rec["checkpoint"], rec["step"], rec["basis"])
        if key in raw or key in ready:
            continue
        norms = rec["extra"].get("row_norms")
        hist = rec["extra"].get("row_norm_hist")
        if isinstance(norms, dict) and norms:
            raw[key] = {
                str(t): np.abs(np.asarray(v, dtype=float))
                for t, v in norms.items()
                if isinstance(v, list)
            }
        elif isinstance(hist, dict) and hist:
            ready[key] = {
                str(t): (h.get("edges"), h.get("counts"))
                for t, h in hist.items()
                if isinstance(h, dict)
                and isinstance(h.get("edges"), list)
                and isinstance(h.get("counts"), list)
                and len(h["edges"]) == len(h["counts"]) + 1
            }
    rows = []
    positive = np.concatenate(
        [v[np.isfinite(v) & (v > 0)] for per in raw.values() for v in per.values()] or [np.zeros(0)]
    )
    if positive.size:
        lo, hi = positive.min(), positive.max()
        hi = hi * 1.0001 if hi > lo else lo * 10
        edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
        for (ckpt, step, basis), per in raw.items():
            for tensor, values in per.items():
                counts, _ = np.histogram(values[np.isfinite(values) & (values > 0)], bins=edges)
                rows += _hist_rows(ckpt, step, basis, tensor, edges, counts, values.size)
    for (ckpt, step, basis), per in ready.items():
        for tensor, (e, c) in per.items():
            rows += _hist_rows(
                ckpt, step, basis, tensor, np.asarray(e, float), np.asarray(c, float), sum(c)
            )
    return pd.DataFrame(
        rows, columns=["checkpoint", "step", "basis", "tensor", "left", "right", "count", "rows"]
    )


def row_norm_payload(
    values: Any, layout: Any, *, bins: int = 40, raw_limit: int = 4096
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


def _hist_rows(ckpt, step, basis, tensor, edges, counts, total) -> list[dict[str, Any]]:
    return [
        {
            "checkpoint": ckpt,
            "step": step,
            "basis": basis,
            "tensor": tensor,
            "left": float(edges[i]),
            "right": float(edges[i + 1]),
            "count": float(counts[i]),
            "rows": int(total),
        }
        for i in range(len(counts))
    ]


def block_contribution_data(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-block-pair contributions √(d_b d_b')‖H_bb'‖₂ of U(Φ) in long form.

    Returns:
        DataFrame with checkpoint, step, basis, partition, i, j, row_block, col_block, value.
    """
    frame = bounds.normalize_records(frame)
    rows = []
    seen = set()
    for _, rec in frame[frame["quantity"] == "block_upper"].iterrows():
        key = (rec["checkpoint"], rec["step"], rec["basis"], rec["partition"])
        matrix, names = rec["extra"].get("contributions"), rec["extra"].get("block_names")
        if key in seen or not isinstance(matrix, list) or not matrix:
            continue
        try:
            m = np.asarray(matrix, dtype=float)
        except (TypeError, ValueError):
            continue
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            continue
        if not (isinstance(names, list) and len(names) == m.shape[0]):
            names = [str(i) for i in range(m.shape[0])]
        seen.add(key)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                rows.append(
                    {
                        "checkpoint": key[0],
                        "step": key[1],
                        "basis": key[2],
                        "partition": key[3],
                        "i": i,
                        "j": j,
                        "row_block": str(names[i]),
                        "col_block": str(names[j]),
                        "value": float(m[i, j]),
                    }
                )
    columns = [
        "checkpoint",
        "step",
        "basis",
        "partition",
        "i",
        "j",
        "row_block",
        "col_block",
        "value",
    ]
    return pd.DataFrame(rows, columns=columns)


def step_ratio_data(frame: pd.DataFrame) -> pd.DataFrame:
    """Trajectory step ratios ‖∇L(θ_{t+1}) − ∇L(θ_t)‖_* / ‖θ_{t+1} − θ_t‖ by step.

    Returns:
        DataFrame with checkpoint, step, basis, geometry, partition, value (records of quantity
        ``step_ratio`` that have a step and a finite value).
    """
    frame = bounds.normalize_records(frame)
    sel = frame[
        (frame["quantity"] == "step_ratio") & frame["step"].notna() & frame["value"].notna()
    ]
    columns = ["checkpoint", "step", "basis", "geometry", "partition", "value"]
    return sel[columns].sort_values("step", kind="stable").reset_index(drop=True)


def graddiff_data(frame: pd.DataFrame) -> pd.DataFrame:
    """Gradient-difference ratios by radius: one row per record with ``settings["radius"]``.

    Returns:
        DataFrame with checkpoint, step, basis, geometry, partition, statistic (the quantity
        suffix, e.g. ``max``), radius, radius_mode (``settings["radius_mode"]``, default
        "absolute"), value, low, high, bound.
    """
    frame = bounds.normalize_records(frame)
    rows = []
    sel = frame[frame["quantity"].str.startswith("graddiff")]
    for _, rec in sel.iterrows():
        radius = _num(rec["settings"].get("radius"))
        if not (math.isfinite(radius) and radius > 0 and math.isfinite(rec["value"])):
            continue
        iv = bounds.record_interval(rec)
        stat = rec["quantity"].removeprefix("graddiff").lstrip("_") or "value"
        rows.append(
            {
                "checkpoint": rec["checkpoint"],
                "step": rec["step"],
                "basis": rec["basis"],
                "geometry": rec["geometry"],
                "partition": rec["partition"],
                "statistic": stat,
                "radius": radius,
                "radius_mode": str(rec["settings"].get("radius_mode") or "absolute"),
                "value": rec["value"],
                "low": iv.low,
                "high": iv.high,
                "bound": rec["bound"],
            }
        )
    columns = [
        "checkpoint",
        "step",
        "basis",
        "geometry",
        "partition",
        "statistic",
        "radius",
        "radius_mode",
        "value",
        "low",
        "high",
        "bound",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values(
        ["geometry", "partition", "statistic", "radius"], kind="stable"
    )


# ----------------------------------------------------------------------------------- renderers


def to_markdown(table: pd.DataFrame) -> str:
    """Renders a DataFrame as a GitHub Markdown table (pipes escaped; index dropped)."""
    if table.empty:
        return "_(none)_\n"
    header = [_md_cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_html(table: pd.DataFrame, *, css_class: str = "tbl") -> str:
    """Renders a DataFrame as an HTML table (escaped; index dropped)."""
    if table.empty:
        return "<p><em>(none)</em></p>\n"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in table.itertuples(index=False)
    )
    return (
        f'<table class="{html.escape(css_class)}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
    )


def to_text(table: pd.DataFrame, *, max_width: int = 60) -> str:
    """Renders a DataFrame as an aligned plain-text table for the terminal.

    Args:
        table: the table.
        max_width: cells longer than this are cut with "…".

    Returns:
        The text, one line per row, with a header and a rule.
    """
    if table.empty:
        return "(none)\n"

    def cell(v: Any) -> str:
        text = "" if v is None else str(v).replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(c) for c in table.columns]] + [
        [cell(v) for v in row] for row in table.itertuples(index=False)
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("─" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """Renders a DataFrame as CSV text (index dropped)."""
    return table.to_csv(index=False)
