"""Evaluation data: nanoGPT token files, plain text (byte level), tensor files, stdlib text.

Every loader returns inputs and targets as tensors (``x``, ``y``); ``make_batches`` splits them.
Token sequences are sampled at seeded random offsets, so a (file, seed) pair is a fixed sample.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoothprobe.errors import DataError, quoted

TEXT_SUFFIXES = {".txt", ".text", ".md", ".py", ".rst"}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and scalars (nanoGPT's meta.pkl); never runs code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def read_meta(path: str | os.PathLike) -> dict:
    """Reads a nanoGPT ``meta.pkl`` (vocab_size, itos, stoi) without executing code.

    Raises:
        DataError: the file is not a plain pickle of a dict.
    """
    try:
        with open(path, "rb") as fh:
            meta = _PlainUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(
            f"{path}: not a plain nanoGPT meta.pkl ({exc}); remove it or fix it"
        ) from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: meta.pkl must hold a dict with vocab_size")
    return meta


@dataclass(frozen=True)
class CharVocab:
    """Character vocabulary: the most frequent characters, the rest mapped to one ``other`` id.

    Attributes:
        chars: known characters; id i ↔ chars[i]; id len(chars) is "other".
    """

    chars: str

    @classmethod
    def from_text(cls, text: str, *, size: int) -> CharVocab:
        """Keeps the ``size - 1`` most frequent characters (ties broken by code point)."""
        ranked = sorted(Counter(text).items(), key=lambda kv: (-kv[1], kv[0]))
        return cls("".join(sorted(c for c, _ in ranked[: size - 1])))

    @property
    def size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        other = len(self.chars)
        return np.fromiter((index.get(c, other) for c in text), dtype=np.uint16, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[i] if i < len(self.chars) else "?" for i in ids)

    def meta(self) -> dict:
        """nanoGPT's meta.pkl content."""
        itos = dict(enumerate(self.chars))
        itos[len(self.chars)] = "\x00"
        return {"vocab_size": self.size, "itos": itos, "stoi": {c: i for i, c in itos.items()}}


def stdlib_text(*, max_chars: int = 200_000) -> str:
    """Text of Python's own standard library (its top-level ``.py`` files, sorted by name).

    Args:
        max_chars: stop after this many characters.

    Returns:
        The text; real, always present, and license-compatible.
    """
    root = Path(os.__file__).parent
    parts, total = [], 0
    for f in sorted(root.glob("*.py")):
        chunk = f.read_text(encoding="utf-8", errors="replace")
        parts.append(chunk)
        total += len(chunk)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def sample_sequences(
    tokens: np.ndarray, *, block_size: int, num_sequences: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws fixed (input, next-token target) windows at seeded offsets, as nanoGPT's get_batch.

    Raises:
        DataError: fewer than ``block_size + 1`` tokens.
    """
    n = len(tokens)
    if n == 0:
        raise DataError("the token data is empty")
    if n < block_size + 1:
        raise DataError(
            f"the data has {n} tokens, shorter than one sequence of block_size+1="
            f"{block_size + 1}; use more data or a smaller block size",
            option="block_size",
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(n - block_size, (num_sequences,), generator=gen).tolist()
    x = np.stack([np.asarray(tokens[s : s + block_size], dtype=np.int64) for s in starts])
    y = np.stack([np.asarray(tokens[s + 1 : s + 1 + block_size], dtype=np.int64) for s in starts])
    return torch.from_numpy(x), torch.from_numpy(y)


def load_token_file(path: str | os.PathLike) -> tuple[np.ndarray, int | None]:
    """Memory-maps a nanoGPT ``.bin`` (uint16) and reads ``meta.pkl`` beside it when present.

    Returns:
        (tokens, vocab_size or None).
    """
    path = Path(path)
    if path.stat().st_size % 2:
        raise DataError(f"{path}: size is odd, not a uint16 nanoGPT token file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    meta = path.parent / "meta.pkl"
    vocab = int(read_meta(meta)["vocab_size"]) if meta.exists() else None
    return tokens, vocab


def load_tensor_file(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Reads inputs/targets from ``.pt`` (weights-only) or ``.npz`` under x/y or inputs/targets.

    Raises:
        DataError: unreadable file or missing keys.
    """
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                content = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read tensor file {path}: {quoted(exc)}") from None
    if not isinstance(content, dict):
        raise DataError(f"{path} must hold a dict with keys x and y (or inputs and targets)")
    for xk, yk in (("x", "y"), ("inputs", "targets")):
        if xk in content and yk in content:
            x, y = content[xk], content[yk]
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise DataError(f"{path}: {xk} and {yk} must be tensors")
            if x.shape[0] == 0:
                raise DataError(f"{path} holds no examples")
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{path}: {xk} has {x.shape[0]} examples but {yk} {y.shape[0]}")
            return x, y
    raise DataError(f"{path} has keys {sorted(content)}; expected x and y (or inputs and targets)")


def load_data(
    path: str | os.PathLike,
    *,
    block_size: int,
    num_sequences: int,
    seed: int,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loads an evaluation sample from a file, chosen by suffix.

    ``.bin``: nanoGPT tokens; text suffixes: UTF-8 bytes as tokens (vocabulary 256);
    ``.pt``/``.npz``: tensors used as they are.

    Args:
        path: the data file.
        block_size: sequence length for token data.
        num_sequences: number of sequences to sample from token data.
        seed: seed of the sequence offsets.
        vocab_size: the model's vocabulary, to reject out-of-range token ids.

    Returns:
        (x, y) tensors.

    Raises:
        DataError: missing, empty, too short, or incompatible data.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.suffix in (".pt", ".npz"):
        return load_tensor_file(path)
    if path.suffix == ".bin":
        tokens, meta_vocab = load_token_file(path)
        if meta_vocab and vocab_size and meta_vocab > vocab_size:
            raise DataError(
                f"{path.parent / 'meta.pkl'} has vocab_size {meta_vocab} > the "
                f"model's {vocab_size}: the data belongs to another model"
            )
    elif path.suffix in TEXT_SUFFIXES or path.suffix == "":
        tokens = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    else:
        raise DataError(
            f"unknown data format {path.suffix!r} for {path}: use .bin (nanoGPT "
            "tokens), .txt (bytes), .pt or .npz (tensors x, y)"
        )
    x, y = sample_sequences(tokens, block_size=block_size, num_sequences=num_sequences, seed=seed)
    if vocab_size is not None and int(max(x.max(), y.max())) >= vocab_size:
        raise DataError(
            f"{path} has token id {int(max(x.max(), y.max()))} ≥ the model's "
            f"vocab_size {vocab_size}: the data belongs to another tokenizer"
        )
    return x, y


def write_token_file(
    path: str | os.PathLike, tokens: np.ndarray, *, meta: dict | None = None
) -> None:
    """Writes nanoGPT's ``.bin`` (uint16) and optionally ``meta.pkl`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(tokens, dtype=np.uint16).tofile(path)
    if meta is not None:
        buf = io.BytesIO()
        pickle.dump(meta, buf)
        (path.parent / "meta.pkl").write_bytes(buf.getvalue())


def python_version_tag() -> str:
    """The Python version whose standard library text was used (results depend on it)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"
