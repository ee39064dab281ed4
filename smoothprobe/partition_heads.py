"""Adam-mini's head partition: attention queries and keys by head, everything else by row.

``per_head`` sends every tensor through a head rule (default ``nanogpt_head_rule``: nanoGPT's
fused ``c_attn`` and Hugging Face's ``q_proj``/``k_proj``/``query``/``key``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout, TensorSlot
from smoothprobe.partition_type import (
    LocalBlocks,
    Partition,
    _check_vectors,
    _from_local,
    _merge_vectors_into_rows,
    _row_or_whole,
)

HeadRule = Callable[[TensorSlot, int], "LocalBlocks | None"]


_C_ATTN = re.compile(r"(^|\.)c_attn\.(weight|bias)$")
_QK_PROJ = re.compile(r"(^|\.)(q_proj|k_proj|query|key)\.(weight|bias)$")


def _qkv_row_labels(c: int, n_head: int, name: str) -> LocalBlocks:
    """Labels of the 3C output units of a fused q,k,v projection: q, k by head; v by unit."""
    hs = c // n_head
    head = torch.arange(c) // hs
    labels = torch.cat([head, n_head + head, 2 * n_head + torch.arange(c)])
    keys = (
        [f"{name}:q.head{h}" for h in range(n_head)]
        + [f"{name}:k.head{h}" for h in range(n_head)]
        + [f"{name}:v[{j}]" for j in range(c)]
    )
    return labels, keys


def nanogpt_head_rule(slot: TensorSlot, n_head: int) -> LocalBlocks | None:
    """Adam-mini's head partition for nanoGPT / GPT-2 / HF-style attention tensors.

    - ``*.c_attn.weight`` of shape (3C, C) (nanoGPT Linear; q, k, v stacked by rows): the C query
      rows by head (n_head blocks of C/n_head rows), the key rows by head, every value row alone
      (by output neuron). Shape (C, 3C) (HF GPT-2 Conv1D) is handled the same way by columns.
    - ``*.c_attn.bias`` (3C,): query and key entries by head; the C value entries one block.
    - ``*.q_proj|k_proj|query|key.weight|bias`` (separate projections, rows = outputs): rows by
      head (n_head equal groups).
    - Anything else: ``None`` (the caller falls back to rows; ``attn.c_proj.weight`` is split by
      output row as in Adam-mini, although its input columns are the per-head ones).

    Args:
        slot: the tensor.
        n_head: number of attention heads.

    Returns:
        Local blocks, or None when the rule does not apply.

    Raises:
        SmoothprobeError: a matched tensor's width is not divisible by ``n_head``.
    """
    name, shape = slot.name, slot.shape
    if _C_ATTN.search(name):
        c = shape[0] // 3 if len(shape) == 1 or shape[0] == 3 * shape[-1] else shape[0]
        if slot.numel != 3 * c * (1 if len(shape) == 1 else c):
            return None  # not a fused (3C, C), (C, 3C) or (3C,) projection
        _check_heads(name, c, n_head)
        if len(shape) == 1:
            hs = c // n_head
            head = torch.arange(c) // hs
            labels = torch.cat([head, n_head + head, torch.full((c,), 2 * n_head)])
            keys = (
                [f"{name}:q.head{h}" for h in range(n_head)]
                + [f"{name}:k.head{h}" for h in range(n_head)]
                + [f"{name}:v"]
            )
            return labels, keys
        unit_labels, keys = _qkv_row_labels(c, n_head, name)
        if shape == (3 * c, c):  # rows are output units
            return unit_labels.repeat_interleave(c), keys
        return unit_labels.repeat(c), keys  # (C, 3C), HF Conv1D: columns are output units
    if _QK_PROJ.search(name):
        rows = shape[0]
        _check_heads(name, rows, n_head)
        per_head = slot.numel // n_head
        return (
            torch.arange(n_head).repeat_interleave(per_head),
            [f"{name}:head{h}" for h in range(n_head)],
        )
    return None


def _check_heads(name: str, width: int, n_head: int) -> None:
    if n_head < 1 or width % n_head:
        raise SmoothprobeError(
            f"{name!r} has {width} output units, not divisible by "
            f"n_head={n_head}; pass the model's number of attention heads"
        )


def per_head(
    layout: ParameterLayout,
    *,
    n_head: int,
    rule: HeadRule = nanogpt_head_rule,
    vectors: str = "tensor",
) -> Partition:
    """Adam-mini's partition: attention queries and keys by head, everything else by row.

    Every tensor goes through ``rule(slot, n_head)``; where it returns None the tensor is split
    as in :func:`per_row` (rows of ≥2-D tensors: value rows, attention output projection and MLP
    by output neuron, embeddings by token; 1-D tensors one block each).

    Args:
        layout: the parameter layout.
        n_head: number of attention heads.
        rule: per-tensor head rule (default :func:`nanogpt_head_rule`); returns local block ids
            (numel,) and one key per local block, or None. Equal keys merge across tensors.
        vectors: as in :func:`per_row` (``"unit"`` merges ``X.bias`` entries into the blocks of
            their rows of ``X.weight``).

    Returns:
        The partition, named ``"head"``.

    Raises:
        SmoothprobeError: no tensor matched the rule (not a recognised attention model: pass a
            ``rule`` or use a regex partition), bad ``n_head`` or ``vectors``.
    """
    _check_vectors(vectors)
    if not isinstance(n_head, int) or n_head < 1:
        raise SmoothprobeError(f"n_head={n_head!r}: pass the number of attention heads (≥ 1)")
    pieces, matched = [], 0
    for slot in layout.slots:
        local = rule(slot, n_head)
        matched += local is not None
        pieces.append(_row_or_whole(slot) if local is None else local)
    if not matched:
        raise SmoothprobeError(
            "head partition: no attention tensor (c_attn, q_proj, k_proj, "
            "query, key) in this model; pass rule= or use a regex partition",
            option="blocks",
        )
    if vectors == "unit":
        _merge_vectors_into_rows(layout, pieces)
    return _from_local("head", layout, pieces)
