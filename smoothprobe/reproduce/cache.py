"""Content-addressed cache of training runs and measurements (kill a run, rerun, it continues).

Every entry is named by the SHA-256 of the JSON of everything that decides its content, and is
written atomically (temp file + rename), so an interrupted run leaves complete entries or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from smoothprobe.atomic import atomic_write, atomic_write_text


def content_key(payload: dict[str, Any]) -> str:
    """A 20-hex-digit hash of a JSON-ready dict (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Cache:
    """A directory of ``<kind>/<key>.json`` (and optional ``.pt`` tensors) entries.

    Args:
        root: the directory (created, with a ``.gitignore`` so it never lands in git).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            atomic_write_text(ignore, "*\n")

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def load(self, kind: str, key: str) -> Any | None:
        """The JSON entry, or None when absent."""
        path = self._path(kind, key, ".json")
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def save(self, kind: str, key: str, value: Any) -> None:
        path = self._path(kind, key, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(value))

    def load_tensors(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(kind, key, ".pt")
        if not path.exists():
            return None
        return torch.load(path, weights_only=True)

    def save_tensors(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        atomic_write(self._path(kind, key, ".pt"), lambda fh: torch.save(tensors, fh))
