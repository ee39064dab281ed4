"""Tidy data for the report's figures: one row per observation, numbers as floats.

Record conventions read (absent keys mean the figure is skipped):

- spectral density: quantity ``spectral_density`` with ``extra["grid"]`` (eigenvalues) and
  ``extra["density"]`` (same length);
- row norms: any record (ℓ∞ ones are preferred) with ``extra["row_norms"]`` = {tensor name:
  [r_i, ...]} or ``extra["row_norm_hist"]`` = {tensor name: {"edges": [...], "counts": [...]}}
  (written by ``smoothprobe.estimators.row_norms.row_norm_payload``);
- blockwise heatmap: ``block_upper`` records with ``extra["contributions"]`` (n × n nested list of
  √(d_b d_b')‖H_bb'‖₂) and ``extra["block_names"]`` (n names);
- gradient differences: quantities ``graddiff_<statistic>`` with ``settings["radius"]``;
- trajectories: ordinary records with a ``step``, and ``step_ratio`` records (one per step and
  geometry) for the step-wise ratio.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from smoothprobe import compare as bounds


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
