"""Shared look of the report's figures: colours per basis, brackets, legends, titles, empty figures.

Figures are built on ``Figure`` objects directly (never ``pyplot``), so no global figure state is
created or leaked; saving a figure as PNG uses the Agg canvas.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from smoothprobe import compare as bounds
from smoothprobe.interval import Interval
from smoothprobe.report import format as fmt

BASIS_COLORS = ("#1f5fa8", "#c8412b", "#2e8b57", "#7b4fa0", "#c7881a")
BASIS_STYLES = ("-", "--", ":", "-.")
BASIS_MARKERS = ("o", "D", "s", "v")  # steps figure: a basis measured once is a lone marker
CONSTANT_UNIT = "loss / parameter²"
LOG_SPAN = 30.0
FIG_DPI = 110
EMPTY = "empty: "
DENSITY_FLOOR = 1e-8  # log density axes stop 8 decades below the peak
TITLE_SIZE = 12
MAX_TICK_LABELS = 30  # heatmaps label every n-th block beyond this many
NAME_PREFIXES = ("_orig_mod.", "module.", "transformer.", "model.")


def basis_color(bases: Sequence[str], basis: str) -> str:
    """A stable color per basis (identity first), shared by every figure."""
    order = bounds.basis_order(list(bases))
    return BASIS_COLORS[order.index(basis) % len(BASIS_COLORS)]


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=FIG_DPI, layout="constrained")


def empty_figure(message: str, *, title: str = "") -> Figure:
    """A small figure that states why there is nothing to plot."""
    fig = new_figure(7.0, 1.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.set_label(EMPTY + message)
    return fig


def has_data(fig: Figure) -> bool:
    """False for the placeholder figures returned when records are missing."""
    return not fig.get_label().startswith(EMPTY)


def missing_reason(fig: Figure) -> str:
    """The message of a placeholder figure ("" for a figure with data)."""
    label = fig.get_label()
    return label[len(EMPTY) :] if label.startswith(EMPTY) else ""


def maybe_log(ax, values: Sequence[float], *, axis: str = "y") -> bool:
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0])
    if vals.size >= 2 and vals.max() / vals.min() > LOG_SPAN:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        return True
    return False


def draw_bracket(ax, x: float, iv: Interval, color: str, *, width: float = 0.18) -> list[float]:
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


def bracket_handles(*, point: str = "point value (surrogate, capped at d·L₂)") -> list[Line2D]:
    return [
        Line2D([], [], color="0.3", lw=2.2, label="bracket: lower … upper bound"),
        Line2D([], [], color="0.3", marker="o", ls="none", mec="white", label=point),
        Line2D([], [], color="0.3", marker="^", ls="none", label="lower bound only"),
    ]


def legend_below(fig: Figure, handles: Sequence, *, ncols: int | None = None) -> None:
    """One figure legend below the axes (outside the data, so it never covers a point)."""
    handles = list({h.get_label(): h for h in handles}.values())  # one entry per label
    if not handles:
        return
    ncols = ncols or min(4, len(handles))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=8)


def suptitle(fig: Figure, text: str, *, fontsize: float = TITLE_SIZE) -> None:
    """A figure title wrapped to the figure's width (never clipped at the sides)."""
    width_pt = fig.get_figwidth() * 72
    chars = max(20, int(width_pt / (0.6 * fontsize)))
    parts = text.split(" — ") if len(text) > chars else [text]  # break before the checkpoint
    lines = [textwrap.fill(part, width=chars, break_long_words=True) for part in parts]
    fig.suptitle("\n".join(lines), fontsize=fontsize)


def short_checkpoint_label(checkpoint: str, step) -> str:
    """``file name @ step N``: the checkpoint's file name without its directories."""
    name = PurePosixPath(str(checkpoint).replace("\\", "/")).name or str(checkpoint)
    return fmt.checkpoint_label(name, step)


def short_block_names(names: Sequence[str]) -> list[str]:
    """Tick labels for block names: framework prefixes (``transformer.`` …) stripped.

    Args:
        names: block names, e.g. ``transformer.h.0.attn.c_attn.weight``.

    Returns:
        The names without prefixes that every name shares (``_orig_mod.``, ``module.``,
        ``transformer.``, ``model.``), each stripped only where that keeps names distinct.
    """
    out = [str(n) for n in names]
    for prefix in NAME_PREFIXES:
        stripped = [n[len(prefix) :] if n.startswith(prefix) else n for n in out]
        if all(stripped) and len(set(stripped)) == len(set(out)):
            out = stripped
    return out


def tick_stride(n: int, *, max_labels: int = MAX_TICK_LABELS) -> int:
    """Label every n-th of ``n`` ticks so that at most ``max_labels`` are labelled."""
    return max(1, math.ceil(n / max_labels))


def title_for(records: pd.DataFrame) -> str:
    if records.empty:
        return ""
    return short_checkpoint_label(records["checkpoint"].iloc[0], records["step"].iloc[0])


# ------------------------------------------------------------------------------------- figures
