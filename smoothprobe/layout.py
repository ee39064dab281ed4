"""Parameter layout: which slice of the flat vector θ ∈ R^d belongs to which tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorSlot:
    """One trainable tensor inside the flat parameter vector.

    Attributes:
        name: canonical parameter name (the first name it was registered under).
        shape: tensor shape.
        start: first flat index.
        stop: one past the last flat index.
        aliases: other names sharing this storage (tied weights), counted once.
    """

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int
    aliases: tuple[str, ...] = ()

    @property
    def numel(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class ParameterLayout:
    """Ordered tensors making up θ. Tied tensors appear once, with their other names as aliases."""

    slots: tuple[TensorSlot, ...]

    @classmethod
    def from_shapes(
        cls,
        shapes: Sequence[tuple[str, Sequence[int]]],
        *,
        aliases: Mapping[str, Sequence[str]] | None = None,
    ) -> ParameterLayout:
        """Builds a layout from (name, shape) pairs in order.

        Args:
            shapes: names and shapes, in flat order.
            aliases: for a canonical name, the other names tied to it.

        Returns:
            The layout.
        """
        aliases = aliases or {}
        slots, start = [], 0
        for name, shape in shapes:
            shape = tuple(int(s) for s in shape)
            n = 1
            for s in shape:
                n *= s
            slots.append(TensorSlot(name, shape, start, start + n, tuple(aliases.get(name, ()))))
            start += n
        return cls(tuple(slots))

    @property
    def d(self) -> int:
        return self.slots[-1].stop if self.slots else 0

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def slot(self, name: str) -> TensorSlot:
        """Returns the slot of a canonical name or an alias.

        Raises:
            KeyError: when no tensor has that name.
        """
        for s in self.slots:
            if s.name == name or name in s.aliases:
                return s
        raise KeyError(name)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenates tensors (by canonical name) into one flat vector."""
        return torch.cat([tensors[s.name].reshape(-1) for s in self.slots])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Splits a flat vector (d,) into views, keyed by canonical names and aliases.

        One ``split`` rather than a slice per tensor: autograd then backpropagates the pieces
        with one concatenation, where per-tensor slices would each zero-fill a d-vector (on
        GPT-2-small that zero-filling was 85% of a gradient's time).
        """
        return self.views(flat.split([s.numel for s in self.slots]))

    def views(self, pieces: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """One flat piece per tensor (in slot order) as views, keyed by names and aliases."""
        if len(pieces) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} pieces, got {len(pieces)}")
        out: dict[str, torch.Tensor] = {}
        for s, piece in zip(self.slots, pieces, strict=True):
            view = piece.view(s.shape)
            out[s.name] = view
            for a in s.aliases:
                out[a] = view
        return out

    def unflatten_batched(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Splits a block of flat vectors (k, d) into (k, *shape) views keyed by canonical names."""
        k = flat.shape[0]
        pieces = flat.split([s.numel for s in self.slots], dim=1)
        return {s.name: p.reshape(k, *s.shape) for s, p in zip(self.slots, pieces, strict=True)}

    def summary(self) -> list[dict]:
        """Returns one JSON-ready row per tensor: name, shape, numel, start, aliases."""
        return [
            {
                "name": s.name,
                "shape": list(s.shape),
                "numel": s.numel,
                "start": s.start,
                "aliases": list(s.aliases),
            }
            for s in self.slots
        ]
