"""Records: an Estimate plus where it came from, stored as JSON lines and loaded as a DataFrame."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from smoothprobe.atomic import atomic_write_text
from smoothprobe.estimate import Estimate

_NUM = {"numeric": True}  # read as floats by the comparison (NaN when absent)
ESTIMATE_FIELDS = (
    "quantity",
    "value",
    "bound",
    "stderr",
    "ci_low",
    "ci_high",
    "confidence",
    "failure_prob",
    "hvps",
    "gradients",
    "seconds",
    "seed",
    "method",
    "geometry",
    "settings",
    "extra",
)


@dataclass(frozen=True)
class Record:
    """One line of a records file: an Estimate's fields plus the run's provenance.

    The field order is the JSONL column order (``RECORD_COLUMNS``); ``make_record`` builds one,
    ``Record.from_dict`` reads one back (old files: missing fields take their defaults, unknown
    keys are ignored). Numeric fields are the ones the comparison reads as
    floats (``NUMERIC_COLUMNS``).

    Attributes:
        quantity: name from ``smoothprobe.quantities.Quantity`` (a plain string in the file).
        value: the number (None when it was not finite).
        bound: ``exact``, ``lower``, ``upper``, ``prob_upper`` or ``estimate`` (``Bound``).
        stderr, ci_low, ci_high, confidence: the statistical error bar, when there is one.
        failure_prob: for ``prob_upper``: the probability that ``value`` is below the truth.
        hvps, gradients, seconds: cost.
        seed, method, geometry, settings, extra: how it was measured (see ``Estimate``).
        basis, partition, d: where it was measured.
        checkpoint, checkpoint_sha256, step, dtype, num_examples, batch_size: what was measured.
        version, timestamp: smoothprobe version and UTC time of the measurement.
    """

    quantity: str
    value: float | None = field(metadata=_NUM)
    bound: str = "estimate"
    stderr: float | None = field(default=None, metadata=_NUM)
    ci_low: float | None = field(default=None, metadata=_NUM)
    ci_high: float | None = field(default=None, metadata=_NUM)
    confidence: float | None = field(default=None, metadata=_NUM)
    failure_prob: float | None = field(default=None, metadata=_NUM)
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    method: str = ""
    geometry: str = ""
    basis: str = "identity"
    partition: str = ""
    d: int | None = field(default=None, metadata=_NUM)
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    step: int | None = field(default=None, metadata=_NUM)
    dtype: str = ""
    num_examples: int | None = None
    batch_size: int | None = field(default=None, metadata=_NUM)
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    timestamp: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict written as one JSONL line (NaN/Inf become None)."""
        return _clean({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Reads a record dict (from any smoothprobe version); unknown keys are ignored."""
        known = {k: data[k] for k in RECORD_COLUMNS if k in data and data[k] is not None}
        return cls(**known) if "value" in known else cls(value=None, **known)


RECORD_COLUMNS = tuple(f.name for f in fields(Record))
NUMERIC_COLUMNS = tuple(f.name for f in fields(Record) if f.metadata.get("numeric"))


@dataclass(frozen=True)
class RunContext:
    """What every record of one measurement run shares.

    Attributes:
        checkpoint: path (or name of a built-in example) that was measured.
        checkpoint_sha256: content hash of the checkpoint file (empty for in-memory models).
        step: training step (``iter_num``) when the checkpoint states it.
        d: number of parameters measured.
        dtype: compute dtype.
        basis: basis name, e.g. ``"identity"`` or ``"hadamard:seed=0"``.
        partition: partition name for blockwise records (``"singleton"`` for ℓ∞, ``"one"`` for ℓ2).
        num_examples: size of the evaluation sample (examples or tokens).
        batch_size: examples per batch.
        extra: more JSON-ready provenance (data path, spec, ...).
    """

    checkpoint: str
    d: int
    checkpoint_sha256: str = ""
    step: int | None = None
    dtype: str = ""
    basis: str = "identity"
    partition: str = ""
    num_examples: int | None = None
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Returns the hex SHA-256 of a file, or of every file in a directory (sorted by name)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _clean(value: Any, *, keep_nonfinite: bool = False) -> Any:
    """Makes a value JSON-safe: tuples become lists, tensors floats, and NaN/Inf floats None
    (kept with ``keep_nonfinite``, for Python's own JSON round trip)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not keep_nonfinite:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v, keep_nonfinite=keep_nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, keep_nonfinite=keep_nonfinite) for v in value]
    return value


def make_record(
    estimate: Estimate, context: RunContext, *, partition: str | None = None
) -> dict[str, Any]:
    """Combines an estimate with its run context into one flat, JSON-ready record.

    Args:
        estimate: the estimate.
        context: shared provenance of the run.
        partition: overrides ``context.partition`` (e.g. per blockwise estimate).

    Returns:
        A dict with the keys of ``RECORD_COLUMNS``.
    """
    from smoothprobe._version import __version__

    est = estimate.to_dict()
    part = partition or estimate.settings.get("partition") or context.partition
    if not part:
        part = {"l2": "one", "linf": "singleton"}.get(estimate.geometry, "")
    extra = {**context.extra, **est["extra"]} if context.extra else est["extra"]
    record = Record(
        **{k: est[k] for k in ESTIMATE_FIELDS if k in est and k != "extra"},
        extra=extra,
        basis=context.basis,
        partition=part,
        d=context.d,
        checkpoint=context.checkpoint,
        checkpoint_sha256=context.checkpoint_sha256,
        step=context.step,
        dtype=context.dtype,
        num_examples=context.num_examples,
        batch_size=context.batch_size,
        version=__version__,
        timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return record.to_dict()


def check_writable(path: str | os.PathLike) -> None:
    """Checks, before any work, that a file can be written where ``atomic_write_text`` will.

    Creates and removes a temporary file in the file's directory (or its nearest existing
    ancestor, when the directory does not exist yet).

    Raises:
        SmoothprobeError: the path is a directory, lies under a file, or cannot be written.
    """
    from smoothprobe.errors import SmoothprobeError, quoted

    path = Path(path)
    if path.is_dir():
        raise SmoothprobeError(f"{path} is a directory; give a file name, e.g. {path / 'm.jsonl'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SmoothprobeError(f"cannot write {path}: {parent} is a file, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".check")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise SmoothprobeError(
            f"cannot write {path} ({quoted(exc)}); choose a writable location"
        ) from None


def save_copy(records: Sequence[dict[str, Any]], intended: str | os.PathLike) -> Path | None:
    """Writes records to a new file in the system's temporary directory, when ``intended``
    could not be written; returns its path (None when that fails too)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f"smoothprobe-{Path(intended).stem}-", suffix=".jsonl")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(records_to_jsonl(records))
    except OSError:
        return None
    return Path(name)


def records_to_jsonl(records: Iterable[dict[str, Any]]) -> str:
    """Serializes records as JSON lines."""
    return "".join(json.dumps(r, sort_keys=False) + "\n" for r in records)


def write_records(
    path: str | os.PathLike, records: Sequence[dict[str, Any]], *, append: bool = False
) -> None:
    """Writes records as JSON lines atomically (appending rewrites old + new in one rename).

    Args:
        path: output file.
        records: records from ``make_record``.
        append: keep the records already in the file.
    """
    old = Path(path).read_text(encoding="utf-8") if append and Path(path).exists() else ""
    atomic_write_text(path, old + records_to_jsonl(records))


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a JSON-lines records file.

    Raises:
        SmoothprobeError: when the file is missing, a line is not JSON, or not a record.
    """
    from smoothprobe.errors import SmoothprobeError

    path = Path(path)
    if not path.exists():
        raise SmoothprobeError(f"records file not found: {path} (give a .jsonl written by --out)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SmoothprobeError(
                    f"{path}:{i} is not a JSON record ({exc.msg}); "
                    "pass files written by `smoothprobe measure --out`"
                ) from None
            if not isinstance(record, dict) or not {"quantity", "value"} <= set(record):
                raise SmoothprobeError(
                    f"{path}:{i} is JSON but not a smoothprobe record (no quantity/value); "
                    "pass files written by `smoothprobe measure --out`"
                )
            out.append(record)
    return out


def load_records(paths: str | os.PathLike | Sequence[str | os.PathLike]):
    """Loads one or more JSON-lines records files into a pandas DataFrame.

    Args:
        paths: a path or a list of paths.

    Returns:
        DataFrame with the columns of ``RECORD_COLUMNS`` (missing ones filled with None) plus
        ``source`` (the file each record came from).
    """
    import pandas as pd

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows = []
    for p in paths:
        for r in read_records(p):
            rows.append({**r, "source": str(p)})
    frame = pd.DataFrame(rows)
    for col in RECORD_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    return frame
