"""Records → a normalized frame: defaults filled in, checkpoints/bases/partitions ordered, selected.

The first step of the comparison's data flow (records → frame → intervals → constants and ρ →
headline → formatting → renderers). Pure functions over a records DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from smoothprobe.compare.intervals import to_float
from smoothprobe.records import NUMERIC_COLUMNS, RECORD_COLUMNS

PARTITION_ORDER = ("singleton", "row", "head", "tensor", "layer", "one")
_NORMALIZED = "smoothprobe_normalized"
_RECORD_FIELDS = [c for c in RECORD_COLUMNS if c not in ("settings", "timestamp")]


def normalize_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns a copy with every record column present and defaults filled in.

    Basis defaults to ``"identity"``, partition to ``"one"`` for ℓ2 and ``"singleton"`` for ℓ∞
    records, ``settings``/``extra`` to ``{}``; numeric columns become floats (NaN when absent).

    Args:
        frame: records as loaded by ``load_records`` (or built from ``make_record`` dicts).

    Returns:
        The normalized DataFrame (index reset).
    """
    if frame.attrs.get(_NORMALIZED):
        return frame
    out = frame.copy().reset_index(drop=True)
    for col in RECORD_COLUMNS:
        if col not in out.columns:
            out[col] = None
    for col in NUMERIC_COLUMNS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["quantity"] = out["quantity"].fillna("").astype(str)
    out["geometry"] = out["geometry"].fillna("").astype(str)
    out["checkpoint"] = [c if isinstance(c, str) and c else "(unnamed)" for c in out["checkpoint"]]
    out["basis"] = [b if isinstance(b, str) and b else "identity" for b in out["basis"]]
    out["bound"] = [b if isinstance(b, str) and b else "estimate" for b in out["bound"]]
    for col in ("settings", "extra"):
        out[col] = [x if isinstance(x, dict) else {} for x in out[col]]
    out["partition"] = [
        p if isinstance(p, str) and p else {"l2": "one", "linf": "singleton"}.get(g, "")
        for p, g in zip(out["partition"], out["geometry"], strict=True)
    ]
    out.attrs[_NORMALIZED] = True  # selections keep it (pandas propagates attrs)
    return out


def checkpoint_order(frame: pd.DataFrame) -> list[tuple[str, float]]:
    """Returns the (checkpoint, step) pairs in training order; the last one is the latest.

    Pairs with a step come after those without, sorted by step; ties keep their first appearance.
    """
    frame = normalize_records(frame)
    seen: dict[tuple[str, float], int] = {}
    for i, (c, s) in enumerate(zip(frame["checkpoint"], frame["step"], strict=True)):
        key = (c, step_key(s))
        seen.setdefault(key, i)
    return sorted(seen, key=lambda k: (not math.isnan(k[1]), nan_to(k[1], -math.inf), seen[k]))


def basis_order(bases: Sequence[str]) -> list[str]:
    """Orders basis names: ``identity`` first, the rest by first appearance."""
    unique = list(dict.fromkeys(bases))
    return sorted(unique, key=lambda b: b != "identity")


def partition_order(partitions: Sequence[str]) -> list[str]:
    """Orders partitions from finest to coarsest (singleton … layer, custom ones, then one)."""
    unique = list(dict.fromkeys(p for p in partitions if p))

    def key(p: str) -> tuple[int, str]:
        if p in PARTITION_ORDER:
            rank = PARTITION_ORDER.index(p)
            return (rank if p != "one" else len(PARTITION_ORDER) + 1, p)
        return (len(PARTITION_ORDER), p)

    return sorted(unique, key=key)


def select_checkpoint(
    frame: pd.DataFrame, checkpoint: str | None = None, step: float | None = None
) -> pd.DataFrame:
    """Returns the normalized records of one checkpoint (the latest when none is named).

    Args:
        frame: records.
        checkpoint: checkpoint name; ``None`` picks the latest (see ``checkpoint_order``).
        step: the step, when one checkpoint name was measured at several steps (``None``: the
            latest of them; NaN: the records without a step).

    Returns:
        The matching records (empty when there are none).
    """
    frame = normalize_records(frame)
    if frame.empty:
        return frame
    if checkpoint is None:
        checkpoint, step = checkpoint_order(frame)[-1]
    elif step is None:  # the latest step measured under that name
        steps = [s for c, s in checkpoint_order(frame) if c == checkpoint]
        step = steps[-1] if steps else None
    mask = frame["checkpoint"] == checkpoint
    if step is not None and not (isinstance(step, float) and math.isnan(step)):
        mask &= frame["step"] == float(step)
    elif step is not None:
        mask &= frame["step"].isna()
    return frame[mask]


def runs(frame: pd.DataFrame) -> Iterator[tuple[str, float, pd.DataFrame]]:
    """Yields (checkpoint, step, records) per checkpoint in training order."""
    for checkpoint, step in checkpoint_order(frame):
        yield checkpoint, step, select_checkpoint(frame, checkpoint, step)


def step_key(step: Any) -> float:
    """Returns a step as a float (NaN when absent), the form tables compare on."""
    try:
        value = float(step)
    except (TypeError, ValueError):
        return math.nan
    return math.nan if math.isnan(value) else value  # one NaN object: usable as a dict key


def nan_to(x: float, fill: float) -> float:
    return fill if math.isnan(x) else x


def step_out(step: float) -> int | None:
    return None if math.isnan(step) else int(step)


def as_dicts(records: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with a value as plain dicts (only the columns the comparison reads)."""
    if isinstance(records, pd.DataFrame):
        records = normalize_records(records)
        rows = records[records["value"].notna()]
        return rows[_RECORD_FIELDS].to_dict("records")
    return [r for r in records if not math.isnan(to_float(r.get("value")))]


def dimension(records: pd.DataFrame | list[dict[str, Any]]) -> float:
    """The first parameter count d stated by the records (NaN when none is)."""
    values = records["d"] if isinstance(records, pd.DataFrame) else [r.get("d") for r in records]
    return next((float(x) for x in values if not math.isnan(to_float(x))), math.nan)


def same_step(steps: pd.Series, step: Any) -> pd.Series:
    """Mask of the rows whose step equals ``step`` (NaN matches NaN)."""
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return steps.isna()
    return steps == step


def row_mask(table: pd.DataFrame, row: Mapping[str, Any], keys: Sequence[str]) -> pd.Series:
    """Mask of the rows of ``table`` that agree with ``row`` on ``keys``."""
    mask = pd.Series(True, index=table.index)
    for k in keys:
        mask &= same_step(table[k], row[k]) if k == "step" else table[k] == row[k]
    return mask
