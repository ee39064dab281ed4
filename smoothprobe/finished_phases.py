"""The finished phases of one measurement, saved as each finishes so that a rerun resumes.

``run_measurement`` measures in phases (ℓ2, ℓ∞, spectral, each blockwise partition, gradient
differences, noise), each drawing from its own random stream (``derived_seed``), so a skipped
phase changes nothing in the others. After every phase its Estimates are written atomically to
one JSON file together with what identifies the run: the settings' key, the checkpoint's SHA-256
and the loss of the evaluation sample (a fingerprint of model, data, batches and dtype). A rerun
whose identity matches takes the saved phases as they are; any other file is ignored and
replaced. Under torchrun rank 0 reads the file and hands its content to every rank, and only
rank 0 writes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from smoothprobe.atomic import atomic_write_text
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.records import _clean


def estimate_from_dict(data: dict[str, Any]) -> Estimate:
    """The inverse of ``Estimate.to_dict``."""
    return Estimate(**{**data, "bound": Bound(data["bound"])})


class FinishedPhases:
    """Phase name → its Estimates, kept in ``path`` (None: nothing is kept)."""

    def __init__(self, path: str | os.PathLike | None, identity: dict[str, Any], *, writer=True):
        self.path = None if path is None else Path(path)
        self.identity = json.loads(json.dumps(identity))
        self.writer = writer
        self.phases: dict[str, list[dict[str, Any]]] = {}
        self.budget: int | None = None  # bytes the run started with (``run_memory.run_budget``)

    def load(self) -> FinishedPhases:
        """Reads the phases a run with the same identity saved (none when it differs)."""
        if self.path is None or not self.path.is_file():
            return self
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return self
        if isinstance(saved, dict) and saved.get("identity") == self.identity:
            self.phases = dict(saved.get("phases") or {})
            budget = saved.get("budget")
            self.budget = budget if isinstance(budget, int) and budget > 0 else None
        return self

    def share(self) -> FinishedPhases:
        """Under torchrun: every rank takes rank 0's phases (it alone may see the file)."""
        import torch.distributed as dist

        box = [self.phases, self.budget]
        dist.broadcast_object_list(box, src=0)
        self.phases, self.budget = box
        return self

    @property
    def names(self) -> list[str]:
        return list(self.phases)

    def get(self, name: str) -> list[Estimate] | None:
        """The saved Estimates of a finished phase, or None."""
        if name not in self.phases:
            return None
        return [estimate_from_dict(e) for e in self.phases[name]]

    def put(self, name: str, estimates: list[Estimate]) -> list[Estimate]:
        """Saves a finished phase (atomically) and returns its Estimates unchanged."""
        self.phases[name] = [_clean(e.to_dict(), keep_nonfinite=True) for e in estimates]
        self._write()
        return estimates

    def keep_budget(self, budget: int) -> None:
        """Saves the byte budget the run starts with, so that a rerun plans the same."""
        self.budget = int(budget)
        self._write()

    def _write(self) -> None:
        if self.path is not None and self.writer:
            saved = {"identity": self.identity, "budget": self.budget, "phases": self.phases}
            atomic_write_text(self.path, json.dumps(saved))

    def remove(self) -> None:
        """Deletes the file once the run's records are safely written."""
        if self.path is not None and self.writer:
            self.path.unlink(missing_ok=True)


def phases_path(out: str | os.PathLike) -> Path:
    """Where a measurement writing ``out`` keeps its finished phases."""
    out = Path(out)
    return out.with_name(f".{out.name}.phases.json")


def lanczos_state_path(phases: str | os.PathLike) -> Path:
    """Where the ℓ2 phase keeps its Lanczos state, beside the finished phases."""
    phases = Path(phases)
    return phases.with_name(phases.name.removesuffix(".json") + ".lanczos.pt")


def loop_state_prefix(phases: str | os.PathLike, phase: str) -> Path:
    """Prefix of the files where ``phase`` keeps its loops' state (``<prefix>.<loop>.pt``)."""
    phases = Path(phases)
    return phases.with_name(phases.name.removesuffix(".json") + f".{phase}")
