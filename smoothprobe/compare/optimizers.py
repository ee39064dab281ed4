"""Muon's spectral geometry and Adam's preconditioned sharpness: records → tidy tables.

``spectral_table``: one row per checkpoint × basis × spectral partition (``matrices``: the Muon
matrices alone; ``mixed``: plus the rest in ℓ∞) with the bracket of H_op — the certified lower
bound (polar ascent) and the best upper end among the block bound Σ c_b c_b'‖H_bb'‖₂ and R·L₂,
with the kind of that end — and ρ_op = H_op/(R·L₂) = predicted T_Muon/T_SGD and the predicted
T_Muon/T_Adam, both on the yardstick of Muon's dual norm (``suites.spectral`` derives it).

``precond_table``: one row per checkpoint with λ_max(P⁻¹H) (Adam's own sharpness, P from the
checkpoint's optimizer state), the adaptive edge-of-stability threshold (2 + 2β₁)/((1 − β₁)η),
their ratio, and the plain λ_max(H) next to 2/η.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from smoothprobe.compare.frame import runs, to_float

SPECTRAL_COLUMNS = (
    "checkpoint",
    "step",
    "basis",
    "partition",
    "h_op_lower",
    "h_op_upper",
    "h_op_upper_kind",
    "h_op_upper_from",
    "r_l2",
    "rho_op_low",
    "rho_op_high",
    "rho_op_high_kind",
    "muon_adam_low",
    "muon_adam_high",
    "muon_adam_high_kind",
)
PRECOND_COLUMNS = (
    "checkpoint",
    "step",
    "precond_lambda_max",
    "precond_residual",
    "aeos_threshold",
    "ratio_to_threshold",
    "lambda_max",
    "gd_threshold",
    "lambda_max_times_lr_over_2",
    "lr",
)


def _rows(frame: pd.DataFrame, geometry: str) -> pd.DataFrame:
    if frame.empty or "geometry" not in frame:
        return frame.iloc[0:0]
    return frame[frame["geometry"] == geometry]


def _first(group: pd.DataFrame, quantity: str) -> dict[str, Any] | None:
    hit = group[group["quantity"] == quantity]
    return None if hit.empty else hit.iloc[0].to_dict()


def spectral_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The spectral bracket and ratios (module docstring), in checkpoint order.

    Args:
        frame: normalized records (``compare.normalize_records``).

    Returns:
        DataFrame with ``SPECTRAL_COLUMNS`` (empty when no spectral records).
    """
    rows = []
    if _rows(frame, "spectral").empty:
        return pd.DataFrame(columns=list(SPECTRAL_COLUMNS))
    for ckpt, step, records in runs(frame):
        spectral = _rows(records, "spectral")
        for (basis, part), group in spectral.groupby(["basis", "partition"], sort=False):
            rows.append(_spectral_row(ckpt, step, basis, part, group))
    if not rows:
        return pd.DataFrame(columns=list(SPECTRAL_COLUMNS))
    return pd.DataFrame(rows, columns=list(SPECTRAL_COLUMNS))


def _spectral_row(ckpt, step, basis, part, group: pd.DataFrame) -> dict[str, Any]:
    low, block = _first(group, "op_lower"), _first(group, "op_upper")
    rl2, rho = _first(group, "op_upper_rl2"), _first(group, "rho_op")
    ratio = _first(group, "muon_adam_ratio")
    uppers = [
        (to_float(r["value"]), r["bound"], name)
        for r, name in ((block, "block norms"), (rl2, "R*L2"))
        if r is not None
    ]
    upper = min(uppers, key=lambda u: u[0]) if uppers else (math.nan, "", "")
    return {
        "checkpoint": ckpt,
        "step": step,
        "basis": basis,
        "partition": part,
        "h_op_lower": to_float(low["value"]) if low else math.nan,
        "h_op_upper": upper[0],
        "h_op_upper_kind": upper[1],
        "h_op_upper_from": upper[2],
        "r_l2": to_float(rl2["value"]) if rl2 else math.nan,
        "rho_op_low": to_float(rho["ci_low"]) if rho else math.nan,
        "rho_op_high": to_float(rho["value"]) if rho else math.nan,
        "rho_op_high_kind": rho["bound"] if rho else "",
        "muon_adam_low": to_float(ratio["ci_low"]) if ratio else math.nan,
        "muon_adam_high": to_float(ratio["value"]) if ratio else math.nan,
        "muon_adam_high_kind": ratio["bound"] if ratio else "",
    }


def precond_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Adam's preconditioned sharpness against its threshold, per checkpoint in training order.

    Args:
        frame: normalized records.

    Returns:
        DataFrame with ``PRECOND_COLUMNS`` (empty when no preconditioned records).
    """
    rows = []
    if _rows(frame, "preconditioned").empty:
        return pd.DataFrame(columns=list(PRECOND_COLUMNS))
    for ckpt, step, records in runs(frame):
        group = _rows(records, "preconditioned")
        top, threshold = _first(group, "precond_lambda_max"), _first(group, "aeos_threshold")
        if top is None or threshold is None:
            continue
        extra = top.get("extra") or {}
        gd = _first(group, "gd_threshold")
        plain = to_float(extra.get("unpreconditioned_lambda_max"))
        lr = to_float((top.get("settings") or {}).get("lr"))
        rows.append(
            {
                "checkpoint": ckpt,
                "step": step,
                "precond_lambda_max": to_float(top["value"]),
                "precond_residual": to_float(extra.get("residual")),
                "aeos_threshold": to_float(threshold["value"]),
                "ratio_to_threshold": to_float(top["value"]) / to_float(threshold["value"]),
                "lambda_max": plain,
                "gd_threshold": to_float(gd["value"]) if gd else math.nan,
                "lambda_max_times_lr_over_2": plain * lr / 2,
                "lr": lr,
            }
        )
    return pd.DataFrame(rows, columns=list(PRECOND_COLUMNS))
