"""Tables → the numbers the report's opening paragraph states, for one checkpoint."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from smoothprobe.compare.constants import constants_table
from smoothprobe.compare.frame import basis_order, dimension, select_checkpoint, step_key, step_out
from smoothprobe.compare.intervals import interval_from_row
from smoothprobe.compare.noise import noise_table
from smoothprobe.compare.rho import rho_table


def headline_numbers(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> dict[str, Any]:
    """The numbers the report's opening paragraph states, for one checkpoint.

    ``advantage`` is X = d·L₂/H∞ in the original basis (the predicted T_SGD/T_Adam: its bracket
    is proven; its point value comes from the ‖H‖₁,₁ surrogate capped at d·L₂ and lies inside
    the bracket), ``rotated_advantage`` is Y, the same in the first other basis, and
    ``rotation_cost`` = H∞(rotated)/H∞(original), the rotated bracket over the original one.
    Each is an ``Interval.to_dict()`` (value/low/high with their labels) or None when not
    measured. The original basis is ``identity`` when measured (``basis_is_identity``), else the
    first basis of the records; ``surrogate`` holds the raw ‖H‖₁,₁ and d·L₂ point values per
    basis (the seed paper's convention compares those two).

    Args:
        frame: records.
        checkpoint: checkpoint name; the latest when None.
        step: its step (when one name has several).

    Returns:
        Dict with checkpoint, step, d, basis, rotated_basis, dl2, linf, advantage,
        rotated_advantage, rotation_cost, basis_is_identity, surrogate (basis → {"l11",
        "dl2"}), linf_point_note, blockwise (partition → advantage dict, original basis), noise
        (dict or None) and missing (list of what was not measured).
    """
    records = select_checkpoint(frame, checkpoint, step)
    out: dict[str, Any] = {
        "checkpoint": None,
        "step": None,
        "d": None,
        "basis": None,
        "rotated_basis": None,
        "dl2": None,
        "linf": None,
        "advantage": None,
        "rotated_advantage": None,
        "rotation_cost": None,
        "basis_is_identity": None,
        "surrogate": {},
        "linf_point_note": None,
        "blockwise": {},
        "noise": None,
        "missing": [],
    }
    if records.empty:
        out["missing"].append("records")
        return out
    out["checkpoint"] = records["checkpoint"].iloc[0]
    out["step"] = step_out(step_key(records["step"].iloc[0]))
    consts, rho = constants_table(records), rho_table(records)
    bases = basis_order(records["basis"])
    original = "identity" if "identity" in bases else bases[0]
    out["basis"] = original
    out["basis_is_identity"] = original == "identity"
    out["d"] = None if math.isnan(dimension(records)) else int(dimension(records))

    def pick(table: pd.DataFrame, basis: str, geometry: str, partition: str):
        sel = table[
            (table["basis"] == basis)
            & (table["geometry"] == geometry)
            & (table["partition"] == partition)
        ]
        return None if sel.empty else sel.iloc[0]

    dl2 = pick(consts, original, "l2", "one")
    linf = pick(consts, original, "linf", "singleton")
    out["dl2"] = None if dl2 is None else interval_from_row(dl2).to_dict()
    out["linf"] = None if linf is None else interval_from_row(linf).to_dict()
    for basis in bases:
        b_linf, b_dl2 = pick(consts, basis, "linf", "singleton"), pick(consts, basis, "l2", "one")
        if b_linf is not None:
            out["surrogate"][basis] = {
                "l11": _finite(b_linf["surrogate"]),
                "dl2": None if b_dl2 is None else _finite(b_dl2["value"]),
                "note": b_linf["point"],
            }
    if linf is not None:
        out["linf_point_note"] = linf["point"]
    if dl2 is None:
        out["missing"].append("l2 (L₂: needed for every ρ)")
    if linf is None:
        out["missing"].append("linf (‖H‖₁,₁ / sign-ascent lower bound)")
    r = pick(rho, original, "linf", "singleton")
    if r is not None:
        out["advantage"] = interval_from_row(r, "advantage_").to_dict()
    others = [b for b in bases if b != original and pick(rho, b, "linf", "singleton") is not None]
    if others:
        rotated = others[0]
        out["rotated_basis"] = rotated
        out["rotated_advantage"] = interval_from_row(
            pick(rho, rotated, "linf", "singleton"), "advantage_"
        ).to_dict()
        if linf is not None:
            change = interval_from_row(pick(consts, rotated, "linf", "singleton")) / (
                interval_from_row(linf)
            )
            out["rotation_cost"] = change.to_dict()
    elif linf is not None and original == "identity":
        out["missing"].append("a rotated basis (original vs rotated)")
    elif linf is not None:
        out["missing"].append("the identity basis (the original coordinates, to compare with)")
    block = rho[(rho["basis"] == original) & (rho["geometry"] == "block")]
    for _, row in block.iterrows():
        out["blockwise"][row["partition"]] = {
            "optimizer": row["optimizer"],
            **interval_from_row(row, "advantage_").to_dict(),
        }
    noise = noise_table(records)
    noise = noise[(noise["basis"] == original) & (noise["quantity"] == "noise_l1")]
    noise = noise[noise["ratio_value"].notna()]
    if not noise.empty:
        row = noise.iloc[-1]
        out["noise"] = {
            "batch_size": None if pd.isna(row["batch_size"]) else int(row["batch_size"]),
            "ratio": interval_from_row(row, "ratio_").to_dict(),
        }
    return out


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
