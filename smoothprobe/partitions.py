"""Partitions Φ of the d coordinates into blocks: the geometry of blockwise Adam (MATH.md §2).

A :class:`Partition` labels every flat coordinate with a block id in ``0..B-1``. Builders turn a
:class:`~smoothprobe.layout.ParameterLayout` into the partitions of the Adam family:

==============  ============================================================================
builder         blocks
==============  ============================================================================
``singleton``   every coordinate alone (Adam; H(Φ) = H∞)
``per_row``     one block per output row (neuron / channel / token) of every ≥2-D tensor
``per_head``    Adam-mini: q and k rows by attention head, every other ≥2-D tensor by row
``per_tensor``  one block per parameter tensor
``per_layer``   one block per layer (module prefix, e.g. ``transformer.h.3``) (Adalayer)
``one_block``   all coordinates in one block (AdaSGD; H(Φ) = d·L₂)
``by_regex``    one block per regex (tensors whose name matches); the rest per tensor
``from_function`` a user function of each tensor slot
==============  ============================================================================

Blocks are built per tensor and may merge across tensors only when a builder gives them the
same key (layers, regex groups, user keys). In a rotated basis (:mod:`smoothprobe.bases`) a
partition keeps labelling the same flat positions, so "per tensor after a Hadamard rotation"
means blocks of the same sizes at the same positions of the rotated coordinates, which is what
the seed paper compares.

The :class:`Partition` type lives in ``partition_type`` and the head partition in
``partition_heads``; this module holds the other builders and ``build_partition``, and
re-exports them all.

Example:
    >>> from smoothprobe.layout import ParameterLayout
    >>> layout = ParameterLayout.from_shapes([("fc.weight", (3, 2)), ("fc.bias", (3,))])
    >>> per_row(layout).num_blocks
    4
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout, TensorSlot
from smoothprobe.partition_heads import HeadRule, nanogpt_head_rule, per_head
from smoothprobe.partition_type import (
    VECTOR_RULES,
    LocalBlocks,
    Partition,
    _check_layout,
    _check_vectors,
    _CoordinateNames,
    _from_local,
    _merge_vectors_into_rows,
    _row_or_whole,
    _whole,
)

SPECS = ("singleton", "row", "head", "tensor", "layer", "one")

__all__ = [
    "SPECS",
    "VECTOR_RULES",
    "HeadRule",
    "LocalBlocks",
    "Partition",
    "build_partition",
    "by_regex",
    "from_function",
    "layer_of",
    "nanogpt_head_rule",
    "one_block",
    "per_head",
    "per_layer",
    "per_row",
    "per_tensor",
    "singleton",
]


def singleton(layout: ParameterLayout) -> Partition:
    """Every coordinate its own block (Adam): H(Φ) = H∞. Block names are ``tensor[flat index]``."""
    _check_layout(layout)
    d = layout.d
    return Partition(
        "singleton", torch.arange(d), _CoordinateNames(layout), torch.ones(d, dtype=torch.int64)
    )


def one_block(layout: ParameterLayout) -> Partition:
    """All coordinates in one block (AdaSGD): H(Φ) = d·L₂."""
    _check_layout(layout)
    d = layout.d
    return Partition(
        "one", torch.zeros(d, dtype=torch.int64), ("all",), torch.tensor([d], dtype=torch.int64)
    )


def per_tensor(layout: ParameterLayout) -> Partition:
    """One block per parameter tensor (tied tensors are one tensor)."""
    return _from_local("tensor", layout, [_whole(s, s.name) for s in layout.slots])


def layer_of(name: str) -> str:
    """The layer (module prefix) a parameter belongs to.

    Rule: if a dotted component is an integer (a position in a ModuleList/Sequential), the layer is
    the prefix up to and including the first such component (``transformer.h.3.attn.c_attn.weight``
    → ``transformer.h.3``; ``net.0.weight`` → ``net.0``). Otherwise it is the owning module, i.e.
    the name without its last component (``transformer.wte.weight`` → ``transformer.wte``,
    ``transformer.ln_f.bias`` → ``transformer.ln_f``), so embeddings and the final norm are layers
    of their own. A name without dots is its own layer.
    """
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def per_layer(layout: ParameterLayout) -> Partition:
    """One block per layer (Adalayer); see :func:`layer_of` for the rule."""
    return _from_local("layer", layout, [_whole(s, layer_of(s.name)) for s in layout.slots])


def per_row(layout: ParameterLayout, *, vectors: str = "tensor") -> Partition:
    """One block per output row (neuron, channel, token) of every ≥2-D tensor.

    A ≥2-D tensor of shape (out, ...) gives ``out`` blocks of size prod(shape[1:]): rows of a
    Linear weight (neurons), output channels of a conv kernel, tokens of an embedding.

    Args:
        layout: the parameter layout.
        vectors: 1-D tensors (biases, norm scales): ``"tensor"`` (default) keeps each one block;
            ``"unit"`` puts entry i of ``X.bias`` into the block of row i of ``X.weight`` (other
            1-D tensors stay whole).

    Returns:
        The partition, named ``"row"``.

    Raises:
        SmoothprobeError: unknown ``vectors``.
    """
    _check_vectors(vectors)
    pieces = [_row_or_whole(s) for s in layout.slots]
    if vectors == "unit":
        _merge_vectors_into_rows(layout, pieces)
    return _from_local("row", layout, pieces)


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise SmoothprobeError(
            f"invalid regex {pattern!r} ({err}); escape special characters, "
            r"e.g. 'h\.0\.attn'"
        ) from None


def by_regex(layout: ParameterLayout, patterns: Sequence[str]) -> Partition:
    """One block per regex: all tensors whose name (or an alias) matches it; others per tensor.

    Patterns are tried in order with ``re.search``; a tensor joins the first one that matches.

    Args:
        layout: the parameter layout.
        patterns: regular expressions over parameter names.

    Returns:
        The partition, named ``"regex:" + ";".join(patterns)``.

    Raises:
        SmoothprobeError: no pattern, an invalid regex, or a regex that matches no tensor.
    """
    if not patterns:
        raise SmoothprobeError("no regex given; pass at least one, e.g. 'attn;mlp'")
    compiled = [_compile(p) for p in patterns]
    hits = [0] * len(compiled)
    pieces = []
    for slot in layout.slots:
        names = (slot.name, *slot.aliases)
        key = slot.name
        for i, rx in enumerate(compiled):
            if any(rx.search(n) for n in names):
                key, hits[i] = f"re:{patterns[i]}", hits[i] + 1
                break
        pieces.append(_whole(slot, key))
    for p, h in zip(patterns, hits, strict=True):
        if not h:
            example = layout.slots[0].name if layout.slots else "?"
            raise SmoothprobeError(
                f"regex {p!r} matches no parameter name (e.g. {example!r}); "
                "fix it or use tensor|layer|row|head|one|singleton"
            )
    return _from_local("regex:" + ";".join(patterns), layout, pieces)


def from_function(
    layout: ParameterLayout,
    fn: Callable[[TensorSlot], str | LocalBlocks],
    *,
    name: str = "function",
) -> Partition:
    """A partition from a user function of each tensor slot.

    Args:
        layout: the parameter layout.
        fn: ``fn(slot)`` returns either a key (the whole tensor joins the block of that key) or
            ``(labels, keys)``: per-element local block ids (numel or shape of the tensor) and one
            key per local id. Equal keys, also across tensors, form one block.
        name: partition name for records.

    Returns:
        The partition.

    Raises:
        SmoothprobeError: ``fn`` returned labels of the wrong size or out of range.
    """
    pieces = []
    for slot in layout.slots:
        out = fn(slot)
        pieces.append(_whole(slot, out) if isinstance(out, str) else out)
    return _from_local(name, layout, pieces)


def build_partition(spec: str, layout: ParameterLayout, *, n_head: int | None = None) -> Partition:
    """Parses a CLI ``--blocks`` spec.

    Args:
        spec: ``singleton``, ``row``, ``head``, ``tensor``, ``layer`` or ``one``; anything else is
            a list of regexes separated by ``;`` (prefix ``regex:`` to force that reading).
        layout: the parameter layout.
        n_head: number of attention heads (needed by ``head``).

    Returns:
        The partition.

    Raises:
        SmoothprobeError: empty spec, ``head`` without ``n_head``, invalid or unmatched regex.
    """
    spec = (spec or "").strip()
    if not spec:
        raise SmoothprobeError(
            "empty partition; use one of " + "|".join(SPECS) + " or a regex", option="blocks"
        )
    if spec.startswith("regex:"):
        return by_regex(layout, [p for p in spec[len("regex:") :].split(";") if p])
    builders = {
        "singleton": singleton,
        "row": per_row,
        "tensor": per_tensor,
        "layer": per_layer,
        "one": one_block,
    }
    if spec in builders:
        return builders[spec](layout)
    if spec == "head":
        if n_head is None:
            raise SmoothprobeError(
                "the head partition needs the number of attention heads (n_head; a nanoGPT "
                "checkpoint's model_args has it, a spec can return it)",
                option="n_head",
            )
        return per_head(layout, n_head=n_head)
    return by_regex(layout, [p for p in spec.split(";") if p])
