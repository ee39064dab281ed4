"""Display tables for today's optimizers: the spectral (Muon) bracket and Adam's own sharpness.

The numbers come from ``compare.optimizers``; this module only formats them. Every interval
shows the kind of each end (``lower``: certified; ``upper``: certified; ``estimate``: a sketched
or residual-based end; ``prob_upper``: holds with the stated probability).
"""

from __future__ import annotations

import math

import pandas as pd

from smoothprobe.compare.optimizers import precond_table, spectral_table
from smoothprobe.report.format import checkpoint_label, fmt_num

PARTITION_LABELS = {
    "matrices": "matrices alone",
    "mixed": "matrices + ℓ∞ rest",
    "matrices:rms": "matrices alone (RMS scale)",
    "mixed:rms": "matrices + ℓ∞ rest (RMS scale)",
}


def _range(low: float, high: float) -> str:
    if not math.isfinite(high):
        return "—"
    return f"[{fmt_num(low)}, {fmt_num(high)}]"


def spectral_display(frame: pd.DataFrame, *, checkpoint_column: bool = True) -> pd.DataFrame:
    """H_op bracket, R·L₂, ρ_op = T_Muon/T_SGD and T_Muon/T_Adam per checkpoint × basis × part."""
    table = spectral_table(frame)
    rows = []
    for _, r in table.iterrows():
        row = {"Checkpoint": checkpoint_label(r["checkpoint"], r["step"])}
        row.update(
            {
                "Basis": r["basis"],
                "Geometry": PARTITION_LABELS.get(r["partition"], r["partition"]),
                "H_op bracket": _range(r["h_op_lower"], r["h_op_upper"]),
                "Ends": f"lower / {r['h_op_upper_kind'] or '—'} ({r['h_op_upper_from']})",
                "R·L₂": fmt_num(r["r_l2"]),
                "T_Muon/T_SGD = ρ_op": _range(r["rho_op_low"], r["rho_op_high"]),
                "T_Muon/T_Adam": _range(r["muon_adam_low"], r["muon_adam_high"]),
            }
        )
        if not checkpoint_column:
            del row["Checkpoint"]
        rows.append(row)
    return pd.DataFrame(rows)


def precond_display(frame: pd.DataFrame) -> pd.DataFrame:
    """λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)η), and λ_max(H) against 2/η, per checkpoint."""
    table = precond_table(frame)
    rows = []
    for _, r in table.iterrows():
        rows.append(
            {
                "Checkpoint": checkpoint_label(r["checkpoint"], r["step"]),
                "λ_max(P⁻¹H)": f"{fmt_num(r['precond_lambda_max'])} "
                f"(+{fmt_num(r['precond_residual'])})",
                "Adam threshold": fmt_num(r["aeos_threshold"]),
                "ratio": fmt_num(r["ratio_to_threshold"]),
                "λ_max(H)": fmt_num(r["lambda_max"]),
                "2/η": fmt_num(r["gd_threshold"]),
                "η": fmt_num(r["lr"]),
            }
        )
    return pd.DataFrame(rows)
