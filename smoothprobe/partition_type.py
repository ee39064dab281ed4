"""The Partition type Φ, and how builders assemble one from per-tensor local blocks (MATH.md §2).

A builder (``partitions``, ``partition_heads``) gives every tensor slot its ``LocalBlocks``:
per-element local block ids and one key per local id; ``_from_local`` merges equal keys across
tensors into one block and renumbers them.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout, TensorSlot

VECTOR_RULES = ("tensor", "unit")
# One tensor's share of a partition: per-element local block ids (numel,) and one global key per
# local id. Equal keys (also across tensors) are the same block.
LocalBlocks = tuple[torch.Tensor, Sequence[str]]


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

    def block_norms(self, vectors: torch.Tensor, *, entries: int = 1 << 24) -> torch.Tensor:
        """Per-block ℓ2 norms ‖v_b‖₂ of a block of vectors.

        Args:
            vectors: (k, d) or (d,).
            entries: float64 entries copied at once (the coordinates go in chunks).

        Returns:
            (k, B) (or (B,)) float64 tensor on the vectors' device.
        """
        single = vectors.ndim == 1
        v = vectors.reshape(1, -1) if single else vectors
        sq = torch.zeros(v.shape[0], self.num_blocks, dtype=torch.float64, device=v.device)
        labels = self.labels_on(v.device)
        step = max(1, entries // v.shape[0])
        for a in range(0, self.d, step):
            part = v[:, a : a + step].to(torch.float64).square()
            sq.index_add_(1, labels[a : a + step], part)
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
