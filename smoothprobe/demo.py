"""The demo: train a tiny character-level GPT with Adam, measure its geometry, write the report.

``run_demo`` does what ``smoothprobe demo`` runs, with no input but Python's own standard
library:

1. **data** — the standard library's ``.py`` text, encoded with a character vocabulary, split
   90/10 into nanoGPT's ``train.bin`` / ``val.bin`` with ``meta.pkl`` beside them;
2. **training** — a nanoGPT-compatible GPT trained with Adam (seeded batches and initialization,
   one thread: deterministic), saving nanoGPT-style checkpoints ``ckpt_NNNNNN.pt`` (``model``,
   ``optimizer``, ``model_args``, ``iter_num``, ``best_val_loss``, ``config``) at evenly
   spaced steps;
3. **measurement** — each checkpoint loaded with ``load_checkpoint`` (the same path as
   ``smoothprobe measure ckpt.pt --data val.bin``) on a fixed held-out sample, and measured
   with ``run_measurement``: ℓ2 and ℓ∞ at every checkpoint (the over-training plot), and on the
   final one also blockwise H(Φ) for several partitions, in the identity basis and a rotated
   (Hadamard) basis;
4. **report** — the records as ``records.jsonl`` and the report (``index.html``, ``report.md``,
   PNGs, CSVs, ``headline.json``) written by ``smoothprobe.report.render.write_report``.

The work directory (data and checkpoints, a few MB) is kept so that every other command can be
tried on it, and holds a ``.gitignore`` so that it never lands in git; the report directory is
small and meant to be committed.

The pieces live beside this module: ``demo_budget`` (the budgets), ``demo_training`` (data and
training), ``demo_measurement`` (the measurement plan); this module runs them and writes the
outputs, and re-exports their names.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smoothprobe.data import (
    python_version_tag,
)
from smoothprobe.demo_budget import BUDGETS, DemoBudget
from smoothprobe.demo_measurement import describe_settings, log, measure, measurement_plan
from smoothprobe.demo_training import (
    DATASET,
    checkpoint_steps,
    evaluate,
    learning_rate,
    nanogpt_checkpoint,
    prepare_data,
    save_atomic,
    train,
)
from smoothprobe.errors import SmoothprobeError
from smoothprobe.records import write_records

REPORT_MARKERS = ("index.html", "report.md", "headline.json")
RECORDS_NAME = "records.jsonl"

__all__ = [
    "BUDGETS",
    "DATASET",
    "REPORT_MARKERS",
    "RECORDS_NAME",
    "DemoBudget",
    "DemoResult",
    "StageTime",
    "check_report_dir",
    "checkpoint_steps",
    "default_work_dir",
    "describe_settings",
    "describe_times",
    "evaluate",
    "learning_rate",
    "log",
    "measure",
    "measurement_plan",
    "nanogpt_checkpoint",
    "prepare_data",
    "resolve_budget",
    "run_demo",
    "save_atomic",
    "timed",
    "torch_threads",
    "train",
    "write_outputs",
]


@dataclass
class StageTime:
    """Wall-clock and CPU seconds of one stage (CPU: this process, all threads)."""

    wall: float = 0.0
    cpu: float = 0.0


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        report_dir: the report directory.
        records_path: ``records.jsonl`` inside it.
        work_dir: data and checkpoints.
        checkpoints: checkpoint paths in training order.
        headline: ``bounds.headline_numbers`` of the final checkpoint.
        times: stage name → StageTime (``data``, ``training``, ``measuring``, ``report``,
            ``total``).
    """

    report_dir: Path
    records_path: Path
    work_dir: Path
    checkpoints: list[Path]
    headline: dict[str, Any]
    times: dict[str, StageTime] = field(default_factory=dict)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(n)`` and restores the previous count.

    Tiny models gain nothing from intra-op threads, and on a busy machine spinning threads make
    them many times slower; one thread also makes every run bit-for-bit repeatable.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def timed(times: dict[str, StageTime], name: str) -> Iterator[None]:
    """Adds the wall-clock and CPU time of the block to ``times[name]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        stage = times.setdefault(name, StageTime())
        stage.wall += time.perf_counter() - wall
        stage.cpu += time.process_time() - cpu


def check_report_dir(out: Path) -> None:
    """Fails early (before minutes of work) when ``out`` could not be replaced by a report.

    Raises:
        SmoothprobeError: ``out`` is a file, or a non-empty directory that is not a report.
    """
    if out.exists() and not out.is_dir():
        raise SmoothprobeError(f"--out {out} is a file; pass a directory name")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not names & set(REPORT_MARKERS):
            raise SmoothprobeError(
                f"--out {out} exists and is not a smoothprobe report; choose a new directory"
            )


def default_work_dir(out: Path) -> Path:
    """The work directory beside the report: ``reports/demo`` → ``reports/demo-run``."""
    return out.parent / f"{out.name}-run"


def write_outputs(records: list[dict[str, Any]], out: Path, work_dir: Path, *, title: str) -> Path:
    """Writes the report into ``out`` and the records beside it; returns the records path."""
    from smoothprobe.report.render import write_report

    scratch = work_dir / RECORDS_NAME
    write_records(scratch, records)
    write_report(scratch, out, title=title)
    final = out / RECORDS_NAME
    write_records(final, records)
    return final


def describe_times(times: dict[str, StageTime]) -> str:
    """One line: each stage's wall-clock (and CPU) seconds."""
    parts = [f"{name} {t.wall:.0f} s (CPU {t.cpu:.0f} s)" for name, t in times.items()]
    return ", ".join(parts)


def run_demo(
    out: str | os.PathLike = "reports/demo-local",
    *,
    budget: str | DemoBudget = "full",
    steps: int | None = None,
    seed: int = 0,
    work_dir: str | os.PathLike | None = None,
    threads: int | None = 1,
    progress: bool = True,
    title: str | None = None,
) -> DemoResult:
    """Trains, measures and reports (what ``smoothprobe demo`` runs).

    Args:
        out: report directory (replaced as a whole; must be new, empty or a previous report).
        budget: ``"full"``, ``"small"`` or a DemoBudget.
        steps: Adam steps (default: the budget's).
        seed: seed of data sample, initialization, batches and estimators.
        work_dir: data and checkpoints (default: ``OUT-run`` beside the report).
        threads: torch intra-op threads while the demo runs (None: leave as is).
        progress: progress bars and step messages on stderr.
        title: report title (default names the model and the steps).

    Returns:
        The DemoResult.

    Raises:
        SmoothprobeError: unknown budget, bad steps/seed, or ``out`` not replaceable.
    """
    from smoothprobe.compare import headline_numbers
    from smoothprobe.records import load_records

    spec = resolve_budget(budget)
    steps = spec.steps if steps is None else steps
    if steps < spec.checkpoints:
        raise SmoothprobeError(
            f"--steps {steps}: use at least {spec.checkpoints} (one per checkpoint)"
        )
    if seed < 0:
        raise SmoothprobeError(f"--seed {seed}: use a non-negative integer")
    out = Path(out)
    check_report_dir(out)
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    if work.resolve() == out.resolve() or out.resolve() in work.resolve().parents:
        raise SmoothprobeError(
            f"--work-dir {work} is inside the report directory {out}, which "
            "is replaced as a whole; choose another"
        )
    work.mkdir(parents=True, exist_ok=True)
    (work / ".gitignore").write_text("# smoothprobe demo: data and checkpoints, not for git\n*\n")
    times: dict[str, StageTime] = {}
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    with torch_threads(threads):
        with timed(times, "data"):
            tokens, val_path = prepare_data(
                work, vocab_size=spec.model["vocab_size"], max_chars=spec.max_chars
            )
        log(
            f"data: {len(tokens):,} training characters of Python {python_version_tag()}'s "
            f"standard library → {work}",
            enabled=progress,
        )
        with timed(times, "training"):
            paths = train(
                work, tokens, val_path, budget=spec, steps=steps, seed=seed, progress=progress
            )
        with timed(times, "measuring"):
            records = measure(paths, val_path, budget=spec, seed=seed, progress=progress)
        with timed(times, "report"):
            model = spec.model
            name = (
                f"tiny character-level GPT ({model['n_layer']} layers, "
                f"{model['n_embd']} wide, {model['n_head']} heads) on Python's standard "
                f"library, {steps} Adam steps"
            )
            records_path = write_outputs(
                records, out, work, title=title or f"smoothprobe demo: {name}"
            )
    times["total"] = StageTime(time.perf_counter() - total_wall, time.process_time() - total_cpu)
    log(f"report: {out / 'index.html'} ({describe_times(times)})", enabled=progress)
    headline = headline_numbers(load_records(records_path))
    return DemoResult(out, records_path, work, paths, headline, times)


def resolve_budget(budget: str | DemoBudget) -> DemoBudget:
    """A DemoBudget from its name.

    Raises:
        SmoothprobeError: unknown name.
    """
    if isinstance(budget, DemoBudget):
        return budget
    if budget not in BUDGETS:
        raise SmoothprobeError(f"--budget {budget!r}: use one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]
