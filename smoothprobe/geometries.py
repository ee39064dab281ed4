"""Norm pairs of the three geometries (MATH.md §2) for gradient-only estimators.

A :class:`Geometry` pairs a norm on parameter displacements with its dual norm on gradients:

=========  =============================  ==============================  =====================
geometry   norm ‖x‖                       dual ‖g‖_*                      unit direction draw
=========  =============================  ==============================  =====================
``l2``     ‖x‖₂                           ‖g‖₂                            uniform on the sphere
``linf``   ‖x‖∞                           ‖g‖₁                            random signs
``block``  max_b ‖x_b‖₂/√d_b              Σ_b √d_b ‖g_b‖₂                 √d_b·(uniform unit)_b
=========  =============================  ==============================  =====================

Every unit draw has norm exactly 1 in its geometry and is a vertex-like point of the unit ball
(for singleton blocks the ``block`` draw *is* a random sign vector; for one block it is √d times
a uniform unit vector). Norms are computed in float64.

The blockwise geometry takes a :class:`~smoothprobe.partitions.Partition` or any (d,) int64
tensor of block labels 0..B-1.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError

GEOMETRY_KINDS = ("l2", "linf", "block")


@dataclass(frozen=True, eq=False)
class Geometry:
    """A norm on θ-displacements and its dual norm on gradients.

    Attributes:
        kind: ``"l2"``, ``"linf"`` or ``"block"``.
        partition: partition name for records (``"one"`` for l2, ``"singleton"`` for linf).
        labels: (d,) int64 block labels (``block`` only).
        sizes: (B,) int64 block sizes d_b (``block`` only).
    """

    kind: str
    partition: str = ""
    labels: torch.Tensor | None = None
    sizes: torch.Tensor | None = None

    @property
    def num_blocks(self) -> int | None:
        return None if self.sizes is None else int(self.sizes.numel())

    def _block_norms(self, v: torch.Tensor) -> torch.Tensor:
        """(k, d) → (k, B) float64 per-block ℓ2 norms."""
        labels = self.labels.to(v.device)
        sq = torch.zeros(v.shape[0], self.num_blocks, dtype=torch.float64, device=v.device)
        sq.index_add_(1, labels, v.to(torch.float64).square())
        return sq.sqrt()

    def _sqrt_sizes(self, device: torch.device) -> torch.Tensor:
        return self.sizes.to(device=device, dtype=torch.float64).sqrt()

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """‖x‖ for each row of x ((k, d) → (k,), (d,) → ()), float64."""
        single = x.ndim == 1
        v = x.reshape(1, -1) if single else x
        if self.kind == "l2":
            out = torch.linalg.vector_norm(v.to(torch.float64), dim=1)
        elif self.kind == "linf":
            out = v.to(torch.float64).abs().amax(dim=1)
        else:
            out = (self._block_norms(v) / self._sqrt_sizes(v.device)).amax(dim=1)
        return out[0] if single else out

    def dual_norm(self, g: torch.Tensor) -> torch.Tensor:
        """‖g‖_* for each row of g ((k, d) → (k,), (d,) → ()), float64."""
        single = g.ndim == 1
        v = g.reshape(1, -1) if single else g
        if self.kind == "l2":
            out = torch.linalg.vector_norm(v.to(torch.float64), dim=1)
        elif self.kind == "linf":
            out = v.to(torch.float64).abs().sum(dim=1)
        else:
            out = (self._block_norms(v) * self._sqrt_sizes(v.device)).sum(dim=1)
        return out[0] if single else out

    def unit_directions(self, k: int, d: int, *, generator: torch.Generator) -> torch.Tensor:
        """Draws k seeded directions of norm exactly 1 (see the module table).

        Args:
            k: number of directions.
            d: dimension (must match the partition for ``block``).
            generator: CPU generator (the only source of randomness).

        Returns:
            (k, d) float64 CPU tensor.
        """
        self._check_d(d)
        if self.kind == "linf":
            bits = torch.randint(0, 2, (k, d), generator=generator)
            return (2 * bits - 1).to(torch.float64)
        z = torch.randn(k, d, generator=generator, dtype=torch.float64)
        if self.kind == "l2":
            return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        per_block = self._sqrt_sizes(z.device) / self._block_norms(z)  # (k, B): √d_b/‖z_b‖
        return z * per_block[:, self.labels]

    def entry_scale(self, d: int) -> float:
        """Factor that gives a unit draw entries of magnitude ≈ 1 (√d for l2, else 1)."""
        return math.sqrt(d) if self.kind == "l2" else 1.0

    def _check_d(self, d: int) -> None:
        if self.labels is not None and self.labels.numel() != d:
            raise SmoothprobeError(
                f"the partition labels {self.labels.numel()} coordinates but the problem has "
                f"d={d}; build the partition from this problem's layout"
            )

    def describe(self) -> dict:
        """JSON-ready identity (kind, partition name, blocks and a hash of the labels)."""
        out: dict = {"geometry": self.kind, "partition": self.partition}
        if self.labels is not None:
            digest = hashlib.sha256(self.labels.cpu().numpy().tobytes()).hexdigest()[:16]
            out.update(blocks=self.num_blocks, labels_sha256=digest)
        return out


def l2() -> Geometry:
    """The Euclidean geometry (SGD)."""
    return Geometry("l2", "one")


def linf() -> Geometry:
    """The ℓ∞ geometry (Adam)."""
    return Geometry("linf", "singleton")


def blockwise(labels: torch.Tensor, *, name: str = "custom") -> Geometry:
    """The blockwise geometry Φ of a labelling.

    Args:
        labels: (d,) integer block id of every coordinate, ids 0..B-1 all used.
        name: partition name for records.

    Returns:
        The geometry.

    Raises:
        SmoothprobeError: labels are not a partition.
    """
    if labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point():
        raise SmoothprobeError("block labels must be a non-empty 1-D integer tensor")
    labels = labels.to(device="cpu", dtype=torch.int64)
    if int(labels.min()) < 0:
        raise SmoothprobeError("block labels must be ≥ 0")
    sizes = torch.bincount(labels)
    if bool((sizes == 0).any()):
        raise SmoothprobeError(
            "block labels must use every id 0..B-1 (relabel with torch.unique(..., "
            "return_inverse=True))"
        )
    return Geometry("block", name, labels, sizes)


def resolve_geometry(spec, *, d: int | None = None) -> Geometry:
    """Turns ``"l2"``, ``"linf"``, a Partition, a label tensor or a Geometry into a Geometry.

    Args:
        spec: the geometry.
        d: expected dimension (checked for partitions and labels).

    Returns:
        The geometry.

    Raises:
        SmoothprobeError: unknown name, or labels of the wrong length.
    """
    if isinstance(spec, Geometry):
        geometry = spec
    elif isinstance(spec, str):
        table = {"l2": l2, "linf": linf}
        if spec not in table:
            raise SmoothprobeError(
                f"unknown geometry {spec!r}: use l2, linf, or pass a Partition for blockwise"
            )
        geometry = table[spec]()
    elif isinstance(spec, torch.Tensor):
        geometry = blockwise(spec)
    elif hasattr(spec, "labels") and hasattr(spec, "name"):  # smoothprobe.partitions.Partition
        geometry = blockwise(spec.labels, name=spec.name)
    else:
        raise SmoothprobeError(
            f"cannot read a geometry from {type(spec).__name__}: give 'l2', 'linf', a Partition "
            "or a (d,) tensor of block labels"
        )
    if d is not None:
        geometry._check_d(d)
    return geometry
