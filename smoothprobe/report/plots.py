"""Figures of a report: one function per figure, each returning a ``matplotlib.figure.Figure``.

Figures are built on ``Figure`` objects directly (never ``pyplot``), so no global figure state is
created or leaked; saving a figure as PNG uses the Agg canvas. Every function takes a records
DataFrame and keyword options; when the records it needs are absent it returns a small figure
that says what is missing (``has_data`` tells the report whether to include a figure at all).

Conventions: bars are brackets [certified/statistical lower end, upper end] of a constant (the
tables label each end), dots are point values (the surrogates ‖H‖₁,₁ and U(Φ), capped at d·L₂ and
clipped into their bracket); log axes are used when values span more than ~1.5 decades.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smoothprobe import compare as bounds
from smoothprobe.compare import interval_from_row
from smoothprobe.report import figure_data
from smoothprobe.report import format as fmt
from smoothprobe.report.plot_style import (  # noqa: F401  (re-exported for the report)
    BASIS_MARKERS,
    BASIS_STYLES,
    CONSTANT_UNIT,
    basis_color,
    bracket_handles,
    draw_bracket,
    empty_figure,
    has_data,
    legend_below,
    maybe_log,
    missing_reason,
    new_figure,
    short_block_names,
    short_checkpoint_label,
    suptitle,
    tick_stride,
    title_for,
)
from smoothprobe.report.plots_structure import (  # noqa: F401  (re-exported: one module of figures)
    plot_block_heatmap,
    plot_graddiff_sweep,
    plot_row_norms,
    plot_spectral_density,
)


def plot_constants(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> Figure:
    """ℓ2 vs ℓ∞ vs blockwise constants with brackets, one panel per basis (original vs rotated).

    Args:
        frame: records.
        checkpoint: checkpoint to show (the latest when None).
        step: its step.

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    consts = bounds.constants_table(records)
    if consts.empty:
        return empty_figure("No ℓ2, ℓ∞ or blockwise records: nothing to compare.")
    bases = bounds.basis_order(consts["basis"])
    labels = list(dict.fromkeys(consts["constant"]))
    fig = new_figure(max(6.0, 0.9 * len(labels) * len(bases) + 2.0), 4.8)
    axes = fig.subplots(1, len(bases), sharey=True, squeeze=False)[0]
    drawn: list[float] = []
    for ax, basis in zip(axes, bases, strict=True):
        sub = consts[consts["basis"] == basis]
        color = basis_color(bases, basis)
        for i, label in enumerate(labels):
            row = sub[sub["constant"] == label]
            if not row.empty:
                drawn += draw_bracket(ax, i, interval_from_row(row.iloc[0]), color)
        dl2 = sub[sub["geometry"] == "l2"]
        if not dl2.empty:
            ax.axhline(dl2.iloc[0]["value"], color="0.5", ls="--", lw=1, zorder=0)
        optimizers = [consts[consts["constant"] == label]["optimizer"].iloc[0] for label in labels]
        ax.set_xticks(
            range(len(labels)),
            [f"{c}\n{o}" for c, o in zip(labels, optimizers, strict=True)],
            rotation=35,
            ha="right",
            fontsize=8,
        )
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(f"basis: {basis}", fontsize=11, color=color)
        ax.grid(axis="y", alpha=0.3)
    maybe_log(axes[0], drawn)
    axes[0].set_ylabel(f"constant H(Φ)  ({CONSTANT_UNIT})")
    dl2_line = Line2D([], [], color="0.5", ls="--", lw=1, label="d·L₂ (SGD's constant)")
    legend_below(fig, [*bracket_handles(), dl2_line])
    suptitle(fig, f"Smoothness constants by geometry — {title_for(records)}")
    return fig


def plot_rho_by_partition(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> Figure:
    """ρ(Φ) = H(Φ)/(d·L₂) per partition (finest to coarsest), one series per basis.

    Args:
        frame: records.
        checkpoint: checkpoint to show (the latest when None).
        step: its step.

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    rho = bounds.rho_table(records)
    rho = rho[rho["geometry"] != "l2"]
    if rho.empty:
        return empty_figure("No ρ(Φ): needs an ℓ2 record (L₂) and ℓ∞ or blockwise records.")
    order = bounds.partition_order(rho["partition"])
    keys = sorted(
        dict.fromkeys(zip(rho["partition"], rho["geometry"], strict=True)),
        key=lambda k: (order.index(k[0]), k[1] != "linf"),
    )
    dup = {p for p, _ in keys if sum(1 for q, _ in keys if q == p) > 1}
    bases = bounds.basis_order(rho["basis"])
    fig = new_figure(max(6.5, 1.1 * len(keys) + 2.5), 4.6)
    ax = fig.add_subplot()
    drawn: list[float] = [1.0]
    offsets = np.linspace(-0.15, 0.15, len(bases)) if len(bases) > 1 else [0.0]
    for off, basis in zip(offsets, bases, strict=True):
        color = basis_color(bases, basis)
        for i, (partition, geometry) in enumerate(keys):
            row = rho[
                (rho["basis"] == basis)
                & (rho["partition"] == partition)
                & (rho["geometry"] == geometry)
            ]
            if not row.empty:
                drawn += draw_bracket(
                    ax, i + off, interval_from_row(row.iloc[0], "rho_"), color, width=0.12
                )
    ax.axhline(1.0, color="0.4", ls="--", lw=1)
    ticks = []
    for partition, geometry in keys:
        name = partition + (
            f" ({fmt.GEOMETRY_NAMES.get(geometry, geometry)})" if partition in dup else ""
        )
        opt = rho[(rho["partition"] == partition) & (rho["geometry"] == geometry)]["optimizer"]
        ticks.append(f"{name}\n{opt.iloc[0]}")
    ax.set_xticks(range(len(keys)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(keys) - 0.4)
    if not maybe_log(ax, drawn):
        ax.set_ylim(bottom=0)
    ax.set_ylabel("ρ(Φ) = H(Φ) / (d·L₂)   (dimensionless;\npredicted T_Φ / T_SGD)")
    ax.set_xlabel("partition Φ (finest → coarsest) and the optimizer it explains")
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color=basis_color(bases, b), lw=2.2, label=f"basis: {b}") for b in bases
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            ls="none",
            mec="white",
            label="point: capped surrogate / (d·L₂)",
        )
    )
    handles.append(Line2D([], [], color="0.4", ls="--", lw=1, label="SGD: ρ = 1"))
    legend_below(fig, handles)
    suptitle(fig, f"ρ per partition — {title_for(records)}")
    return fig


def plot_constants_over_steps(frame: pd.DataFrame) -> Figure:
    """Constants (left), ρ(Φ) (middle) and trajectory step ratios (right) over training steps.

    Brackets are shaded bands (original basis only, for legibility); the step-ratio panel
    appears when ``step_ratio`` records exist.

    Args:
        frame: records of several checkpoints with a ``step``.

    Returns:
        The figure (a placeholder when fewer than two steps were measured).
    """
    consts = bounds.constants_table(frame)
    consts = consts[consts["step"].notna()]
    ratios = figure_data.step_ratio_data(frame)
    if consts["step"].nunique() < 2 and ratios["step"].nunique() < 2:
        return empty_figure("Fewer than two training steps measured: no trajectory to plot.")
    rho = bounds.rho_table(frame)
    rho = rho[rho["step"].notna() & (rho["geometry"] != "l2")]
    bases = bounds.basis_order(list(consts["basis"]) + list(ratios["basis"]))
    labels = list(dict.fromkeys(consts["constant"]))
    cmap = _constant_colors(labels)
    panels = [
        p
        for p, ok in (
            ("c", consts["step"].nunique() >= 2),
            ("r", rho["step"].nunique() >= 2),
            ("s", ratios["step"].nunique() >= 2),
        )
        if ok
    ]
    fig = new_figure(5.2 * len(panels) + 0.8, 4.9)
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    for key, table, prefix in (("c", consts, ""), ("r", rho, "rho_")):
        if key not in axes:
            continue
        ax, drawn = axes[key], []
        for b_i, basis in enumerate(bases):
            for label in labels:
                sub = table[(table["basis"] == basis) & (table["constant"] == label)]
                sub = sub.drop_duplicates("step", keep="last").sort_values("step")
                if sub.empty:
                    continue
                ivs = [interval_from_row(r, prefix) for _, r in sub.iterrows()]
                x = sub["step"].to_numpy(dtype=float)
                v = np.array([iv.value for iv in ivs])
                lo = np.array([iv.low if iv.low > 0 else np.nan for iv in ivs])
                hi = np.array([iv.high if np.isfinite(iv.high) else np.nan for iv in ivs])
                style = BASIS_STYLES[b_i % len(BASIS_STYLES)]
                marker = BASIS_MARKERS[b_i % len(BASIS_MARKERS)]
                ax.plot(x, v, color=cmap[label], ls=style, marker=marker, ms=4, lw=1.5)
                ok = np.isfinite(lo) & np.isfinite(hi)
                if ok.any() and b_i == 0:  # bands for the original basis only (legibility)
                    ax.fill_between(x[ok], lo[ok], hi[ok], color=cmap[label], alpha=0.12, lw=0)
                drawn += [*v, *lo[np.isfinite(lo)], *hi[np.isfinite(hi)]]
        maybe_log(ax, drawn)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    if "c" in axes:
        axes["c"].set_ylabel(f"constant H(Φ)  ({CONSTANT_UNIT})")
        axes["c"].set_title(f"constants (bands: brackets, basis {bases[0]})", fontsize=10)
    if "r" in axes:
        axes["r"].axhline(1.0, color="0.4", ls="--", lw=1)
        axes["r"].set_ylabel("ρ(Φ) = H(Φ) / (d·L₂)")
        axes["r"].set_title("ρ (dashed line: SGD, ρ = 1)", fontsize=10)
    ratio_lines = _plot_step_ratios(axes["s"], ratios, bases) if "s" in axes else []
    handles = [Line2D([], [], color=cmap[label], lw=2, label=label) for label in labels]
    handles += [
        Line2D(
            [],
            [],
            color="0.3",
            ls=BASIS_STYLES[i % len(BASIS_STYLES)],
            marker=BASIS_MARKERS[i % len(BASIS_MARKERS)],
            ms=4,
            label=f"basis: {b}",
        )
        for i, b in enumerate(bases)
    ]
    for line in ratio_lines:
        line.set_label(f"step ratio: {line.get_label()}")
    handles += ratio_lines
    legend_below(fig, handles, ncols=min(6, len(handles)))
    suptitle(fig, "Smoothness over training")
    return fig


def _plot_step_ratios(ax, ratios: pd.DataFrame, bases: Sequence[str]) -> list[Line2D]:
    """Draws the step-ratio panel; returns its lines (for the figure legend)."""
    keys = list(dict.fromkeys(zip(ratios["geometry"], ratios["partition"], strict=True)))
    fixed = {"l2": "#555555", "linf": "#1f5fa8"}  # the colors of d·L₂ and H∞ in the left panel
    palette = ("#2e8b57", "#c7881a", "#7b4fa0", "#c8412b")
    drawn: list[float] = []
    for k_i, (geometry, partition) in enumerate(keys):
        for b_i, basis in enumerate(bases):
            sub = ratios[
                (ratios["geometry"] == geometry)
                & (ratios["partition"] == partition)
                & (ratios["basis"] == basis)
            ].drop_duplicates("step", keep="last")
            if sub.empty:
                continue
            name = fmt.GEOMETRY_NAMES.get(geometry, geometry)
            name += f" (Φ = {partition})" if geometry == "block" else ""
            ax.plot(
                sub["step"],
                sub["value"],
                color=fixed.get(geometry, palette[k_i % len(palette)]),
                ls=BASIS_STYLES[b_i % len(BASIS_STYLES)],
                marker="s",
                ms=3.5,
                label=name + (f", {basis}" if len(bases) > 1 else ""),
            )
            drawn += list(sub["value"])
    maybe_log(ax, drawn)
    ax.set_xlabel("training step")
    ax.set_ylabel("‖∇L(θₜ₊₁) − ∇L(θₜ)‖∗ / ‖θₜ₊₁ − θₜ‖")
    ax.set_title("step-wise ratio along the run (lower bounds)", fontsize=10)
    ax.grid(alpha=0.3)
    return [h for h in ax.get_lines() if not h.get_label().startswith("_")]


def _constant_colors(labels: Sequence[str]) -> dict[str, str]:
    fixed = {"d·L₂": "#555555", "H∞": "#1f5fa8"}
    palette = ["#2e8b57", "#c7881a", "#7b4fa0", "#c8412b", "#17becf", "#8c564b", "#e377c2"]
    out, k = {}, 0
    for label in labels:
        if label in fixed:
            out[label] = fixed[label]
        else:
            out[label] = palette[k % len(palette)]
            k += 1
    return out
