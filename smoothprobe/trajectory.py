"""Measuring a series of checkpoints of one training run: ordered, resumable, one table.

``run_trajectory`` orders the checkpoints (by the ``iter_num`` stored in nanoGPT-style
checkpoints, else by natural sort of the name), calls an injected ``measure_one(path)`` for each
(any per-checkpoint estimates, as records), and, with an injected ``gradient_of(path)``, adds for
every checkpoint its gradient norms and for every consecutive pair the step-wise ratio

    ρ_t = ‖∇L(θ_{t+1}) − ∇L(θ_t)‖_* / ‖θ_{t+1} − θ_t‖

in each requested geometry (``step_ratio``; MATH.md §4), computed on the fixed evaluation sample
``gradient_of`` uses. By the mean value theorem ρ_t ≤ sup over the segment [θ_t, θ_{t+1}] of
‖∇²L‖_{‖·‖→‖·‖_*}: a lower bound (``Bound.LOWER``) on the smoothness constant over any region
containing the step, i.e. on what the theory's trajectory-wide constant must be at least.

**Resuming.** Records are appended to a JSON-lines file once per checkpoint, atomically (temp
file + rename), so an interruption loses at most the checkpoint in progress. Every record carries
``settings_sha256`` (a hash of the caller's settings, the geometries, the basis and this module's
schema version) and ``previous_sha256`` (the content hash of the preceding checkpoint, which the
step ratio depends on) next to ``checkpoint_sha256`` (``records.file_sha256``). Re-running skips
a checkpoint when records with the same three keys exist; different settings measure again (the
old records stay in the file, the returned table holds the current settings only); a checkpoint
whose predecessor changed (one inserted before it) is measured again and its stale records are
dropped. A checkpoint for which nothing is recorded (no gradient_of and ``measure_one`` returned
no records) is measured again on every run. One writer per output file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import torch

from smoothprobe.atomic import atomic_write_text
from smoothprobe.errors import CheckpointError, SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.geometries import Geometry, resolve_geometry
from smoothprobe.layout import ParameterLayout
from smoothprobe.records import RunContext, file_sha256, make_record

SCHEMA_VERSION = 1
ORDERS = ("auto", "iter_num", "name")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")

MeasureOne = Callable[[Path], list[dict[str, Any]]]
# θ, ∇L(θ), layout, and optionally the loss's fixed state (buffers such as BatchNorm running
# statistics, frozen parameters: name → tensor), which must agree for a step ratio to be a bound
GradientOf = Callable[[Path], tuple]


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint of the series.

    Attributes:
        path: file or directory.
        step: ``iter_num`` when read from the checkpoint, else None.
    """

    path: Path
    step: int | None


def natural_key(text: str) -> list:
    """Sort key that orders ``ckpt_9`` before ``ckpt_10``."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", text)
        if part
    ]


def read_iter_num(path: str | os.PathLike) -> int | None:
    """The ``iter_num`` of a torch checkpoint file, read lazily (``mmap``, ``weights_only``).

    Returns:
        The step, or None for directories, non-torch files, files without an integer
        ``iter_num``, or files ``weights_only`` refuses.
    """
    path = Path(path)
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - anything unreadable simply has no step
        return None
    step = obj.get("iter_num") if isinstance(obj, dict) else None
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = int(step)
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _is_checkpoint_dir(path: Path) -> bool:
    """A directory checkpoint (e.g. Hugging Face ``checkpoint-500/``) holds config.json or
    weight files directly."""
    return (path / "config.json").exists() or any(
        p.suffix in CHECKPOINT_SUFFIXES for p in path.iterdir() if p.is_file()
    )


def _expand(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return [
                p
                for p in path.iterdir()
                if not p.name.startswith(".")
                and (_is_checkpoint_dir(p) if p.is_dir() else p.suffix in CHECKPOINT_SUFFIXES)
            ]
        matches = [Path(p) for p in glob(str(source))]
        if not matches and path.exists():
            matches = [path]
        return matches
    return [Path(p) for p in source]


def list_checkpoints(
    source: str | os.PathLike | Sequence[str | os.PathLike], *, order: str = "auto"
) -> list[CheckpointEntry]:
    """Finds and orders the checkpoints of a run.

    Args:
        source: a directory (its checkpoint files ``*.pt|*.pth|*.ckpt|*.bin|*.safetensors`` and
            subdirectories), a glob pattern, or a list of paths.
        order: ``"iter_num"`` (every checkpoint must state it), ``"name"`` (natural sort) or
            ``"auto"`` (``iter_num`` when every checkpoint states one, else by name). Ties in
            ``iter_num`` are broken by name.

    Returns:
        The ordered entries.

    Raises:
        SmoothprobeError: unknown order, fewer than one checkpoint, missing ``iter_num``.
    """
    if order not in ORDERS:
        raise SmoothprobeError(f"unknown checkpoint order {order!r}: use {', '.join(ORDERS)}")
    paths = _expand(source)
    if not paths:
        raise CheckpointError(
            f"no checkpoints found at {source}: give a directory of *.pt files, a glob such as "
            "'out/ckpt_*.pt', or a list of paths"
        )
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise CheckpointError(f"checkpoint not found: {missing[0]}")
    by_name = sorted(paths, key=lambda p: natural_key(p.name))
    if order == "name":
        return [CheckpointEntry(p, read_iter_num(p)) for p in by_name]
    entries = [CheckpointEntry(p, read_iter_num(p)) for p in by_name]
    unknown = [e.path.name for e in entries if e.step is None]
    if unknown:
        if order == "iter_num":
            raise CheckpointError(
                f"{unknown[0]} has no integer iter_num; order by name instead (order='name')",
                option="order",
            )
        return entries
    return sorted(entries, key=lambda e: e.step)  # stable: ties keep the name order


def settings_hash(settings: dict[str, Any]) -> str:
    """SHA-256 of a settings dict as canonical JSON (sorted keys; non-JSON values by repr)."""
    text = json.dumps(settings, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def step_ratio_estimates(
    theta_prev: torch.Tensor,
    grad_prev: torch.Tensor,
    theta_next: torch.Tensor,
    grad_next: torch.Tensor,
    geometries: Sequence[Geometry],
    *,
    basis=None,
    changed_state: Sequence[str] = (),
) -> list[Estimate]:
    """‖∇L(θ_{t+1}) − ∇L(θ_t)‖_* / ‖θ_{t+1} − θ_t‖ in each geometry (``step_ratio``).

    Args:
        theta_prev, grad_prev: θ_t and ∇L(θ_t), (d,).
        theta_next, grad_next: θ_{t+1} and ∇L(θ_{t+1}), (d,).
        geometries: the norm pairs.
        basis: optional change of basis (differences mapped by Rᵀ).
        changed_state: names of buffers or frozen tensors (e.g. BatchNorm running statistics)
            that differ between the two checkpoints (``changed_state``).

    Returns:
        One estimate per geometry, with the step and gradient-change norms in ``extra``; NaN
        when the step is zero (identical parameters). It is a ``Bound.LOWER`` on the smoothness
        constant over the step when both gradients are of one function; when ``changed_state``
        is not empty they are gradients of two different functions, so the ratio bounds
        nothing: it is a plain ``Bound.ESTIMATE`` and ``extra["different_functions"]`` says why.
    """
    step = (theta_next.to(torch.float64) - theta_prev.to(torch.float64)).cpu()
    change = (grad_next.to(torch.float64) - grad_prev.to(torch.float64)).cpu()
    if basis is not None:
        step, change = basis.from_params(step), basis.from_params(change)
    extra: dict[str, Any] = {}
    if changed_state:
        names = ", ".join(list(changed_state)[:4]) + (" …" if len(changed_state) > 4 else "")
        extra["different_functions"] = (
            f"{len(changed_state)} buffer(s) or frozen tensor(s) differ between the checkpoints "
            f"({names}), e.g. BatchNorm running statistics: the two gradients are of different "
            "functions, so this ratio is not a lower bound on a smoothness constant"
        )
    out = []
    for geo in geometries:
        norm, dual = float(geo.norm(step)), float(geo.dual_norm(change))
        value = dual / norm if norm > 0 else float("nan")
        out.append(
            Estimate(
                "step_ratio",
                value,
                Bound.ESTIMATE if changed_state else Bound.LOWER,
                gradients=2,
                method="trajectory",
                geometry=geo.kind,
                settings={"partition": geo.partition, "basis": getattr(basis, "name", "identity")},
                extra={"step_norm": norm, "gradient_change": dual, **extra},
            )
        )
    return out


def changed_state(
    previous: dict[str, torch.Tensor] | None, current: dict[str, torch.Tensor] | None
) -> list[str]:
    """Names of the fixed tensors (buffers, frozen parameters) that differ between two
    checkpoints; empty when either side is unknown (None)."""
    if previous is None or current is None:
        return []
    names = sorted(set(previous) | set(current))
    return [
        n
        for n in names
        if n not in previous
        or n not in current
        or previous[n].shape != current[n].shape
        or not torch.equal(previous[n].cpu(), current[n].cpu())
    ]


def gradient_norm_estimates(
    grad: torch.Tensor, geometries: Sequence[Geometry], *, basis=None
) -> list[Estimate]:
    """‖∇L(θ)‖_* in each geometry (``grad_norm``, exact on the sample)."""
    g = grad.to(torch.float64).cpu()
    if basis is not None:
        g = basis.from_params(g)
    return [
        Estimate(
            "grad_norm",
            float(geo.dual_norm(g)),
            Bound.EXACT,
            gradients=1,
            method="trajectory",
            geometry=geo.kind,
            settings={"partition": geo.partition, "basis": getattr(basis, "name", "identity")},
        )
        for geo in geometries
    ]


def _line_key(line: str) -> tuple[str, str, str] | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or "settings_sha256" not in rec:
        return None
    return rec.get("checkpoint_sha256", ""), rec["settings_sha256"], rec.get("previous_sha256", "")


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _commit(path: Path, new: list[dict[str, Any]], drop: set[tuple[str, str]]) -> None:
    """Appends records atomically, removing lines of (checkpoint, settings) pairs in ``drop``."""
    kept = [
        line
        for line in _read_lines(path)
        if line.strip() and ((k := _line_key(line)) is None or (k[0], k[1]) not in drop)
    ]
    text = "".join(line + "\n" for line in kept)
    text += "".join(json.dumps(r) + "\n" for r in new)
    atomic_write_text(path, text)


def _stamp(
    record: dict[str, Any], entry: CheckpointEntry, sha: str, settings_sha: str, previous_sha: str
) -> dict[str, Any]:
    out = dict(record)
    out["checkpoint"] = str(entry.path)
    out["checkpoint_sha256"] = sha
    if out.get("step") is None:
        out["step"] = entry.step
    out["settings_sha256"] = settings_sha
    out["previous_sha256"] = previous_sha
    return out


def _check_layouts(a: ParameterLayout, b: ParameterLayout, path: Path) -> None:
    same = [(s.name, s.shape) for s in a.slots] == [(s.name, s.shape) for s in b.slots]
    if not same:
        raise CheckpointError(
            f"{path} has a different parameter layout than the previous checkpoint; a "
            "trajectory needs checkpoints of one architecture"
        )


def _with_state(found: tuple) -> tuple:
    """(θ, ∇L, layout, state): ``gradient_of`` may leave out the fixed state."""
    return (*found, None) if len(found) == 3 else tuple(found)


def run_trajectory(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike,
    measure_one: MeasureOne | None = None,
    gradient_of: GradientOf | None = None,
    settings: dict[str, Any] | None = None,
    geometries: Sequence[Any] = ("l2", "linf"),
    basis=None,
    order: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Measures every checkpoint of a run into one resumable JSON-lines table.

    Args:
        source: directory, glob or list of checkpoints (see ``list_checkpoints``).
        out: JSON-lines file; records are appended once per checkpoint, atomically.
        measure_one: ``measure_one(path) -> list of records`` (e.g. from ``make_record``) with
            the per-checkpoint estimates; checkpoint, hash, step and keys are filled in.
        gradient_of: ``gradient_of(path) -> (θ, ∇L(θ), layout[, fixed state])`` on a fixed
            evaluation sample; enables ``grad_norm`` and ``step_ratio`` records. The optional
            fixed state (buffers and frozen tensors by name, e.g. ``Problem.constants``) lets a
            step between checkpoints whose BatchNorm statistics differ be labelled as such.
        settings: JSON-ready description of everything that determines the measurements
            (data, sample size, seeds, dtype, estimator options): part of the resume key.
        geometries: for ``grad_norm`` and ``step_ratio``: ``"l2"``, ``"linf"``, Partitions, label
            tensors or Geometries.
        basis: optional change of basis for those records.
        order: ``"auto"``, ``"iter_num"`` or ``"name"``.
        progress: show a tqdm bar on stderr.

    Returns:
        The records of these checkpoints (in order) with the current settings and predecessors.

    Raises:
        SmoothprobeError: neither ``measure_one`` nor ``gradient_of``; bad order or geometry.
        CheckpointError: no checkpoints, or checkpoints of different architectures.
    """
    from tqdm import tqdm

    if measure_one is None and gradient_of is None:
        raise SmoothprobeError("give measure_one, gradient_of or both: nothing to measure")
    geos = [resolve_geometry(g) for g in geometries] if gradient_of is not None else []
    entries = list_checkpoints(source, order=order)
    settings_sha = settings_hash(
        {
            "schema": SCHEMA_VERSION,
            "settings": settings or {},
            "step_ratio": gradient_of is not None,
            "measure_one": measure_one is not None,
            "geometries": [g.describe() for g in geos],
            "basis": getattr(basis, "name", "identity"),
        }
    )
    out = Path(out)
    bar = tqdm(entries, desc="trajectory", unit="ckpt", file=sys.stderr, disable=not progress)
    try:
        shas = _measure_all(
            bar,
            out=out,
            measure_one=measure_one,
            gradient_of=gradient_of,
            geos=geos,
            basis=basis,
            settings_sha=settings_sha,
        )
    finally:
        bar.close()
    current = {(sha, prev) for sha, prev in zip(shas, [""] + shas[:-1], strict=True)}
    return [
        r
        for r in trajectory_records(out, settings_sha256=settings_sha, entries=entries)
        if (r.get("checkpoint_sha256"), r.get("previous_sha256")) in current
    ]


def _measure_all(bar, *, out, measure_one, gradient_of, geos, basis, settings_sha) -> list[str]:
    """The loop of ``run_trajectory``: measures what is not yet recorded; returns the hashes."""
    done = {k for line in _read_lines(out) if (k := _line_key(line)) is not None}
    cached: tuple | None = None  # (path, θ, ∇L, layout, fixed state or None)
    previous_sha, previous_entry = "", None
    skipped = 0
    shas: list[str] = []
    for entry in bar:
        sha = file_sha256(entry.path)
        shas.append(sha)
        if (sha, settings_sha, previous_sha) in done:
            skipped += 1
            bar.set_postfix(skipped=skipped)
            previous_sha, previous_entry = sha, entry
            continue
        records: list[dict[str, Any]] = list(measure_one(entry.path)) if measure_one else []
        if gradient_of is not None:
            if previous_entry is not None and (cached is None or cached[0] != previous_entry.path):
                cached = (previous_entry.path, *_with_state(gradient_of(previous_entry.path)))
            theta, grad, layout, state = _with_state(gradient_of(entry.path))
            context = RunContext(
                checkpoint=str(entry.path),
                d=int(theta.numel()),
                checkpoint_sha256=sha,
                step=entry.step,
                dtype=str(grad.dtype).replace("torch.", ""),
                extra={"previous_checkpoint": str(previous_entry.path) if previous_entry else None},
            )
            estimates = gradient_norm_estimates(grad, geos, basis=basis)
            if previous_entry is not None:
                _check_layouts(cached[3], layout, entry.path)
                estimates += step_ratio_estimates(
                    cached[1],
                    cached[2],
                    theta,
                    grad,
                    geos,
                    basis=basis,
                    changed_state=changed_state(cached[4], state),
                )
            records += [make_record(e, context) for e in estimates]
            cached = (entry.path, theta, grad, layout, state)
        stamped = [_stamp(r, entry, sha, settings_sha, previous_sha) for r in records]
        _commit(out, stamped, drop={(sha, settings_sha)})
        done.add((sha, settings_sha, previous_sha))
        previous_sha, previous_entry = sha, entry
    return shas


def trajectory_records(
    out: str | os.PathLike,
    *,
    settings_sha256: str | None = None,
    entries: Sequence[CheckpointEntry] | None = None,
) -> list[dict[str, Any]]:
    """Records of a trajectory file, optionally of one settings hash, in checkpoint order.

    Args:
        out: the JSON-lines file ``run_trajectory`` wrote.
        settings_sha256: keep only records of these settings.
        entries: order by these checkpoints (default: by step, then checkpoint name).

    Returns:
        The records.
    """
    rows = [json.loads(line) for line in _read_lines(Path(out)) if line.strip()]
    rows = [r for r in rows if "settings_sha256" in r]
    if settings_sha256 is not None:
        rows = [r for r in rows if r["settings_sha256"] == settings_sha256]
    if entries is not None:
        rank = {str(e.path): i for i, e in enumerate(entries)}
        return sorted(rows, key=lambda r: rank.get(r["checkpoint"], len(rank)))
    return sorted(
        rows,
        key=lambda r: (
            r.get("step") is None,
            r.get("step") or 0,
            natural_key(Path(r["checkpoint"]).name),
        ),
    )


def column_label(record: dict[str, Any]) -> str:
    """``quantity`` or ``quantity[geometry]`` / ``quantity[block:partition]`` (also spectral)."""
    geometry = record.get("geometry") or ""
    if not geometry:
        return record["quantity"]
    if geometry in ("block", "spectral"):
        return f"{record['quantity']}[{geometry}:{record.get('partition', '')}]"
    return f"{record['quantity']}[{geometry}]"


def trajectory_table(records: Sequence[dict[str, Any]]):
    """One row per checkpoint (in the given order), one column per quantity and geometry.

    Args:
        records: from ``run_trajectory`` or ``trajectory_records``.

    Returns:
        pandas DataFrame indexed by (step, checkpoint) with the values.

    Raises:
        SmoothprobeError: two records of one checkpoint share a column (duplicates).
    """
    import pandas as pd

    rows: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = (r.get("step"), r["checkpoint"])
        row = rows.setdefault(key, {})
        label = column_label(r)
        if label in row:
            raise SmoothprobeError(
                f"duplicate {label} for {r['checkpoint']}: the table mixes runs; filter the "
                "records by settings_sha256"
            )
        row[label] = r["value"]
    index = pd.MultiIndex.from_tuples(list(rows), names=["step", "checkpoint"])
    return pd.DataFrame(list(rows.values()), index=index)
