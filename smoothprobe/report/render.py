"""Reports: records → ``index.html`` (self-contained) + ``report.md`` with PNGs, and ``compare``.

``write_report`` builds everything in memory first (figures rendered to PNG bytes, tables to
text), writes it into a temporary sibling directory and renames that into place, so a failure at
any point leaves either the previous report or none — never a half-written one.

The report opens with one paragraph that answers the user's question for the latest checkpoint
(``headline_text``); its numbers come from ``bounds.headline_numbers`` (also written to
``headline.json``), so a test can check that the report states what the records say.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from smoothprobe import bounds
from smoothprobe.bounds import headline_numbers
from smoothprobe.errors import SmoothprobeError
from smoothprobe.records import load_records
from smoothprobe.report import plots, tables
from smoothprobe.report.tables import fmt_num

__all__ = [
    "Report",
    "build_report",
    "compare_table",
    "headline_numbers",
    "headline_text",
    "write_report",
]

RecordsLike = pd.DataFrame | str | os.PathLike | Sequence[str | os.PathLike]
_REPORT_MARKERS = ("index.html", "report.md", "headline.json")
_PNG_DPI = 110


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: file name, heading, caption and the function that draws it."""

    name: str
    heading: str
    caption: str
    make: Callable[[pd.DataFrame], Figure]


FIGURES = (
    FigureSpec(
        "constants.png",
        "ℓ2 vs ℓ∞ vs blockwise constants",
        "Each constant's bracket (bar: lower … upper bound; the tables say which end is "
        "certified and which statistical) and its point value (dot: the upper-bound surrogate "
        "‖H‖₁,₁ or U(Φ)), in the original basis and each rotated one. The dashed line is d·L₂, "
        "SGD's constant on the same ℓ1 yardstick.",
        plots.plot_constants,
    ),
    FigureSpec(
        "rho.png",
        "ρ(Φ) per partition",
        "ρ(Φ) = H(Φ)/(d·L₂) from the finest partition (singletons: Adam) to the coarsest "
        "(one block: AdaSGD). Below the dashed line at 1 the geometry beats SGD's; per MATH.md "
        "§5 ρ(Φ) is also the predicted T_Φ/T_SGD (structure only for the Adam family).",
        plots.plot_rho_by_partition,
    ),
    FigureSpec(
        "heatmap.png",
        "Blockwise contributions",
        "Each cell is √(d_b d_b′)‖H_bb′‖₂, the block pair's share of the upper bound U(Φ). "
        "Mass off the diagonal is what a blockwise optimizer cannot adapt to.",
        plots.plot_block_heatmap,
    ),
    FigureSpec(
        "row_norms.png",
        "Row ℓ1 norms per tensor",
        "Histogram of r_i = ‖H_i,:‖₁ (coordinate-wise smoothness) per parameter tensor; "
        "Σ r_i = ‖H‖₁,₁. Heavy right tails are what makes ‖H‖₁,₁ large.",
        plots.plot_row_norms,
    ),
    FigureSpec(
        "spectrum.png",
        "Spectral density",
        "Stochastic Lanczos quadrature estimate of the eigenvalue density of H; the dotted "
        "lines are the Lanczos extreme eigenvalues (L₂ = max|λ|).",
        plots.plot_spectral_density,
    ),
    FigureSpec(
        "steps.png",
        "Over training",
        "Constants and ρ(Φ) at every measured checkpoint; bands are brackets.",
        plots.plot_constants_over_steps,
    ),
    FigureSpec(
        "graddiff.png",
        "Gradient differences",
        "Sampled ‖∇L(θ+δ) − ∇L(θ)‖∗/‖δ‖ against the radius of δ. The max over samples is a "
        "lower bound on the constant over that ball; as r → 0 it approaches the HVP-based "
        "value for the same directions (band: the HVP constant's bracket).",
        plots.plot_graddiff_sweep,
    ),
)

BOUND_KINDS_NOTE = (
    "How to read the brackets: *certified* ends are proven (sign ascent, alternating ascent, "
    "Rayleigh quotients, exact dense values); *Lanczos-residual* ends hold when Lanczos found "
    "the extreme eigenpair (θ + residual); *statistical* ends are confidence limits, and when "
    "numbers are combined their error probabilities add (so a ratio of two 95% intervals is a "
    "90% interval); a *point estimate* has no error bar. H(Φ) ≤ d·L₂ and ρ ≤ 1 always, so the "
    "point ρ̂ = surrogate/(d·L₂) can exceed the bracket when the surrogate is loose. "
    "Predicted iteration ratios follow the steepest-descent bound of MATH.md §5 "
    "(T_Φ/T_SGD = ρ(Φ)); for Adam and its blockwise relatives the seed paper's theorem adds "
    "β₂/ε terms whose constants are not reproduced here: *structure only*."
)


@dataclass
class Report:
    """A rendered report held in memory.

    Attributes:
        markdown: text of ``report.md`` (figures referenced as PNG files beside it).
        html: text of ``index.html`` (figures embedded as base64 PNG).
        files: every file of the report directory, name → bytes (PNGs, CSVs, JSON, both texts).
        headline: ``bounds.headline_numbers`` of the headline checkpoint.
        skipped: figure/table name → why it was left out.
    """

    markdown: str
    html: str
    files: dict[str, bytes] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ headline


def _times(iv: dict[str, Any]) -> str:
    v = iv["value"]
    if v is None:
        return "—"
    return f"{fmt_num(v)}× smaller" if v >= 1 else f"{fmt_num(1 / v)}× larger"


def _bracket(iv: dict[str, Any], unit: str = "×") -> str:
    low = fmt_num(iv["low"]) if iv["low"] is not None else "—"
    high = fmt_num(iv["high"]) if iv["high"] is not None else "∞"
    return f"{low}–{high}{unit}"


def _ends(iv: dict[str, Any]) -> str:
    low, high = tables.short_label(iv["low_label"]), tables.short_label(iv["high_label"])
    return f"both ends {low}" if low == high else f"ends: {low} / {high}"


def _loose(iv: dict[str, Any]) -> bool:
    return (
        iv["value"] is not None and iv["low"] is not None and iv["value"] < iv["low"] * (1 - 1e-9)
    )


def headline_text(numbers: dict[str, Any]) -> str:
    """The report's opening paragraph, from ``bounds.headline_numbers`` (Markdown, ** = bold).

    Every number in the paragraph is ``fmt_num`` of a value in ``numbers``; the ratio
    "X× smaller" prints ``advantage.value`` when it is ≥ 1 and its reciprocal as "× larger"
    otherwise.

    Args:
        numbers: the dict returned by ``bounds.headline_numbers``.

    Returns:
        One paragraph of Markdown text.
    """
    if numbers.get("checkpoint") is None:
        return "These records contain no measurements."
    where = f"Checkpoint `{numbers['checkpoint']}`"
    details = []
    if numbers.get("step") is not None:
        details.append(f"step {numbers['step']}")
    if numbers.get("d") is not None:
        details.append(f"d = {numbers['d']}")
    if details:
        where += f" ({', '.join(details)})"
    parts = [where + "."]
    adv, rot, cost = numbers["advantage"], numbers["rotated_advantage"], numbers["rotation_cost"]
    linf, dl2 = numbers["linf"], numbers["dl2"]
    if adv is not None:
        parts.append(
            f"In the ℓ∞ geometry this checkpoint's constant is **{_times(adv)}** than d·L₂ "
            f"(‖H‖₁,₁ = {fmt_num(linf['value'])} vs d·L₂ = {fmt_num(dl2['value'])}; true ratio "
            f"d·L₂/H∞ in {_bracket(adv)}, {_ends(adv)})"
            + ("; ‖H‖₁,₁ is loose here, since H∞ ≤ d·L₂ always" if _loose(adv) else "")
            + ("." if rot is None else ";")
        )
        if rot is not None:
            parts.append(
                f"rotated ({numbers['rotated_basis']}), it is **{_times(rot)}** "
                f"(true ratio in {_bracket(rot)}, {_ends(rot)}"
                + ("; ‖H‖₁,₁ is loose there, since H∞ ≤ d·L₂ always" if _loose(rot) else "")
                + ")"
                + "."
            )
        adam = (
            "Adam's predicted advantage over SGD (T_SGD/T_Adam = d·L₂/H∞, MATH.md §5) is "
            f"therefore **{fmt_num(adv['value'])}×** in the original basis"
        )
        if rot is not None and cost is not None:
            adam += (
                f" and **{fmt_num(rot['value'])}×** after rotation: rotation is predicted to "
                f"slow Adam by **{fmt_num(cost['value'])}×** (H∞ rotated/original in "
                f"{_bracket(cost)}, {_ends(cost)}) and to leave SGD unchanged."
            )
        else:
            adam += "."
        parts.append(adam)
    elif dl2 is not None:
        parts.append(
            f"d·L₂ = {fmt_num(dl2['value'])} ({_bracket(dl2, '')}); no ℓ∞ records, so Adam's "
            "predicted advantage cannot be stated."
        )
    elif linf is not None:
        parts.append(
            f"H∞ lies in {_bracket(linf, '')} ({_ends(linf)}), but no ℓ2 record (L₂) was "
            "measured, so ρ and the predicted advantage cannot be stated."
        )
    if numbers["blockwise"]:
        items = [
            f"{fmt_num(v['value'])}× for {v['optimizer']} (Φ = {p}; "
            + (f"U(Φ) loose, true ratio {_bracket(v)})" if _loose(v) else f"{_bracket(v)})")
            for p, v in numbers["blockwise"].items()
        ]
        parts.append("Blockwise, d·L₂/H(Φ) is " + ", ".join(items) + ".")
    noise = numbers.get("noise")
    if noise is not None:
        r = noise["ratio"]
        batch = f" at batch size {noise['batch_size']}" if noise["batch_size"] is not None else ""
        parts.append(
            f"Gradient noise{batch}: ‖σ‖₁ = {fmt_num(r['value'])} × √d·‖σ‖₂ "
            f"({_bracket(r, '')}, {_ends(r)}): Adam's noise term is that fraction of SGD's "
            "(structure only)."
        )
    parts.append(
        "Point values use the upper-bound surrogates ‖H‖₁,₁ and U(Φ) as the seed paper does; "
        "the seed paper's β₂/ε constants for Adam itself are not reproduced (structure only)."
    )
    if numbers["missing"]:
        parts.append("Not measured: " + "; ".join(numbers["missing"]) + ".")
    return " ".join(parts)


def key_numbers(numbers: dict[str, Any]) -> list[dict[str, str]]:
    """The headline's main numbers as display items (what, value, bracket, ends) for cards.

    Args:
        numbers: the dict returned by ``bounds.headline_numbers``.

    Returns:
        Up to four items, each with keys ``what``, ``value``, ``bracket`` and ``ends``.
    """
    items = []
    adv, rot, cost = numbers["advantage"], numbers["rotated_advantage"], numbers["rotation_cost"]
    if adv is not None:
        items.append(_item("Adam's predicted advantage T_SGD/T_Adam = d·L₂/H∞", adv))
    if rot is not None:
        items.append(_item(f"the same after rotation ({numbers['rotated_basis']})", rot))
    if cost is not None:
        items.append(_item("rotation slows Adam by (H∞ rotated / original)", cost))
    if numbers["dl2"] is not None:
        items.append(_item("d·L₂ (SGD's constant on the ℓ1 yardstick)", numbers["dl2"], unit=""))
    return items


def _item(what: str, iv: dict[str, Any], *, unit: str = "×") -> dict[str, str]:
    return {
        "what": what,
        "value": f"{fmt_num(iv['value'])}{unit}",
        "bracket": _bracket(iv, unit),
        "ends": _ends(iv),
    }


# -------------------------------------------------------------------------------- building


def as_frame(records: RecordsLike) -> pd.DataFrame:
    """A records DataFrame from a DataFrame, a path or a list of paths."""
    if isinstance(records, pd.DataFrame):
        return records
    return load_records(records)


def build_report(
    records: RecordsLike,
    *,
    title: str = "smoothprobe report",
    checkpoint: str | None = None,
    step: float | None = None,
) -> Report:
    """Renders a report in memory (see ``write_report``).

    Args:
        records: records DataFrame or JSONL path(s).
        title: report title.
        checkpoint: headline checkpoint (the latest when None).
        step: its step.

    Returns:
        The Report.

    Raises:
        SmoothprobeError: when there are no records.
    """
    frame = bounds.normalize_records(as_frame(records))
    if frame.empty:
        raise SmoothprobeError("no records to report on; pass JSONL files written by measure")
    numbers = headline_numbers(frame, checkpoint=checkpoint, step=step)
    head = bounds.select_checkpoint(frame, numbers["checkpoint"], _nan_step(numbers["step"]))
    label = tables.checkpoint_label(numbers["checkpoint"], numbers["step"])
    paragraph = headline_text(numbers)
    files: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    figures: list[tuple[FigureSpec, bytes]] = []
    for spec in FIGURES:
        data = frame if spec.name == "steps.png" else head
        fig = spec.make(data)
        if not plots.has_data(fig):
            skipped[spec.heading] = plots.missing_reason(fig)
            continue
        png = _png(fig)
        files[spec.name] = png
        figures.append((spec, png))
    sections = _table_sections(frame, head, label, skipped)
    for name, table in _csv_tables(frame).items():
        files[name] = tables.to_csv(table).encode("utf-8")
    files["headline.json"] = (json.dumps(numbers, indent=2, ensure_ascii=False) + "\n").encode()
    meta = _provenance(frame)
    cards = key_numbers(numbers)
    markdown = _markdown(title, paragraph, cards, figures, sections, skipped, meta)
    page = _html(title, paragraph, cards, figures, sections, skipped, meta)
    files["report.md"] = markdown.encode("utf-8")
    files["index.html"] = page.encode("utf-8")
    return Report(markdown, page, files, numbers, skipped)


def _nan_step(step: int | None) -> float:
    return float("nan") if step is None else float(step)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # bbox_inches="tight": a safety net so that no title, label or legend is ever clipped
    fig.savefig(
        buf,
        format="png",
        dpi=_PNG_DPI,
        metadata={"Software": None},
        bbox_inches="tight",
        pad_inches=0.1,
    )
    return buf.getvalue()


def _table_sections(
    frame: pd.DataFrame, head: pd.DataFrame, label: str, skipped: dict[str, str]
) -> list[tuple[str, str, pd.DataFrame]]:
    """(heading, intro, display table) for every table with rows; others go to ``skipped``."""
    out = []
    candidates = [
        (
            f"Constants and ρ at {label}",
            "Per basis × geometry/partition. ρ̂ is the point ratio; the ρ bracket bounds the "
            "true ρ(Φ); T_Φ/T_SGD is the predicted iteration ratio (MATH.md §5).",
            tables.summary_table(head, checkpoint_column=False),
        ),
        (
            "Original vs rotated",
            "H_rot/H_orig = ρ_rot/ρ_orig (L₂ is rotation invariant): above 1, rotation "
            "makes that geometry — and the optimizer it explains — worse.",
            tables.rotation_display(head, checkpoint_column=False),
        ),
        (
            "Gradient noise",
            "Noise terms per geometry at the stated batch size, and their ratio to SGD's "
            "√d·‖σ‖₂ (≤ 1 always).",
            tables.noise_display(head, checkpoint_column=False),
        ),
    ]
    if len(bounds.checkpoint_order(frame)) > 1:
        candidates.append(
            (
                "Every checkpoint",
                "The same table for every measured checkpoint, in training order.",
                tables.summary_table(frame),
            )
        )
    for heading, intro, table in candidates:
        if table.empty:
            skipped[heading] = "no records of this kind"
        else:
            out.append((heading, intro, table))
    out.append(
        (
            "All measurements",
            "Every record as measured (values, bound kinds, confidence intervals and cost).",
            tables.measurements_display(frame),
        )
    )
    return out


def _csv_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "constants.csv": bounds.constants_table(frame),
        "rho.csv": bounds.rho_table(frame),
        "rotation.csv": bounds.rotation_table(frame),
        "noise.csv": bounds.noise_table(frame),
        "measurements.csv": tables.measurements_table(frame),
    }


def _provenance(frame: pd.DataFrame) -> list[tuple[str, str]]:
    from smoothprobe._version import __version__

    pairs = []
    for checkpoint, step in bounds.checkpoint_order(frame):
        rows = bounds.select_checkpoint(frame, checkpoint, step)
        sha = next((s for s in rows["checkpoint_sha256"] if isinstance(s, str) and s), "")
        d = rows["d"].dropna()
        text = f"d = {int(d.iloc[0])}" if len(d) else "d unknown"
        if sha:
            text += f", sha256 {sha[:16]}…"
        pairs.append((tables.checkpoint_label(checkpoint, step), text))
    versions = sorted({str(v) for v in frame["version"] if isinstance(v, str) and v})
    stamps = sorted(str(t) for t in frame["timestamp"] if isinstance(t, str) and t)
    pairs.append(
        (
            "records",
            f"{len(frame)} from {frame['source'].nunique() if 'source' in frame else 1} source(s)",
        )
    )
    pairs.append(("measured with smoothprobe", ", ".join(versions) or "unknown"))
    if stamps:
        pairs.append(("measured", f"{stamps[0]} … {stamps[-1]}"))
    pairs.append(
        (
            "report",
            f"smoothprobe {__version__}, "
            f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
        )
    )
    return pairs


# ------------------------------------------------------------------------------- Markdown/HTML


def _markdown(title, paragraph, cards, figures, sections, skipped, meta) -> str:
    lines = [f"# {title}", "", paragraph, ""]
    if cards:
        card_table = pd.DataFrame(cards).rename(
            columns={"what": "Key number", "value": "Value", "bracket": "Bracket", "ends": "Ends"}
        )
        lines += [tables.to_markdown(card_table)]
    main, rest = sections[:1], sections[1:]
    for heading, intro, table in main:
        lines += [f"## {heading}", "", intro, "", tables.to_markdown(table)]
    for spec, _ in figures:
        lines += [f"## {spec.heading}", "", f"![{spec.heading}]({spec.name})", "", spec.caption, ""]
    for heading, intro, table in rest:
        lines += [f"## {heading}", "", intro, "", tables.to_markdown(table)]
    lines += ["## How to read the numbers", "", BOUND_KINDS_NOTE, ""]
    if skipped:
        lines += ["## Not in this report", ""]
        lines += [f"- **{name}**: {why}" for name, why in skipped.items()]
        lines.append("")
    lines += ["## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in meta]
    lines += [
        "",
        "Tables as CSV beside this file: constants.csv, rho.csv, rotation.csv, "
        "noise.csv, measurements.csv; headline numbers: headline.json.",
        "",
    ]
    return "\n".join(lines)


def _inline_html(markdown_text: str) -> str:
    """Escapes text and turns **bold** and `code` into HTML."""
    out = []
    for i, part in enumerate(markdown_text.split("`")):
        text = html.escape(part)
        if i % 2:  # inside a code span: no emphasis
            out.append(f"<code>{text}</code>")
            continue
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
        out.append(re.sub(r"(?<![\w*])\*(\S.*?\S|\S)\*(?![\w*])", r"<em>\1</em>", text))
    return "".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;background:#f6f7f9;color:#1d2330;line-height:1.5}
main{max-width:1180px;margin:0 auto;padding:28px 32px 60px;background:#fff;
box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.7em;margin:.2em 0 .6em}
h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid #e3e6eb}
.answer{font-size:1.06em;background:#eef4fb;border-left:5px solid #1f5fa8;padding:14px 18px;
border-radius:4px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:16px 0 4px}
.card{flex:1 1 200px;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px;background:#fff}
.card .big{font-size:1.9em;font-weight:600;color:#1f5fa8;line-height:1.2}
.card .what{font-size:.92em;margin-top:2px}
.card .br{font-size:.8em;color:#5a6270;margin-top:4px}
figure{margin:12px 0}
figure img{max-width:100%;height:auto;border:1px solid #e3e6eb;border-radius:4px}
figcaption{color:#4a5261;font-size:.92em;margin-top:4px}
.scroll{overflow-x:auto}
table.tbl{border-collapse:collapse;font-size:.82em;margin:8px 0}
table.tbl th,table.tbl td{border:1px solid #dde1e7;padding:3px 8px;text-align:left;
white-space:nowrap}
table.tbl th{background:#f0f2f5}
table.tbl tr:nth-child(even) td{background:#fafbfc}
.note{color:#3b4250;font-size:.95em}
code{background:#f0f2f5;padding:0 3px;border-radius:3px}
details summary{cursor:pointer;color:#1f5fa8}
"""


def _html(title, paragraph, cards, figures, sections, skipped, meta) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="answer">{_inline_html(paragraph)}</p>',
    ]
    if cards:
        out.append('<div class="cards">')
        for c in cards:
            out.append(
                f'<div class="card"><div class="big">{html.escape(c["value"])}</div>'
                f'<div class="what">{html.escape(c["what"])}</div>'
                f'<div class="br">bracket {html.escape(c["bracket"])} · {html.escape(c["ends"])}'
                "</div></div>"
            )
        out.append("</div>")

    def table_block(heading: str, intro: str, table: pd.DataFrame, *, folded: bool) -> list[str]:
        body = f'<div class="scroll">{tables.to_html(table)}</div>'
        if folded:
            body = f"<details><summary>show {len(table)} rows</summary>{body}</details>"
        return [
            f"<h2>{html.escape(heading)}</h2>",
            f"<p class='note'>{_inline_html(intro)}</p>",
            body,
        ]

    main, rest = sections[:1], sections[1:]
    for heading, intro, table in main:
        out += table_block(heading, intro, table, folded=False)
    for spec, png in figures:
        data = base64.b64encode(png).decode("ascii")
        out += [
            f"<h2>{html.escape(spec.heading)}</h2>",
            f'<figure><img alt="{html.escape(spec.heading)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{_inline_html(spec.caption)}</figcaption></figure>",
        ]
    for heading, intro, table in rest:
        out += table_block(heading, intro, table, folded=len(table) > 12)
    out += [
        "<h2>How to read the numbers</h2>",
        f"<p class='note'>{_inline_html(BOUND_KINDS_NOTE)}</p>",
    ]
    if skipped:
        out += ["<h2>Not in this report</h2>", "<ul>"]
        out += [
            f"<li><strong>{html.escape(k)}</strong>: {html.escape(v)}</li>"
            for k, v in skipped.items()
        ]
        out.append("</ul>")
    out += ["<h2>Provenance</h2>", "<ul>"]
    out += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in meta]
    out += ["</ul>", "</main></body></html>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------- writing


def write_report(
    records: RecordsLike,
    out_dir: str | os.PathLike,
    *,
    title: str = "smoothprobe report",
    checkpoint: str | None = None,
    step: float | None = None,
) -> Path:
    """Writes ``index.html``, ``report.md``, the PNGs, CSV tables and ``headline.json``.

    The directory is replaced as a whole (temporary sibling + rename). An existing ``out_dir``
    is replaced only when it is empty or holds a previous report.

    Args:
        records: records DataFrame or JSONL path(s).
        out_dir: report directory, e.g. ``reports/NAME``.
        title: report title.
        checkpoint: headline checkpoint (the latest when None).
        step: its step.

    Returns:
        The report directory.

    Raises:
        SmoothprobeError: no records, or ``out_dir`` is a file or a directory that is not a
            report.
    """
    out = Path(out_dir)
    _check_replaceable(out)
    report = build_report(records, title=title, checkpoint=checkpoint, step=step)
    _replace_dir(out, report.files)
    return out


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SmoothprobeError(f"report path {out} is a file; pass a directory name")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if entries and not entries & set(_REPORT_MARKERS):
            raise SmoothprobeError(
                f"{out} exists and is not a smoothprobe report; choose a new --out directory"
            )


def _replace_dir(out: Path, files: dict[str, bytes]) -> None:
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.tmp-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------- compare


def compare_table(
    frame_a: RecordsLike, frame_b: RecordsLike, *, labels: Sequence[str] = ("A", "B")
) -> str:
    """Side-by-side constants of two record sets (their latest checkpoints), for the terminal.

    Args:
        frame_a: records (DataFrame or JSONL path(s)) of the first run.
        frame_b: records of the second run.
        labels: names for the two sides.

    Returns:
        Plain text: one line naming each side's checkpoint, then an aligned table with both
        values, ρ̂ and the ratio B/A with its labelled bracket.

    Raises:
        SmoothprobeError: when either side has no records.
    """
    frames = [bounds.normalize_records(as_frame(f)) for f in (frame_a, frame_b)]
    lines = []
    for name, frame in zip(labels, frames, strict=True):
        if frame.empty:
            raise SmoothprobeError(f"{name} has no records; pass JSONL files written by measure")
        checkpoint, step = bounds.checkpoint_order(frame)[-1]
        lines.append(f"{name}: {tables.checkpoint_label(checkpoint, step)}")
    table = tables.compare_frame(frames[0], frames[1], labels=labels)
    return "\n".join(lines) + "\n\n" + tables.to_text(table, max_width=80)
