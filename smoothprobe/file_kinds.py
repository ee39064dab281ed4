"""What a file is, from its first bytes: recognise files that are not checkpoints before loading.

``torch.load`` given a text, JSON or CSV file fails with unrelated messages (``KeyError: 101``,
``pop from empty list``, or a refusal to unpickle). ``not_a_checkpoint`` names what the file is
instead, so the error can say so.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

SNIFF_BYTES = 4096

# Binary formats that are not torch checkpoints: (magic prefix, what it is).
_BINARY_MAGIC = (
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (e.g. a Keras .h5 model)"),
    (b"GGUF", "a GGUF file (llama.cpp weights)"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable"),
)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= size - 8 and head[8:9] == b"{"


def _text_kind(head: bytes, complete: bool) -> str | None:
    """Names a UTF-8 text file (JSON, JSON lines, CSV or plain text); None if not text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if complete or exc.start < len(head) - 4:  # a cut multi-byte character at the end is fine
            return None
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        return None
    stripped = text.lstrip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if stripped[:1] in ("{", "["):
        try:
            json.loads(text)
            return "a JSON file"
        except json.JSONDecodeError:
            pass
        try:
            if lines and all(json.loads(ln) is not None for ln in lines[: 5 if complete else -1]):
                return "a JSON-lines file (e.g. smoothprobe records)"
        except json.JSONDecodeError:
            pass
        return "a JSON or JSON-lines text file"
    if len(lines) >= 2 and "," in lines[0]:
        if len({ln.count(",") for ln in lines[: 5 if complete else -1] or lines[:1]}) == 1:
            return "a CSV table"
    return "a text file"


def not_a_checkpoint(path: str | os.PathLike) -> str | None:
    """Says what a file is when it is clearly not a torch or safetensors checkpoint.

    Args:
        path: an existing file.

    Returns:
        A description such as ``"a JSON file"`` or ``"a text file"``, or None when the file may
        be a checkpoint (a zip archive, a pickle starting with protocol byte 0x80, safetensors).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch zip or pickle
        return None
    if _is_safetensors(head, size):
        return None
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            return what
    text = _text_kind(head, complete=size <= SNIFF_BYTES)
    if text is not None:
        return text
    # torch.save writes a zip archive (or, before torch 1.6, a pickle starting with 0x80)
    return (
        "binary data that is neither a torch zip archive, a pickle nor safetensors "
        "(token data such as nanoGPT's train.bin is evaluation data, not a checkpoint)"
    )


def first_words(path: str | os.PathLike, *, limit: int = 40) -> str:
    """The file's first characters on one line, for an error message (whole words only)."""
    with open(path, "rb") as fh:
        text = fh.read(limit * 4).decode("utf-8", errors="replace")
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    cut = words.rfind(" ", 0, limit)
    return words[: cut if cut > 0 else limit] + " …"
