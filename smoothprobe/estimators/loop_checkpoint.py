"""Saving and resuming the streaming loops of a phase (the ℓ∞ phase: Cauchy probes, sampled
columns, max-row refinement, sign ascent; blockwise H(Φ): its block columns and its ascent),
so a run of hours survives an interruption.

Each loop keeps its own file ``<prefix>.<loop>.pt``: while it runs, its accumulators and
``position`` (the HVPs done) at most every ``every_seconds``, written at a chunk boundary from
the live tensors (no copies); when it ends, its final state, written once and never touched
again. A rerun with the same identity restores a loop's file and goes on from the saved
position with the same generator state, so it takes exactly the probes the uninterrupted run
would have taken and returns the same numbers (the block size may differ: results do not depend
on it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from smoothprobe.atomic import atomic_write

State = dict[str, Any]


class LoopCheckpoint:
    """Where and how often the loops of one phase save their state.

    Args:
        prefix: path prefix of the loop files (``<prefix>.<loop>.pt``).
        identity: what must match for a saved state to be resumed (the run's settings,
            checkpoint and sample).
        every_seconds: least time between two saves of a running loop (0: every chunk).
        writer: False on every torchrun rank but 0 (they read, never write).
        agree: under torchrun, reduces "this rank found the state" over the ranks (True only
            when all did), so that either every rank resumes a loop or none does.
        on_resume: called with one line when a loop resumes and the HVPs it did before, or
            when a saved loop cannot resume (0 HVPs).
        phase: the phase's name in that line (e.g. ``"ℓ∞"``).
    """

    def __init__(
        self,
        prefix: str | os.PathLike,
        identity: dict[str, Any],
        *,
        every_seconds: float = 600.0,
        writer: bool = True,
        agree: Callable[[bool], bool] | None = None,
        on_resume: Callable[[str, int], None] | None = None,
        phase: str = "",
    ):
        self.prefix = Path(prefix)
        self.phase = phase
        self.identity = json.dumps(json.loads(json.dumps(identity, default=str)), sort_keys=True)
        self.every_seconds = every_seconds
        self.writer = writer
        self.agree = agree
        self.on_resume = on_resume
        self._last = time.monotonic()

    def path(self, loop: str) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.{loop}.pt")

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def restore(self, loop: str) -> State | None:
        """The saved state of ``loop`` (``position``, ``done`` and its own entries), or None
        when there is none, it is unreadable or it belongs to another run (on every rank)."""
        state, existed = None, self.path(loop).is_file()
        try:
            saved = torch.load(self.path(loop), weights_only=True)
            if saved.get("identity") == self.identity and saved.get("loop") == loop:
                state = saved["state"]
        except (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError, AttributeError):
            state = None
        if self.agree is not None and not self.agree(state is not None):
            state = None
        self._last = time.monotonic()
        if state is not None and self.on_resume is not None:
            hvps = int(state.get("position", 0))
            where = "finished" if state.get("done") else f"at {hvps} HVPs"
            line = f"{self.phase} {loop}: resumed ({where}) from {self.path(loop)}"
            self.on_resume(line.strip(), hvps)
        elif existed and self.on_resume is not None:  # never silently: it may be hours of work
            line = f"{self.phase} {loop}: {self.path(loop)} is another run's or unreadable"
            self.on_resume(f"{line.strip()}: this loop starts over", 0)
        return state

    def progress(self, loop: str, state: Callable[[], State], *, done: bool = False) -> None:
        """Saves ``state()`` when ``every_seconds`` have passed since the last save, or when
        the loop is ``done`` (its final state). Call it at a chunk boundary."""
        if not self.writer or not (done or self.due()):
            return
        payload = {"identity": self.identity, "loop": loop, "state": {**state(), "done": done}}
        atomic_write(self.path(loop), lambda fh: torch.save(payload, fh))
        self._last = time.monotonic()

    def remove(self) -> None:
        """Deletes every loop file of this prefix (rank 0 only)."""
        if self.writer:
            for path in self.prefix.parent.glob(f"{self.prefix.name}.*.pt"):
                path.unlink(missing_ok=True)


def resumed(checkpoint: LoopCheckpoint | None, loop: str) -> State | None:
    """``checkpoint.restore(loop)``, or None without a checkpoint."""
    return None if checkpoint is None else checkpoint.restore(loop)


def saved(
    checkpoint: LoopCheckpoint | None, loop: str, state: Callable[[], State], *, done: bool
) -> None:
    """``checkpoint.progress(...)``; nothing without a checkpoint."""
    if checkpoint is not None:
        checkpoint.progress(loop, state, done=done)
