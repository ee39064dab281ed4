"""Gradient-noise terms per checkpoint × basis × batch size, with their ratios to √d·‖σ‖₂."""

from __future__ import annotations

import pandas as pd

from smoothprobe.compare.constants import OPTIMIZER_FOR_PARTITION
from smoothprobe.compare.frame import (
    basis_order,
    normalize_records,
    partition_order,
    runs,
    same_step,
    step_out,
    to_float,
)
from smoothprobe.compare.intervals import interval_columns, quantity_interval
from smoothprobe.compare.rho import STRUCTURE_ONLY
from smoothprobe.interval import Kind

NOISE_TERMS = {
    "noise_l1": "‖σ‖₁",
    "noise_l2_sqrtd": "√d·‖σ‖₂",
    "noise_block": "Σ_b √d_b·‖σ_b‖₂",
    "snr": "SNR",
    "snr_l1": "SNR ‖g‖₁/‖σ‖₁",
    "snr_l2": "SNR ‖g‖₂/‖σ‖₂",
    "snr_block": "SNR ‖g‖_Φ*/Σ_b √d_b·‖σ_b‖₂",
}
_SNR = ("snr", "snr_l1", "snr_l2", "snr_block")
_NOISE_PARTITION = {
    "noise_l1": "singleton",
    "snr_l1": "singleton",
    "noise_l2_sqrtd": "one",
    "snr_l2": "one",
}


def noise_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Gradient-noise terms per checkpoint × basis × batch size, with ratios to √d·‖σ‖₂.

    ``ratio_*`` = term/(√d·‖σ‖₂) ≤ 1 (Cauchy–Schwarz; capped): the noise analogue of ρ. How the
    noise enters the seed paper's stochastic Adam bound is reproduced in structure only.

    Args:
        frame: records.

    Returns:
        DataFrame with checkpoint, step, basis, batch_size, quantity, term, partition, optimizer,
        the term's interval columns, ``ratio_*`` interval columns (NaN for SNR, for √d·‖σ‖₂
        itself — 1 by definition — and without √d·‖σ‖₂) and ``status``. Empty when no noise
        was measured.
    """
    frame = normalize_records(frame)
    noise = frame[frame["quantity"].isin(NOISE_TERMS)].copy()
    rows = []
    if not noise.empty:
        noise["batch"] = [
            to_float(s.get("batch_size", b))
            for s, b in zip(noise["settings"], noise["batch_size"], strict=True)
        ]
    for checkpoint, step, _ in runs(noise) if not noise.empty else ():
        run = noise[(noise["checkpoint"] == checkpoint) & same_step(noise["step"], step)]
        for basis in basis_order(run["basis"]):
            recs = run[run["basis"] == basis]
            for batch in sorted(set(recs["batch"].fillna(-1.0))):
                group = recs[recs["batch"].fillna(-1.0) == batch]
                ref = quantity_interval(group, "noise_l2_sqrtd")
                for quantity in NOISE_TERMS:
                    sub = group[group["quantity"] == quantity]
                    blockwise = quantity in ("noise_block", "snr_block")
                    parts = partition_order(sub["partition"]) if blockwise else [""]
                    for partition in parts:
                        psub = sub[sub["partition"] == partition] if partition else sub
                        iv = quantity_interval(psub, quantity)
                        if iv is None:
                            continue
                        ratio = None
                        if ref is not None and quantity not in (*_SNR, "noise_l2_sqrtd"):
                            ratio = (iv / ref).cap_high(1.0, Kind.CERTIFIED)
                        part = partition or _NOISE_PARTITION.get(quantity, "")
                        rows.append(
                            {
                                "checkpoint": checkpoint,
                                "step": step_out(step),
                                "basis": basis,
                                "batch_size": None if batch < 0 else int(batch),
                                "quantity": quantity,
                                "term": NOISE_TERMS[quantity],
                                "partition": part,
                                "optimizer": "SGD"
                                if quantity in ("noise_l2_sqrtd", "snr_l2")
                                else OPTIMIZER_FOR_PARTITION.get(part, ""),
                                **interval_columns(iv),
                                **interval_columns(ratio, "ratio_"),
                                "status": "measured; its role in the Adam bound: " + STRUCTURE_ONLY,
                            }
                        )
    columns = [
        "checkpoint",
        "step",
        "basis",
        "batch_size",
        "quantity",
        "term",
        "partition",
        "optimizer",
        *interval_columns(None),
        *interval_columns(None, "ratio_"),
        "status",
    ]
    return pd.DataFrame(rows, columns=columns)
