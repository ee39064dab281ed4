"""Constants → ρ(Φ) = H(Φ)/(d·L₂) and the predicted iteration ratios; original vs rotated bases.

Fourth step of the comparison's data flow. Every ρ here comes from ``brackets.rho_interval``,
the one function that forms ρ (the suites' ``rho_block`` records call it too).
"""

from __future__ import annotations

import pandas as pd

from smoothprobe.compare.brackets import rho_interval
from smoothprobe.compare.constants import CONSTANT_COLUMNS, constants_table
from smoothprobe.compare.frame import row_mask, same_step
from smoothprobe.compare.intervals import interval_columns, interval_from_row
from smoothprobe.interval import Interval

STRUCTURE_ONLY = "structure only"
THEORY_NOTE = (
    "T_Φ/T_SGD = ρ(Φ) from the steepest-descent bound (docs/theory.md); the seed paper's Adam "
    "theorem has the same structure plus β₂/ε terms whose constants are not reproduced here "
    "(structure only)."
)


def rho_table(frame: pd.DataFrame) -> pd.DataFrame:
    """ρ(Φ) = H(Φ)/(d·L₂) and the predicted T_Φ/T_SGD per checkpoint × basis × geometry/partition.

    [``rho_low``, ``rho_high``] brackets the true ρ(Φ) ≤ 1; ``rho_value`` is the capped surrogate
    ratio min(‖H‖₁,₁, d·L₂)/(d·L₂) (U(Φ) for blocks), clipped into that bracket (the seed paper's
    uncapped ‖H‖₁,₁/(d·L₂) is the constants table's ``surrogate`` over d·L₂).
    ``advantage_*`` is 1/ρ: how many times smaller than d·L₂ the constant is, i.e. the predicted
    T_SGD/T_Φ. Rows without a d·L₂ for their checkpoint are dropped (ρ is undefined).

    Args:
        frame: records.

    Returns:
        DataFrame: the identifying columns of ``constants_table`` plus ``rho_*``, ``advantage_*``
        and ``t_ratio_*`` interval columns and ``t_ratio_status`` ("exact" for SGD itself,
        "structure only" otherwise).
    """
    consts = constants_table(frame)
    rows = []
    for _, row in consts.iterrows():
        same = consts[
            (consts["checkpoint"] == row["checkpoint"])
            & same_step(consts["step"], row["step"])
            & (consts["basis"] == row["basis"])
            & (consts["geometry"] == "l2")
        ]
        if same.empty:
            continue
        h = interval_from_row(row)
        if row["geometry"] == "l2":
            rho = Interval.exact(1.0)
        else:
            rho = rho_interval(h, interval_from_row(same.iloc[0]))
        ident = {k: row[k] for k in CONSTANT_COLUMNS[:10]}
        rows.append(
            {
                **ident,
                **interval_columns(rho, "rho_"),
                **interval_columns(rho.reciprocal(), "advantage_"),
                **interval_columns(rho, "t_ratio_"),
                "t_ratio_status": "exact" if row["geometry"] == "l2" else STRUCTURE_ONLY,
            }
        )
    columns = [
        *CONSTANT_COLUMNS[:10],
        *interval_columns(None, "rho_"),
        *interval_columns(None, "advantage_"),
        *interval_columns(None, "t_ratio_"),
        "t_ratio_status",
    ]
    return pd.DataFrame(rows, columns=columns)


def rotation_table(frame: pd.DataFrame, *, original: str = "identity") -> pd.DataFrame:
    """Original vs rotated basis per checkpoint × geometry/partition.

    The change ``H_rotated / H_original`` equals ρ_rotated/ρ_original exactly (L₂ is rotation
    invariant), so it is computed from the constants alone: > 1 means rotation made that
    geometry worse, i.e. slowed the optimizer it explains (predicted, structure only).

    Args:
        frame: records.
        original: the basis treated as original.

    Returns:
        DataFrame with checkpoint, step, geometry, partition, constant, optimizer,
        basis_original, basis_rotated and interval columns ``original_rho_*``,
        ``rotated_rho_*`` and ``change_*``. Empty when only one basis was measured.
    """
    rho = rho_table(frame)
    consts = constants_table(frame)
    rows = []
    keys = ["checkpoint", "step", "geometry", "partition"]
    for _, row in rho[rho["basis"] != original].iterrows():
        if row["geometry"] == "l2":
            continue
        match = rho[(rho["basis"] == original) & row_mask(rho, row, keys)]
        if match.empty:
            continue
        c_rot = consts[(consts["basis"] == row["basis"]) & row_mask(consts, row, keys)]
        c_orig = consts[(consts["basis"] == original) & row_mask(consts, row, keys)]
        change = interval_from_row(c_rot.iloc[0]) / interval_from_row(c_orig.iloc[0])
        rows.append(
            {
                **{k: row[k] for k in (*keys, "constant", "optimizer")},
                "basis_original": original,
                "basis_rotated": row["basis"],
                **interval_columns(interval_from_row(match.iloc[0], "rho_"), "original_rho_"),
                **interval_columns(interval_from_row(row, "rho_"), "rotated_rho_"),
                **interval_columns(change, "change_"),
            }
        )
    columns = [
        *keys,
        "constant",
        "optimizer",
        "basis_original",
        "basis_rotated",
        *interval_columns(None, "original_rho_"),
        *interval_columns(None, "rotated_rho_"),
        *interval_columns(None, "change_"),
    ]
    return pd.DataFrame(rows, columns=columns)
