"""Figures for today's optimizers: Muon's spectral bracket and Adam's preconditioned sharpness.

``plot_spectral_bracket``: H_op bracketed per spectral partition and basis (left), and the
predicted iteration ratios T_Muon/T_SGD = ρ_op and T_Muon/T_Adam against 1 (right).
``plot_precond_sharpness``: λ_max(P⁻¹H) over training against Adam's threshold
(2 + 2β₁)/((1 − β₁)η) (left), next to plain λ_max(H) against 2/η (right).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smoothprobe import compare as bounds
from smoothprobe.compare.optimizers import precond_table, spectral_table
from smoothprobe.interval import Interval, Kind
from smoothprobe.report.plot_style import (
    basis_color,
    draw_bracket,
    empty_figure,
    legend_below,
    maybe_log,
    new_figure,
    suptitle,
    title_for,
)

PARTITION_NAMES = {"matrices": "matrices alone", "mixed": "matrices + ℓ∞ rest"}


def _bracket(low: float, high: float, value: float) -> Interval:
    lk = Kind.CERTIFIED if math.isfinite(low) else Kind.NONE
    hk = Kind.CERTIFIED if math.isfinite(high) else Kind.NONE
    return Interval(value, low if math.isfinite(low) else -math.inf, high, lk, hk)


def plot_spectral_bracket(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> Figure:
    """H_op's bracket and the predicted Muon iteration ratios at one checkpoint.

    Args:
        frame: records.
        checkpoint: checkpoint to show (the latest when None).
        step: its step.

    Returns:
        The figure (a placeholder when there are no spectral records).
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    table = spectral_table(records)
    if table.empty:
        return empty_figure("No spectral records: measure with --norm spectral or all.")
    bases = bounds.basis_order(table["basis"])
    parts = list(dict.fromkeys(table["partition"]))
    fig = new_figure(max(7.5, 2.2 * len(parts) + 4), 4.4)
    left, right = fig.subplots(1, 2)
    offsets = np.linspace(-0.15, 0.15, len(bases)) if len(bases) > 1 else [0.0]
    slots = [
        (p, j)
        for p in parts
        for j, col in enumerate(("rho_op_high", "muon_adam_high"))
        if np.isfinite(table[table["partition"] == p][col].to_numpy(float)).any()
    ]
    drawn, ratios = [], [1.0]
    for off, basis in zip(offsets, bases, strict=True):
        color = basis_color(bases, basis)
        for i, part in enumerate(parts):
            row = table[(table["basis"] == basis) & (table["partition"] == part)]
            if row.empty:
                continue
            r = row.iloc[0]
            iv = _bracket(r["h_op_lower"], r["h_op_upper"], math.nan)
            drawn += draw_bracket(left, i + off, iv, color, width=0.12)
            if math.isfinite(r["r_l2"]):
                left.plot([i + off], [r["r_l2"]], marker="_", ms=14, color=color)
                drawn.append(r["r_l2"])
            for j, (lo, hi) in enumerate(
                ((r["rho_op_low"], r["rho_op_high"]), (r["muon_adam_low"], r["muon_adam_high"]))
            ):
                if math.isfinite(hi):
                    x = slots.index((part, j)) + off
                    ratios += draw_bracket(right, x, _bracket(lo, hi, hi), color, width=0.12)
    left.set_xticks(range(len(parts)), [PARTITION_NAMES.get(p, p) for p in parts], fontsize=8)
    left.set_xlim(-0.6, len(parts) - 0.4)
    maybe_log(left, drawn)
    left.set_ylabel("H_op (loss / unit of ‖·‖_op²)")
    left.set_title("H_op: certified lower … best upper end", fontsize=9)
    left.grid(axis="y", alpha=0.3)
    ticks = [f"{('÷ SGD', '÷ Adam')[j]}\n{p}" for p, j in slots]
    right.set_xticks(range(len(slots)), ticks, fontsize=8)
    right.set_xlim(-0.6, len(slots) - 0.4)
    right.axhline(1.0, color="0.4", ls="--", lw=1)
    if not maybe_log(right, ratios):
        right.set_ylim(bottom=0)
    right.set_ylabel("predicted T_Muon / T_other\n(yardstick: Muon's dual norm)")
    right.set_title("iteration ratios (below 1: Muon predicted faster)", fontsize=9)
    right.grid(axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color=basis_color(bases, b), lw=2.2, label=f"basis: {b}") for b in bases
    ]
    handles += [
        Line2D([], [], color="0.3", marker="_", ms=14, ls="none", label="R·L₂ (upper end)"),
        Line2D([], [], color="0.3", marker="o", ls="none", mec="white", label="upper end"),
    ]
    legend_below(fig, handles)
    suptitle(fig, f"Spectral (Muon) geometry — {title_for(records)}")
    return fig


def plot_precond_sharpness(frame: pd.DataFrame) -> Figure:
    """λ_max(P⁻¹H) against Adam's threshold over training, and λ_max(H) against 2/η.

    Args:
        frame: records of one or more checkpoints.

    Returns:
        The figure (a placeholder when there are no preconditioned records).
    """
    table = precond_table(bounds.normalize_records(frame))
    if table.empty:
        return empty_figure("No preconditioned sharpness: measure with --preconditioner adam.")
    x = np.asarray([s if math.isfinite(s) else i for i, s in enumerate(table["step"])], float)
    fig = new_figure(9.0, 4.2)
    left, right = fig.subplots(1, 2)
    top = table["precond_lambda_max"].to_numpy(float)
    err = np.nan_to_num(table["precond_residual"].to_numpy(float))
    left.errorbar(x, top, yerr=[np.zeros_like(err), err], marker="o", color="#1f5fa8", capsize=3)
    left.step(x, table["aeos_threshold"], where="mid", color="#c8412b", ls="--")
    maybe_log(left, list(top) + list(table["aeos_threshold"]))
    left.set_xlabel("training step")
    left.set_ylabel("λ_max(P⁻¹H)")
    left.set_title("Adam's own sharpness vs (2+2β₁)/((1−β₁)η)", fontsize=9)
    left.grid(alpha=0.3)
    plain = table["lambda_max"].to_numpy(float)
    if np.isfinite(plain).any():
        right.plot(x, plain, marker="s", color="#2e8b57")
    right.step(x, table["gd_threshold"], where="mid", color="0.4", ls=":")
    maybe_log(right, list(plain) + list(table["gd_threshold"]))
    right.set_xlabel("training step")
    right.set_ylabel("λ_max(H)")
    right.set_title("plain sharpness vs GD's 2/η", fontsize=9)
    right.grid(alpha=0.3)
    handles = [
        Line2D([], [], color="#1f5fa8", marker="o", label="λ_max(P⁻¹H) (Ritz value + residual)"),
        Line2D([], [], color="#c8412b", ls="--", label="Adam threshold (2+2β₁)/((1−β₁)η)"),
        Line2D([], [], color="#2e8b57", marker="s", label="λ_max(H)"),
        Line2D([], [], color="0.4", ls=":", label="2/η"),
    ]
    legend_below(fig, handles)
    suptitle(fig, "Preconditioned sharpness over training")
    return fig
