"""Two runs side by side (``smoothprobe compare``): the table and its renderings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from smoothprobe import compare as bounds
from smoothprobe.errors import SmoothprobeError
from smoothprobe.report import tables

FORMATS = ("table", "markdown", "csv", "json")


@dataclass(frozen=True)
class Comparison:
    """The latest checkpoint of each side and the side-by-side table (``compare_frame``).

    Attributes:
        sides: (label, checkpoint, step) of each side.
        table: Basis, Constant, Optimizer, "<A> value", "<A> ρ", "<B> value", "<B> ρ", "B/A".
    """

    sides: tuple[tuple[str, str, Any], ...]
    table: pd.DataFrame

    def render(self, fmt: str = "table") -> str:
        """The comparison as ``table`` (terminal text), ``markdown``, ``csv`` (the table
        alone: each side's label is in its column names) or ``json`` (sides and rows)."""
        if fmt == "csv":
            return tables.to_csv(self.table)
        if fmt == "json":
            sides = [{"label": n, "checkpoint": c, "step": s} for n, c, s in self.sides]
            rows = self.table.to_dict(orient="records")
            return json.dumps({"sides": sides, "rows": rows}, indent=2, ensure_ascii=False) + "\n"
        named = [f"{n}: {tables.checkpoint_label(c, s)}" for n, c, s in self.sides]
        if fmt == "markdown":
            return (
                "\n".join(f"- {line}" for line in named) + "\n\n" + tables.to_markdown(self.table)
            )
        if fmt == "table":
            return "\n".join(named) + "\n\n" + tables.to_text(self.table, max_width=80)
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def compare_runs(
    frame_a: pd.DataFrame, frame_b: pd.DataFrame, *, labels: Sequence[str] = ("A", "B")
) -> Comparison:
    """Side-by-side constants of two record sets (their latest checkpoints).

    Raises:
        SmoothprobeError: when either side has no records.
    """
    frames = [bounds.normalize_records(f) for f in (frame_a, frame_b)]
    sides = []
    for name, frame in zip(labels, frames, strict=True):
        if frame.empty:
            raise SmoothprobeError(f"{name} has no records; pass JSONL files written by measure")
        checkpoint, step = bounds.checkpoint_order(frame)[-1]
        sides.append((name, checkpoint, step))
    table = tables.compare_frame(frames[0], frames[1], labels=labels)
    return Comparison(tuple(sides), table)
