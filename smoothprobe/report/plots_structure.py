"""Figures of the Hessian's structure: row norms, spectral density, block heatmap, graddiff sweep.

One function per figure, each returning a ``matplotlib.figure.Figure``.

Figures are built on ``Figure`` objects directly (never ``pyplot``), so no global figure state is
created or leaked; saving a figure as PNG uses the Agg canvas. Every function takes a records
DataFrame and keyword options; when the records it needs are absent it returns a small figure
that says what is missing (``has_data`` tells the report whether to include a figure at all).

Conventions: bars are brackets [certified/statistical lower end, upper end] of a constant (the
tables label each end), dots are point values (the surrogates ‖H‖₁,₁ and U(Φ), capped at d·L₂ and
clipped into their bracket); log axes are used when values span more than ~1.5 decades.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from smoothprobe import compare as bounds
from smoothprobe.compare import interval_from_row
from smoothprobe.interval import Interval
from smoothprobe.report import figure_data
from smoothprobe.report import format as fmt
from smoothprobe.report.plot_style import (
    BASIS_STYLES,
    CONSTANT_UNIT,
    DENSITY_FLOOR,
    LOG_SPAN,
    basis_color,
    empty_figure,
    legend_below,
    maybe_log,
    new_figure,
    short_block_names,
    suptitle,
    tick_stride,
    title_for,
)


def plot_row_norms(
    frame: pd.DataFrame,
    *,
    checkpoint: str | None = None,
    step: float | None = None,
    max_tensors: int = 12,
) -> Figure:
    """Histograms of the row ℓ1 norms ‖H_i,:‖₁ per tensor, bases overlaid.

    Args:
        frame: records (row norms in ``extra["row_norms"]`` or ``extra["row_norm_hist"]``).
        checkpoint: checkpoint to show (the latest when None).
        step: its step.
        max_tensors: at most this many panels (the largest tensors).

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    data = figure_data.row_norm_histograms(records)
    if data.empty:
        return empty_figure("No exported row norms (extra['row_norms'] of the ℓ∞ records).")
    sizes = data.groupby("tensor", sort=False)["rows"].max()
    shown = list(sizes.sort_values(ascending=False, kind="stable").index[:max_tensors])
    shown = [t for t in sizes.index if t in shown]  # keep model order
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = new_figure(3.4 * ncols + 0.6, 2.5 * nrows + 1.1)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    bases = bounds.basis_order(data["basis"])
    for ax, tensor in zip(axes, shown, strict=False):
        sub = data[data["tensor"] == tensor]
        for basis in bases:
            b = sub[sub["basis"] == basis]
            if b.empty:
                continue
            edges = np.append(b["left"].to_numpy(), b["right"].iloc[-1])
            ax.stairs(
                b["count"].to_numpy(), edges, color=basis_color(bases, basis), lw=1.4, label=basis
            )
        ax.set_xscale("log")
        counts = sub["count"][sub["count"] > 0]
        if len(counts) and counts.max() / counts.min() > LOG_SPAN:
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.7)
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=0)
        ax.set_title(
            f"{short_block_names([tensor])[0]}  ({int(sub['rows'].max())} rows)", fontsize=9
        )
        ax.grid(alpha=0.3)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    legend_below(
        fig,
        [Line2D([], [], color=basis_color(bases, b), lw=1.4, label=f"basis: {b}") for b in bases],
    )
    fig.supxlabel(f"row ℓ1 norm ‖H_i,:‖₁  ({CONSTANT_UNIT})", fontsize=10)
    fig.supylabel("rows per bin", fontsize=10)
    more = len(sizes) - len(shown)
    extra = f" ({more} smaller tensors not shown)" if more > 0 else ""
    suptitle(fig, f"Row ℓ1 norms per tensor — {title_for(records)}{extra}")
    return fig


def plot_spectral_density(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> Figure:
    """The Lanczos (SLQ) spectral density of H, with λ_min and λ_max marked when measured.

    Args:
        frame: records (quantity ``spectral_density`` with ``extra["grid"]``/``["density"]``).
        checkpoint: checkpoint to show (the latest when None).
        step: its step.

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    data = figure_data.spectral_density_data(records)
    if data.empty:
        return empty_figure("No spectral density records (quantity 'spectral_density').")
    fig = new_figure(8.0, 4.2)
    ax = fig.add_subplot()
    bases = bounds.basis_order(data["basis"])
    positive = data["density"][data["density"] > 0]
    for basis in bases:
        sub = data[data["basis"] == basis].sort_values("eigenvalue")
        y = sub["density"].to_numpy()
        if len(positive):
            y = np.where(y > 0, y, np.nan)
        ax.plot(
            sub["eigenvalue"], y, color=basis_color(bases, basis), lw=1.5, label=f"basis: {basis}"
        )
    for quantity, name in (
        ("lambda_min", r"$\lambda_{\min}$"),
        ("lambda_max", r"$\lambda_{\max}$"),
    ):
        iv = bounds.quantity_interval(records, quantity)
        if iv is not None:
            ax.axvline(iv.value, color="0.4", ls=":", lw=1)
            ax.text(
                iv.value,
                1.0,
                f" {name} = {fmt.fmt_num(iv.value)}",
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color="0.3",
                transform=ax.get_xaxis_transform(),
            )
    if maybe_log(ax, list(positive)):
        top = float(positive.max())
        ax.set_ylim(max(float(positive.min()), top * DENSITY_FLOOR), top * 3)
    ax.set_xlabel(f"eigenvalue λ of H  ({CONSTANT_UNIT})")
    ax.set_ylabel("spectral density  (per unit λ)")
    ax.grid(alpha=0.3)
    legend_below(fig, ax.get_lines()[: len(bases)])
    suptitle(
        fig, f"Hessian spectral density (stochastic Lanczos quadrature) — {title_for(records)}"
    )
    return fig


def plot_block_heatmap(
    frame: pd.DataFrame,
    *,
    checkpoint: str | None = None,
    step: float | None = None,
    partition: str | None = None,
) -> Figure:
    """Heatmap of the block contributions √(d_b d_b')‖H_bb'‖₂ to U(Φ), one panel per basis.

    Args:
        frame: records (``block_upper`` with ``extra["contributions"]``/``["block_names"]``).
        checkpoint: checkpoint to show (the latest when None).
        step: its step.
        partition: partition to show; by default the first of tensor, layer, head, row, others.

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    data = figure_data.block_contribution_data(records)
    if data.empty:
        return empty_figure("No per-block contributions (extra['contributions'] of block_upper).")
    available = list(dict.fromkeys(data["partition"]))
    if partition is None:
        preferred = [p for p in ("tensor", "layer", "head", "row") if p in available]
        partition = (preferred or available)[0]
    data = data[data["partition"] == partition]
    if data.empty:
        return empty_figure(f"No per-block contributions for partition '{partition}'.")
    bases = bounds.basis_order(data["basis"])
    n = int(data["i"].max()) + 1
    positive = data["value"][data["value"] > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if len(positive) else None
    side = min(6.0, max(3.2, 0.2 * n + 2.2))
    fig = new_figure(side * len(bases) + 2.6, side + 2.0)
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    image = None
    stride = tick_stride(n)
    ticks = list(range(0, n, stride))
    fontsize = 8 if n <= 12 else 6.5 if n <= 32 else 5.5
    for k, (ax, basis) in enumerate(zip(axes, bases, strict=True)):
        sub = data[data["basis"] == basis]
        m = np.full((n, n), np.nan)
        m[sub["i"].to_numpy(), sub["j"].to_numpy()] = sub["value"].to_numpy()
        m = np.where(m > 0, m, np.nan)
        image = ax.imshow(m, norm=norm, cmap="viridis", interpolation="nearest")
        names = short_block_names(sub.sort_values("i").drop_duplicates("i")["row_block"])
        shown = [names[i] for i in ticks]
        every = f", every {stride}th labelled" if stride > 1 else ""
        ax.set_xticks(ticks, shown, rotation=90, fontsize=fontsize)
        ax.set_yticks(ticks, shown if k == 0 else [""] * len(ticks), fontsize=fontsize)
        ax.set_xlabel(f"block b′ ({n} blocks{every})", fontsize=9)
        if k == 0:
            ax.set_ylabel(f"block b ({n} blocks{every})", fontsize=9)
        total = np.nansum(m)
        ax.set_title(
            f"basis: {basis}\nU(Φ) = Σ = {fmt.fmt_num(total)}",
            fontsize=10,
            color=basis_color(bases, basis),
        )
    if image is not None:
        fig.colorbar(
            image,
            ax=list(axes),
            shrink=0.8,
            label=r"$\sqrt{d_b d_{b'}}\,\|H_{bb'}\|_2$" + f"  ({CONSTANT_UNIT})",
        )
    suptitle(fig, f"Blockwise contributions to U(Φ), Φ = {partition} — {title_for(records)}")
    return fig


def plot_graddiff_sweep(
    frame: pd.DataFrame, *, checkpoint: str | None = None, step: float | None = None
) -> Figure:
    """Gradient-difference ratio ‖∇L(θ+δ) − ∇L(θ)‖_* / ‖δ‖ against the radius, per geometry.

    The HVP-based constant of the same geometry (L₂ for ℓ2, H∞ for ℓ∞, H(Φ) for blockwise) is
    drawn as a band when it was measured.

    Args:
        frame: records (``graddiff_<statistic>`` with ``settings["radius"]``).
        checkpoint: checkpoint to show (the latest when None).
        step: its step.

    Returns:
        The figure.
    """
    records = bounds.select_checkpoint(frame, checkpoint, step)
    data = figure_data.graddiff_data(records)
    if data.empty:
        return empty_figure("No gradient-difference records (graddiff_* with a radius).")
    panels = list(dict.fromkeys(zip(data["geometry"], data["partition"], strict=True)))[:4]
    consts = bounds.constants_table(records)
    fig = new_figure(4.6 * len(panels) + 0.4, 4.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    stats = list(dict.fromkeys(data["statistic"]))
    markers = ("o", "s", "D", "^", "v", "P")
    bases = bounds.basis_order(data["basis"])
    for ax, (geometry, partition) in zip(axes, panels, strict=True):
        sub = data[(data["geometry"] == geometry) & (data["partition"] == partition)]
        drawn = list(sub["value"])
        ref = _reference_constant(consts, geometry, partition, bases[0])
        if ref is not None:
            iv, name = ref
            if np.isfinite(iv.low) and np.isfinite(iv.high) and iv.low > 0:
                ax.axhspan(iv.low, iv.high, color="0.6", alpha=0.2, lw=0)
                drawn += [iv.low, iv.high]
            ax.axhline(iv.value, color="0.35", ls="--", lw=1)
            ax.text(
                0.02,
                iv.value,
                f" HVP: {name} = {fmt.fmt_num(iv.value)}",
                fontsize=8,
                color="0.25",
                va="bottom",
                transform=ax.get_yaxis_transform(),
            )
            drawn.append(iv.value)
        for basis in bases:
            for s_i, stat in enumerate(stats):
                line = sub[(sub["basis"] == basis) & (sub["statistic"] == stat)]
                line = line.sort_values("radius")
                if line.empty:
                    continue
                ax.plot(
                    line["radius"],
                    line["value"],
                    marker=markers[s_i % len(markers)],
                    color=basis_color(bases, basis),
                    ls=BASIS_STYLES[s_i % 4],
                    ms=4,
                    label=f"{stat} over samples" + (f" ({basis})" if len(bases) > 1 else ""),
                )
        ax.set_xscale("log")
        maybe_log(ax, drawn)
        geo = fmt.GEOMETRY_NAMES.get(geometry, geometry)
        ax.set_title(f"{geo}" + (f", Φ = {partition}" if geometry == "block" else ""), fontsize=10)
        modes = sorted(set(sub["radius_mode"]))
        mode = modes[0] if len(modes) == 1 else "/".join(modes)
        ax.set_xlabel(f"radius r = ‖δ‖ in that geometry's norm ({mode})")
        ax.grid(alpha=0.3, which="both")
    handles = [h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")]
    handles.append(
        Line2D([], [], color="0.35", ls="--", lw=1, label="HVP constant (band: its bracket)")
    )
    legend_below(fig, handles, ncols=min(3, len(handles)))
    axes[0].set_ylabel("‖∇L(θ+δ) − ∇L(θ)‖∗ / ‖δ‖  (dual norm ∗)\n" + f"({CONSTANT_UNIT})")
    suptitle(fig, f"Gradient-difference radius sweep — {title_for(records)}")
    return fig


def _reference_constant(
    consts: pd.DataFrame, geometry: str, partition: str, basis: str
) -> tuple[Interval, str] | None:
    sel = consts[consts["basis"] == basis]
    if geometry == "l2":
        row = sel[sel["geometry"] == "l2"]
        if row.empty:
            return None
        d = float(row.iloc[0]["d"])
        return interval_from_row(row.iloc[0]).scale(1.0 / d), "L₂"
    row = sel[(sel["geometry"] == geometry) & (sel["partition"] == partition)]
    if row.empty:
        return None
    return interval_from_row(row.iloc[0]), str(row.iloc[0]["constant"])
