"""Figures of a report: one function per figure, each returning a ``matplotlib.figure.Figure``.

Figures are built on ``Figure`` objects directly (never ``pyplot``), so no global figure state is
created or leaked; saving a figure as PNG uses the Agg canvas. Every function takes a records
DataFrame and keyword options; when the records it needs are absent it returns a small figure
that says what is missing (``has_data`` tells the report whether to include a figure at all).

Conventions: bars are brackets [certified/statistical lower end, upper end] of a constant (the
tables label each end), dots are point values (the upper-bound surrogates ‖H‖₁,₁ and U(Φ), as in
the seed paper); log axes are used when values span more than ~1.5 decades.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from smoothprobe import bounds
from smoothprobe.bounds import interval_from_row
from smoothprobe.interval import Interval
from smoothprobe.report import tables

BASIS_COLORS = ("#1f5fa8", "#c8412b", "#2e8b57", "#7b4fa0", "#c7881a")
BASIS_STYLES = ("-", "--", ":", "-.")
BASIS_MARKERS = ("o", "D", "s", "v")  # steps figure: a basis measured once is a lone marker
CONSTANT_UNIT = "loss / parameter²"
_LOG_SPAN = 30.0
_FIG_DPI = 110
_EMPTY = "empty: "
_DENSITY_FLOOR = 1e-8  # log density axes stop 8 decades below the peak
_TITLE_SIZE = 12
_MAX_TICK_LABELS = 30  # heatmaps label every n-th block beyond this many
_NAME_PREFIXES = ("_orig_mod.", "module.", "transformer.", "model.")


def basis_color(bases: Sequence[str], basis: str) -> str:
    """A stable color per basis (identity first), shared by every figure."""
    order = bounds.basis_order(list(bases))
    return BASIS_COLORS[order.index(basis) % len(BASIS_COLORS)]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=_FIG_DPI, layout="constrained")


def empty_figure(message: str, *, title: str = "") -> Figure:
    """A small figure that states why there is nothing to plot."""
    fig = _figure(7.0, 1.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.set_label(_EMPTY + message)
    return fig


def has_data(fig: Figure) -> bool:
    """False for the placeholder figures returned when records are missing."""
    return not fig.get_label().startswith(_EMPTY)


def missing_reason(fig: Figure) -> str:
    """The message of a placeholder figure ("" for a figure with data)."""
    label = fig.get_label()
    return label[len(_EMPTY) :] if label.startswith(_EMPTY) else ""


def _maybe_log(ax, values: Sequence[float], *, axis: str = "y") -> bool:
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0])
    if vals.size >= 2 and vals.max() / vals.min() > _LOG_SPAN:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def _draw_bracket(ax, x: float, iv: Interval, color: str, *, width: float = 0.18) -> list[float]:
    """Draws [low, high] as a capped bar and the point as a dot; returns the values drawn."""
    drawn = []
    low = iv.low if np.isfinite(iv.low) and iv.low > 0 else None
    high = iv.high if np.isfinite(iv.high) else None
    if low is not None and high is not None:
        ax.plot([x, x], [low, high], color=color, lw=2.2, solid_capstyle="butt")
        ax.plot([x - width / 2, x + width / 2], [low, low], color=color, lw=1.6)
        ax.plot([x - width / 2, x + width / 2], [high, high], color=color, lw=1.6)
        drawn += [low, high]
    elif low is not None:  # lower bound only: "at least"
        ax.plot([x], [low], marker="^", ms=9, color=color, ls="none")
        drawn.append(low)
    elif high is not None:  # upper bound only: "at most"
        ax.plot([x], [high], marker="v", ms=9, color=color, ls="none")
        drawn.append(high)
    if np.isfinite(iv.value) and iv.value > 0:
        ax.plot([x], [iv.value], marker="o", ms=6, color=color, mec="white", mew=0.8, ls="none")
        drawn.append(iv.value)
    return drawn


def _bracket_handles(*, point: str = "point value (upper-bound surrogate)") -> list[Line2D]:
    return [
        Line2D([], [], color="0.3", lw=2.2, label="bracket: lower … upper bound"),
        Line2D([], [], color="0.3", marker="o", ls="none", mec="white", label=point),
        Line2D([], [], color="0.3", marker="^", ls="none", label="lower bound only"),
    ]


def _legend_below(fig: Figure, handles: Sequence, *, ncols: int | None = None) -> None:
    """One figure legend below the axes (outside the data, so it never covers a point)."""
    handles = list({h.get_label(): h for h in handles}.values())  # one entry per label
    if not handles:
        return
    ncols = ncols or min(4, len(handles))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=8)


def _suptitle(fig: Figure, text: str, *, fontsize: float = _TITLE_SIZE) -> None:
    """A figure title wrapped to the figure's width (never clipped at the sides)."""
    width_pt = fig.get_figwidth() * 72
    chars = max(20, int(width_pt / (0.6 * fontsize)))
    parts = text.split(" — ") if len(text) > chars else [text]  # break before the checkpoint
    lines = [textwrap.fill(part, width=chars, break_long_words=True) for part in parts]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def short_checkpoint_label(checkpoint: str, step) -> str:
    """``file name @ step N``: the checkpoint's file name without its directories."""
    name = PurePosixPath(str(checkpoint).replace("\\", "/")).name or str(checkpoint)
    return tables.checkpoint_label(name, step)


def short_block_names(names: Sequence[str]) -> list[str]:
    """Tick labels for block names: framework prefixes (``transformer.`` …) stripped.

    Args:
        names: block names, e.g. ``transformer.h.0.attn.c_attn.weight``.

    Returns:
        The names without prefixes that every name shares (``_orig_mod.``, ``module.``,
        ``transformer.``, ``model.``), each stripped only where that keeps names distinct.
    """
    out = [str(n) for n in names]
    for prefix in _NAME_PREFIXES:
        stripped = [n[len(prefix) :] if n.startswith(prefix) else n for n in out]
        if all(stripped) and len(set(stripped)) == len(set(out)):
            out = stripped
    return out


def tick_stride(n: int, *, max_labels: int = _MAX_TICK_LABELS) -> int:
    """Label every n-th of ``n`` ticks so that at most ``max_labels`` are labelled."""
    return max(1, math.ceil(n / max_labels))


def _title_for(records: pd.DataFrame) -> str:
    if records.empty:
        return ""
    return short_checkpoint_label(records["checkpoint"].iloc[0], records["step"].iloc[0])


# ------------------------------------------------------------------------------------- figures


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
    fig = _figure(max(6.0, 0.9 * len(labels) * len(bases) + 2.0), 4.8)
    axes = fig.subplots(1, len(bases), sharey=True, squeeze=False)[0]
    drawn: list[float] = []
    for ax, basis in zip(axes, bases, strict=True):
        sub = consts[consts["basis"] == basis]
        color = basis_color(bases, basis)
        for i, label in enumerate(labels):
            row = sub[sub["constant"] == label]
            if not row.empty:
                drawn += _draw_bracket(ax, i, interval_from_row(row.iloc[0]), color)
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
    _maybe_log(axes[0], drawn)
    axes[0].set_ylabel(f"constant H(Φ)  ({CONSTANT_UNIT})")
    dl2_line = Line2D([], [], color="0.5", ls="--", lw=1, label="d·L₂ (SGD's constant)")
    _legend_below(fig, [*_bracket_handles(), dl2_line])
    _suptitle(fig, f"Smoothness constants by geometry — {_title_for(records)}")
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
    fig = _figure(max(6.5, 1.1 * len(keys) + 2.5), 4.6)
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
                drawn += _draw_bracket(
                    ax, i + off, interval_from_row(row.iloc[0], "rho_"), color, width=0.12
                )
    ax.axhline(1.0, color="0.4", ls="--", lw=1)
    ticks = []
    for partition, geometry in keys:
        name = partition + (
            f" ({tables.GEOMETRY_NAMES.get(geometry, geometry)})" if partition in dup else ""
        )
        opt = rho[(rho["partition"] == partition) & (rho["geometry"] == geometry)]["optimizer"]
        ticks.append(f"{name}\n{opt.iloc[0]}")
    ax.set_xticks(range(len(keys)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(keys) - 0.4)
    if not _maybe_log(ax, drawn):
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
            label="point: surrogate / (d·L₂)",
        )
    )
    handles.append(Line2D([], [], color="0.4", ls="--", lw=1, label="SGD: ρ = 1"))
    _legend_below(fig, handles)
    _suptitle(fig, f"ρ per partition — {_title_for(records)}")
    return fig


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
    data = tables.row_norm_histograms(records)
    if data.empty:
        return empty_figure("No exported row norms (extra['row_norms'] of the ℓ∞ records).")
    sizes = data.groupby("tensor", sort=False)["rows"].max()
    shown = list(sizes.sort_values(ascending=False, kind="stable").index[:max_tensors])
    shown = [t for t in sizes.index if t in shown]  # keep model order
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = _figure(3.4 * ncols + 0.6, 2.5 * nrows + 1.1)
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
        if len(counts) and counts.max() / counts.min() > _LOG_SPAN:
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
    _legend_below(
        fig,
        [Line2D([], [], color=basis_color(bases, b), lw=1.4, label=f"basis: {b}") for b in bases],
    )
    fig.supxlabel(f"row ℓ1 norm ‖H_i,:‖₁  ({CONSTANT_UNIT})", fontsize=10)
    fig.supylabel("rows per bin", fontsize=10)
    more = len(sizes) - len(shown)
    extra = f" ({more} smaller tensors not shown)" if more > 0 else ""
    _suptitle(fig, f"Row ℓ1 norms per tensor — {_title_for(records)}{extra}")
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
    data = tables.spectral_density_data(records)
    if data.empty:
        return empty_figure("No spectral density records (quantity 'spectral_density').")
    fig = _figure(8.0, 4.2)
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
                f" {name} = {tables.fmt_num(iv.value)}",
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color="0.3",
                transform=ax.get_xaxis_transform(),
            )
    if _maybe_log(ax, list(positive)):
        top = float(positive.max())
        ax.set_ylim(max(float(positive.min()), top * _DENSITY_FLOOR), top * 3)
    ax.set_xlabel(f"eigenvalue λ of H  ({CONSTANT_UNIT})")
    ax.set_ylabel("spectral density  (per unit λ)")
    ax.grid(alpha=0.3)
    _legend_below(fig, ax.get_lines()[: len(bases)])
    _suptitle(
        fig, f"Hessian spectral density (stochastic Lanczos quadrature) — {_title_for(records)}"
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
    data = tables.block_contribution_data(records)
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
    fig = _figure(side * len(bases) + 2.6, side + 2.0)
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
            f"basis: {basis}\nU(Φ) = Σ = {tables.fmt_num(total)}",
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
    _suptitle(fig, f"Blockwise contributions to U(Φ), Φ = {partition} — {_title_for(records)}")
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
    ratios = tables.step_ratio_data(frame)
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
    fig = _figure(5.2 * len(panels) + 0.8, 4.9)
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
        _maybe_log(ax, drawn)
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
    _legend_below(fig, handles, ncols=min(6, len(handles)))
    _suptitle(fig, "Smoothness over training")
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
            name = tables.GEOMETRY_NAMES.get(geometry, geometry)
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
    _maybe_log(ax, drawn)
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
    data = tables.graddiff_data(records)
    if data.empty:
        return empty_figure("No gradient-difference records (graddiff_* with a radius).")
    panels = list(dict.fromkeys(zip(data["geometry"], data["partition"], strict=True)))[:4]
    consts = bounds.constants_table(records)
    fig = _figure(4.6 * len(panels) + 0.4, 4.4)
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
                f" HVP: {name} = {tables.fmt_num(iv.value)}",
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
        _maybe_log(ax, drawn)
        geo = tables.GEOMETRY_NAMES.get(geometry, geometry)
        ax.set_title(f"{geo}" + (f", Φ = {partition}" if geometry == "block" else ""), fontsize=10)
        modes = sorted(set(sub["radius_mode"]))
        mode = modes[0] if len(modes) == 1 else "/".join(modes)
        ax.set_xlabel(f"radius r = ‖δ‖ in that geometry's norm ({mode})")
        ax.grid(alpha=0.3, which="both")
    handles = [h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")]
    handles.append(
        Line2D([], [], color="0.35", ls="--", lw=1, label="HVP constant (band: its bracket)")
    )
    _legend_below(fig, handles, ncols=min(3, len(handles)))
    axes[0].set_ylabel("‖∇L(θ+δ) − ∇L(θ)‖∗ / ‖δ‖  (dual norm ∗)\n" + f"({CONSTANT_UNIT})")
    _suptitle(fig, f"Gradient-difference radius sweep — {_title_for(records)}")
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
