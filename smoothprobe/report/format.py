"""Formatting: numbers and intervals as text, and tables as Markdown, HTML, CSV or terminal text.

The renderers need no extra dependency (pandas' ``to_markdown`` would need tabulate).
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from smoothprobe.interval import Interval

GEOMETRY_NAMES = {"l2": "ℓ2", "linf": "ℓ∞", "block": "blockwise"}


def fmt_num(x: Any, *, digits: int = 3) -> str:
    """Formats a number with ``digits`` significant digits (plain between 1e-3 and 1e6,
    exponent otherwise; no thousands separator, which would clash with "[low, high]");
    None/NaN become "—", infinities "∞"."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    a = abs(float(f"{x:.{digits - 1}e}"))  # after rounding: 0.99996 counts as 1.00
    if 1e-3 <= a < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(a)))
        text = f"{x:.{decimals}f}"
        if text.strip("-0.") == "":  # rounding ate every digit
            return f"{x:.{digits - 1}e}"
        return text
    return f"{x:.{digits - 1}e}"


def fmt_interval(iv: Interval, *, digits: int = 3) -> str:
    """``[low, high]`` with ``fmt_num``."""
    return f"[{fmt_num(iv.low, digits=digits)}, {fmt_num(iv.high, digits=digits)}]"


def short_label(label: str) -> str:
    """Short form of an end label: 'statistical upper (97.5% CI)' → '97.5% CI',
    'certified lower' → 'certified', 'Lanczos-residual upper' → 'Lanczos residual'."""
    label = label.replace(" lower", "").replace(" upper", "")
    if label.startswith("statistical ("):
        return label[len("statistical (") : -1]
    if label.startswith("probabilistic ("):  # 'probabilistic (99.8% level)' → '…, 99.8%'
        return "probabilistic, " + label[len("probabilistic (") : -len(" level)")]
    short = {
        "Lanczos-residual": "Lanczos residual",
        "point estimate (no error bar)": "no error bar",
    }
    return short.get(label, label)


def fmt_ends(iv: Interval) -> str:
    """The kinds of both ends, lower / upper, e.g. ``"certified / 95% CI"``."""
    low, high = short_label(iv.low_label()), short_label(iv.high_label())
    return low if low == high else f"{low} / {high}"


def checkpoint_label(checkpoint: str, step: Any) -> str:
    """``name @ step N`` (or just the name without a step)."""
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return str(checkpoint)
    return f"{checkpoint} @ step {int(step)}"


def to_markdown(table: pd.DataFrame) -> str:
    """Renders a DataFrame as a GitHub Markdown table (pipes escaped; index dropped)."""
    if table.empty:
        return "_(none)_\n"
    header = [_md_cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _md_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_html(table: pd.DataFrame, *, css_class: str = "tbl") -> str:
    """Renders a DataFrame as an HTML table (escaped; index dropped)."""
    if table.empty:
        return "<p><em>(none)</em></p>\n"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in table.itertuples(index=False)
    )
    return (
        f'<table class="{html.escape(css_class)}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
    )


def to_text(table: pd.DataFrame, *, max_width: int = 60) -> str:
    """Renders a DataFrame as an aligned plain-text table for the terminal.

    Args:
        table: the table.
        max_width: cells longer than this are cut with "…".

    Returns:
        The text, one line per row, with a header and a rule.
    """
    if table.empty:
        return "(none)\n"

    def cell(v: Any) -> str:
        text = "" if v is None else str(v).replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(c) for c in table.columns]] + [
        [cell(v) for v in row] for row in table.itertuples(index=False)
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("─" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """Renders a DataFrame as CSV text (index dropped)."""
    return table.to_csv(index=False)
