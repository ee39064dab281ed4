"""Reports: records → ``index.html`` (self-contained) + ``report.md`` with PNGs, and ``compare``.

``write_report`` builds everything in memory first (figures rendered to PNG bytes, tables to
text), writes it into a temporary sibling directory and renames that into place, so a failure at
any point leaves either the previous report or none — never a half-written one.

The report opens with one paragraph that answers the user's question for the latest checkpoint
(``headline_text``); its numbers come from ``bounds.headline_numbers`` (also written to
``headline.json``), so a test can check that the report states what the records say.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from smoothprobe import compare as bounds
from smoothprobe.atomic import atomic_replace_dir
from smoothprobe.compare import headline_numbers
from smoothprobe.compare.optimizers import precond_table, spectral_table
from smoothprobe.errors import SmoothprobeError
from smoothprobe.records import load_records
from smoothprobe.report import plots, plots_optimizers, tables, tables_optimizers
from smoothprobe.report.documents import (  # noqa: F401  (BOUND_KINDS_NOTE re-exported)
    BOUND_KINDS_NOTE,
    html_document,
    markdown_document,
)
from smoothprobe.report.headline_text import headline_text, key_numbers

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
        "certified, statistical or probabilistic) and its point value (dot: the surrogate "
        "‖H‖₁,₁ or U(Φ)), in the original basis and each rotated one. The dashed line is d·L₂, "
        "SGD's constant on the same ℓ1 yardstick.",
        plots.plot_constants,
    ),
    FigureSpec(
        "rho.png",
        "ρ(Φ) per partition",
        "ρ(Φ) = H(Φ)/(d·L₂) from the finest partition (singletons: Adam) to the coarsest "
        "(one block: AdaSGD). Below the dashed line at 1 the geometry beats SGD's; per "
        "docs/theory.md ρ(Φ) is also the predicted T_Φ/T_SGD (structure only for the Adam family).",
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
        "spectral.png",
        "Spectral (Muon) geometry",
        "Left: H_op, the smoothness constant in Muon's norm max_l ‖X_l‖₂, between its certified "
        "lower bound (polar ascent) and the best upper end (block norms or R·L₂; the table says "
        "which and how it is known), for the matrices alone and with the rest in ℓ∞. Right: the "
        "predicted iteration ratios T_Muon/T_SGD = ρ_op and T_Muon/T_Adam on Muon's dual-norm "
        "yardstick; below the dashed line Muon is predicted faster.",
        plots_optimizers.plot_spectral_bracket,
    ),
    FigureSpec(
        "precond.png",
        "Preconditioned sharpness",
        "Left: λ_max(P⁻¹H), the sharpness Adam's step feels (P = diag(√v̂ + ε) from each "
        "checkpoint's optimizer state), against the threshold (2 + 2β₁)/((1 − β₁)η) where Cohen "
        "et al. (2022) find it settles. Right: plain λ_max(H) against gradient descent's 2/η.",
        plots_optimizers.plot_precond_sharpness,
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
        data = frame if spec.name in ("steps.png", "precond.png") else head
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
    markdown = markdown_document(title, paragraph, cards, figures, sections, skipped, meta)
    page = html_document(title, paragraph, cards, figures, sections, skipped, meta)
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
            "Per basis × geometry/partition. The bracket is what the records prove; the point "
            "is the named surrogate, capped at d·L₂ and inside the bracket; the ρ bracket "
            "bounds the true ρ(Φ); T_Φ/T_SGD is the predicted iteration ratio "
            "(docs/theory.md).",
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
        (
            "Spectral (Muon) geometry",
            "H_op bracket (certified lower end / the upper end's kind and source), R·L₂ and "
            "the predicted iteration ratios on Muon's dual-norm yardstick (README: Today's "
            "optimizers).",
            tables_optimizers.spectral_display(head, checkpoint_column=False),
        ),
        (
            "Preconditioned sharpness",
            "λ_max(P⁻¹H) (Ritz value, + its residual) against Adam's edge-of-stability "
            "threshold, and λ_max(H) against 2/η, at every checkpoint with optimizer state.",
            tables_optimizers.precond_display(frame),
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
        "spectral.csv": spectral_table(frame),
        "precond.csv": precond_table(frame),
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
    atomic_replace_dir(out, report.files)
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
    from smoothprobe.report.comparison import compare_runs

    return compare_runs(as_frame(frame_a), as_frame(frame_b), labels=labels).render("table")
