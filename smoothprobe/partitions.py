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

Example:
    >>> from smoothprobe.layout import ParameterLayout
    >>> layout = ParameterLayout.from_shapes([("fc.weight", (3, 2)), ("fc.bias", (3,))])
    >>> per_row(layout).num_blocks
    4
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout, TensorSlot

SPECS = ("singleton", "row", "head", "tensor", "layer", "one")
VECTOR_RULES = ("tensor", "unit")

# One tensor's share of a partition: per-element local block ids (numel,) and one global key per
# local id. Equal keys (also across tensors) are the same block.
LocalBlocks = tuple[torch.Tensor, Sequence[str]]
HeadRule = Callable[[TensorSlot, int], "LocalBlocks | None"]


@dataclass(frozen=True, eq=False)
class Partition:
    """A partition Φ of the coordinates 0..d-1 into B blocks.

    Attributes:
        name: short name for records, e.g. ``"row"`` or ``"regex:attn;mlp"``.
        labels: (d,) int64 tensor, the block id of every coordinate (ids 0..B-1, all used).
        block_names: B names, one per block id.
        sizes: (B,) int64 tensor, d_b for every block.

    Raises:
        SmoothprobeError: labels, names and sizes do not describe a partition.
    """

    name: str
    labels: torch.Tensor
    block_names: Sequence[str]
    sizes: torch.Tensor

    def __post_init__(self) -> None:
        labels, sizes = self.labels, self.sizes
        if labels.ndim != 1 or labels.dtype != torch.int64 or labels.numel() == 0:
            raise SmoothprobeError("partition labels must be a non-empty 1-D int64 tensor")
        n = sizes.numel()
        if len(self.block_names) != n:
            raise SmoothprobeError(
                f"partition {self.name!r}: {len(self.block_names)} names "
                f"for {n} blocks; give one name per block"
            )
        if int(labels.min()) < 0 or int(labels.max()) >= n:
            raise SmoothprobeError(f"partition {self.name!r}: labels must lie in 0..{n - 1}")
        if not torch.equal(torch.bincount(labels.cpu(), minlength=n), sizes.cpu()):
            raise SmoothprobeError(
                f"partition {self.name!r}: sizes do not match the labels "
                "(every block needs at least one coordinate)"
            )

    @property
    def d(self) -> int:
        return self.labels.numel()

    @property
    def num_blocks(self) -> int:
        return self.sizes.numel()

    @functools.cached_property
    def order(self) -> torch.Tensor:
        """(d,) coordinates sorted by block (stable); block b is order[offsets[b]:offsets[b+1]]."""
        return torch.argsort(self.labels.cpu(), stable=True)

    @functools.cached_property
    def offsets(self) -> torch.Tensor:
        """(B+1,) start of every block in :attr:`order`."""
        return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(self.sizes.cpu(), 0)])

    @functools.cached_property
    def _on_device(self) -> dict:
        return {}

    def labels_on(self, device: torch.device) -> torch.Tensor:
        """The labels on a device (cached per device)."""
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.labels.to(device)
        return self._on_device[key]

    def block_indices(self, block: int) -> torch.Tensor:
        """Returns the coordinates of one block, increasing."""
        return self.order[int(self.offsets[block]) : int(self.offsets[block + 1])]

    @functools.cached_property
    def size_groups(self) -> tuple[tuple[int, torch.Tensor, torch.Tensor], ...]:
        """Blocks grouped by size: (s, block ids (n_s,), coordinates (n_s, s)) for every size s."""
        groups = []
        sizes = self.sizes.cpu()
        for s in torch.unique(sizes).tolist():
            ids = torch.nonzero(sizes == s).reshape(-1)
            starts = self.offsets[ids]
            coords = self.order[starts[:, None] + torch.arange(s)[None, :]]
            groups.append((int(s), ids, coords))
        return tuple(groups)

    def block_norms(self, vectors: torch.Tensor) -> torch.Tensor:
        """Per-block ℓ2 norms ‖v_b‖₂ of a block of vectors.

        Args:
            vectors: (k, d) or (d,).

        Returns:
            (k, B) (or (B,)) float64 tensor on the vectors' device.
        """
        single = vectors.ndim == 1
        v = vectors.reshape(1, -1) if single else vectors
        sq = torch.zeros(v.shape[0], self.num_blocks, dtype=torch.float64, device=v.device)
        labels = self.labels_on(v.device)
        step = max(1, (1 << 26) // max(self.d, 1))  # float64 copies of ≤ 2^26 entries at once
        for i in range(0, v.shape[0], step):
            sq[i : i + step].index_add_(1, labels, v[i : i + step].to(torch.float64).square())
        out = sq.sqrt()
        return out[0] if single else out

    def size_stats(self) -> dict[str, float]:
        """Returns number of blocks and min / median / mean / max block size."""
        s = self.sizes.to(torch.float64)
        return {
            "blocks": self.num_blocks,
            "d": self.d,
            "min": float(s.min()),
            "median": float(s.median()),
            "mean": float(s.mean()),
            "max": float(s.max()),
        }

    def summary(self, *, largest: int = 5) -> str:
        """A printable summary: number of blocks, size statistics and the largest blocks.

        Args:
            largest: how many of the largest blocks to list.

        Returns:
            Multi-line text.
        """
        st = self.size_stats()
        lines = [
            f"partition {self.name!r}: {st['blocks']:,} blocks over d = {st['d']:,} "
            f"coordinates; block size min {st['min']:,.0f}, median {st['median']:,.0f}, "
            f"mean {st['mean']:,.1f}, max {st['max']:,.0f}"
        ]
        top = torch.argsort(self.sizes, descending=True, stable=True)[:largest].tolist()
        for b in top:
            lines.append(f"  {self.block_names[b]}: {int(self.sizes[b]):,}")
        return "\n".join(lines)


class _CoordinateNames(Sequence):
    """Lazy names ``tensor[i]`` (flat index inside the tensor) for singleton blocks."""

    def __init__(self, layout: ParameterLayout):
        self._slots = layout.slots
        self._starts = [s.start for s in layout.slots]
        self._d = layout.d

    def __len__(self) -> int:
        return self._d

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._d))]
        if i < 0:
            i += self._d
        if not 0 <= i < self._d:
            raise IndexError(i)
        slot = self._slots[bisect.bisect_right(self._starts, i) - 1]
        return f"{slot.name}[{i - slot.start}]"


def _check_layout(layout: ParameterLayout) -> None:
    if layout.d == 0:
        raise SmoothprobeError("the parameter layout is empty: the model has no trainable tensor")


def _from_local(name: str, layout: ParameterLayout, pieces: Sequence[LocalBlocks]) -> Partition:
    """Assembles a partition from per-tensor local blocks; equal keys merge into one block."""
    _check_layout(layout)
    ids: dict[str, int] = {}
    labels = []
    for slot, (local, keys) in zip(layout.slots, pieces, strict=True):
        local = torch.as_tensor(local, dtype=torch.int64).reshape(-1)
        if local.numel() != slot.numel:
            raise SmoothprobeError(
                f"block labels for {slot.name!r} have {local.numel()} entries "
                f"but the tensor has {slot.numel}; give one label per element"
            )
        if local.numel() and (int(local.min()) < 0 or int(local.max()) >= len(keys)):
            raise SmoothprobeError(
                f"block labels for {slot.name!r} must lie in 0..{len(keys) - 1}"
                " (one key per local block)"
            )
        glob = torch.tensor([ids.setdefault(str(k), len(ids)) for k in keys], dtype=torch.int64)
        labels.append(glob[local] if local.numel() else local)
    flat = torch.cat(labels)
    # Drop keys no coordinate uses and renumber in order of first use.
    used, first = torch.unique(flat, return_inverse=True)
    names_by_id = list(ids)
    names = [names_by_id[i] for i in used.tolist()]
    sizes = torch.bincount(first, minlength=len(names))
    return Partition(name, first, tuple(names), sizes)


def _whole(slot: TensorSlot, key: str) -> LocalBlocks:
    return torch.zeros(slot.numel, dtype=torch.int64), [key]


def _rows(slot: TensorSlot) -> LocalBlocks:
    """Blocks = rows along dim 0 (output units of a PyTorch Linear/Conv weight or an embedding)."""
    rows = slot.shape[0]
    per_row = slot.numel // rows
    return (
        torch.arange(rows).repeat_interleave(per_row),
        [f"{slot.name}[{i}]" for i in range(rows)],
    )


def _row_or_whole(slot: TensorSlot) -> LocalBlocks:
    return _rows(slot) if len(slot.shape) >= 2 and slot.numel else _whole(slot, slot.name)


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


def _check_vectors(vectors: str) -> None:
    if vectors not in VECTOR_RULES:
        raise SmoothprobeError(f"vectors={vectors!r}: use one of {', '.join(VECTOR_RULES)}")


def _merge_vectors_into_rows(layout: ParameterLayout, pieces: list[LocalBlocks]) -> None:
    """``X.bias`` entry i joins the block of row i of ``X.weight`` when every row is in one block.

    Applies to 1-D tensors named ``*.bias`` whose sibling ``*.weight`` is ≥2-D with as many rows
    (PyTorch Linear/Conv orientation: rows are output units). Modifies ``pieces`` in place.
    """
    index = {s.name: i for i, s in enumerate(layout.slots)}
    for i, slot in enumerate(layout.slots):
        if len(slot.shape) != 1 or not slot.name.endswith(".bias"):
            continue
        j = index.get(slot.name[: -len("bias")] + "weight")
        if j is None:
            continue
        wslot = layout.slots[j]
        if len(wslot.shape) < 2 or wslot.shape[0] != slot.shape[0]:
            continue
        local, keys = pieces[j]
        rows = local.reshape(wslot.shape[0], -1)
        if not bool((rows == rows[:, :1]).all()):
            continue  # a row is split over blocks: no unit to join
        pieces[i] = (torch.arange(slot.numel), [keys[int(k)] for k in rows[:, 0]])


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
