"""The Basis protocol and its implementations: identity, permutation, sign, Hadamard, block-Haar,
per-matrix (U W Vᵀ) and composed rotations θ = R x (MATH.md §3).

``build_basis`` (``bases``) builds them from a spec string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout
from smoothprobe.orthogonal_maps import (
    DenseMap,
    HadamardMap,
    _Cache,
    haar,
    random_signs,
)

MAX_BLOCK_HAAR_ENTRIES = 1 << 28  # stored rotation entries (float64) before we refuse


@runtime_checkable
class Basis(Protocol):
    """An orthogonal change of basis of R^d.

    Attributes:
        d: dimension.
        name: record string, e.g. ``"hadamard:seed=0"``; ``build_basis(name, ...)`` rebuilds it.
        mixes_tensors: True when a rotated coordinate mixes parameters of different tensors (so
            tensor-derived partitions only keep positions and sizes, not meaning).
    """

    d: int
    name: str
    mixes_tensors: bool

    def to_params(self, x: torch.Tensor) -> torch.Tensor:
        """Returns R x for each row of x ((k, d) or (d,))."""
        ...

    def from_params(self, g: torch.Tensor) -> torch.Tensor:
        """Returns Rᵀ g for each row of g ((k, d) or (d,))."""
        ...


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype rotations compute in: ``dtype`` if at least float32, else float32."""
    return torch.promote_types(dtype, torch.float32)


class _BasisBase:
    """Shape and dtype handling shared by every basis; subclasses map (k, d) → (k, d)."""

    d: int
    name: str
    mixes_tensors: bool = False

    def _apply(self, x: torch.Tensor, fn) -> torch.Tensor:
        if x.shape[-1] != self.d or x.ndim not in (1, 2):
            raise ValueError(
                f"{self.name} acts on (k, {self.d}) or ({self.d},), got {tuple(x.shape)}"
            )
        single = x.ndim == 1
        v = x.reshape(1, -1) if single else x
        out = fn(v.to(compute_dtype(x.dtype)))
        return out.reshape(-1) if single else out

    def to_params(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, self._forward)

    def from_params(self, g: torch.Tensor) -> torch.Tensor:
        return self._apply(g, self._inverse)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} d={self.d}>"


class IdentityBasis(_BasisBase):
    """R = I."""

    def __init__(self, d: int):
        self.d, self.name = d, "identity"

    def _forward(self, x):
        return x.clone()

    _inverse = _forward


class PermutationBasis(_BasisBase):
    """R = P, a uniformly random permutation: (R x)_i = x_{π(i)}."""

    mixes_tensors = True

    def __init__(self, d: int, *, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.d, self.name, self.seed = d, f"permutation:seed={seed}", seed
        self.perm = torch.randperm(d, generator=gen)
        self.inverse_perm = torch.argsort(self.perm)
        self._cache = _Cache()

    def _forward(self, x):
        return x[:, self._cache.get("p", self.perm, x, cast=False)]

    def _inverse(self, x):
        return x[:, self._cache.get("ip", self.inverse_perm, x, cast=False)]


class SignBasis(_BasisBase):
    """R = D, a random diagonal of ±1 (R = Rᵀ)."""

    def __init__(self, d: int, *, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.d, self.name, self.seed = d, f"sign:seed={seed}", seed
        self.signs = random_signs(d, gen)
        self._cache = _Cache()

    def _forward(self, x):
        return x * self._cache.get("s", self.signs, x)

    _inverse = _forward


class HadamardBasis(_BasisBase):
    """Randomized Hadamard rotation of all d coordinates (see :class:`HadamardMap`), O(d log d)."""

    mixes_tensors = True

    def __init__(self, d: int, *, seed: int):
        self.d, self.name, self.seed = d, f"hadamard:seed={seed}", seed
        self.map = HadamardMap(d, torch.Generator().manual_seed(seed))

    def _forward(self, x):
        return self.map.forward(x)

    def _inverse(self, x):
        return self.map.inverse(x)


class BlockHaarBasis(_BasisBase):
    """Block-diagonal rotation: a Haar-random k×k block on each chunk of k consecutive coordinates.

    The last chunk has d mod k coordinates and its own Haar block; k ≥ d gives one exactly
    Haar-distributed d×d rotation. Stores d·k float64 entries (refused above 2^28).

    Args:
        d: dimension.
        chunk: chunk size k.
        seed: seed.

    Raises:
        SmoothprobeError: k < 1 or the blocks would not fit in memory.
    """

    def __init__(self, d: int, *, chunk: int, seed: int):
        if chunk < 1:
            raise SmoothprobeError(
                f"block-haar:{chunk}: the chunk size must be ≥ 1, e.g. block-haar:64"
            )
        k = min(chunk, d)
        if d * k > MAX_BLOCK_HAAR_ENTRIES:
            raise SmoothprobeError(
                f"block-haar:{chunk} at d={d:,} needs {d * k * 8 / 2**30:.1f}"
                " GiB of rotations; use a smaller chunk or the hadamard basis",
                option="basis",
            )
        gen = torch.Generator().manual_seed(seed)
        self.d, self.chunk, self.seed = d, k, seed
        self.name = f"block-haar:{k}:seed={seed}"
        self.mixes_tensors = k > 1
        self.full = d // k
        self.blocks = haar(k, gen, count=self.full)
        rest = d - self.full * k
        self.tail = haar(rest, gen) if rest else None
        self._cache = _Cache()

    def _map(self, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        k, split = self.chunk, self.full * self.chunk
        q = self._cache.get("q", self.blocks, x)
        head = x[:, :split].reshape(x.shape[0], self.full, k)
        pattern = "nji,bnj->bni" if transpose else "nij,bnj->bni"
        parts = [torch.einsum(pattern, q, head).reshape(x.shape[0], split)]
        if self.tail is not None:
            t = self._cache.get("t", self.tail, x)
            parts.append(x[:, split:] @ (t if transpose else t.T))
        return torch.cat(parts, dim=1)

    def _forward(self, x):
        return self._map(x, transpose=False)

    def _inverse(self, x):
        return self._map(x, transpose=True)


class MatrixBasis(_BasisBase):
    """Per-tensor two-sided rotations W ↦ U W Vᵀ (the seed code's "weight" rotation).

    A ≥2-D tensor of shape (m, ...) is viewed as an m × n matrix (n = prod(shape[1:]), e.g. a conv
    kernel as out × in·kh·kw) and rotated by a Haar U (m×m) on the left and a Haar V (n×n) on the
    right. A side longer than ``max_dense`` uses a randomized Hadamard map instead of a dense Haar
    matrix (memory and O(m² n) cost). 1-D tensors (biases, norm scales) get one Haar rotation
    (``vectors="haar"``, default) or are left alone (``vectors="identity"``). Rotated coordinates
    stay inside their tensor, so tensor and layer partitions keep their meaning.

    Args:
        layout: the parameter layout.
        seed: seed.
        vectors: ``"haar"`` or ``"identity"`` for 1-D tensors.
        max_dense: longest side rotated by a dense Haar matrix.

    Raises:
        SmoothprobeError: unknown ``vectors``.
    """

    def __init__(
        self, layout: ParameterLayout, *, seed: int, vectors: str = "haar", max_dense: int = 1024
    ):
        if vectors not in ("haar", "identity"):
            raise SmoothprobeError(f"vectors={vectors!r}: use 'haar' or 'identity'")
        gen = torch.Generator().manual_seed(seed)
        self.d, self.seed = layout.d, seed
        self.name = f"matrix:seed={seed}" + ("" if vectors == "haar" else ":vectors=identity")
        self.mixes_tensors = False
        self.parts = []  # (start, stop, rows, cols, left map or None, right map or None)
        for slot in layout.slots:
            rows = slot.shape[0] if slot.shape else 1
            cols = slot.numel // max(rows, 1)
            if len(slot.shape) >= 2:
                left, right = _side(rows, gen, max_dense), _side(cols, gen, max_dense)
            elif len(slot.shape) == 1 and vectors == "haar" and slot.numel > 1:
                left, right = None, _side(slot.numel, gen, max_dense)
                rows, cols = 1, slot.numel
            else:
                continue
            self.parts.append((slot.start, slot.stop, rows, cols, left, right))

    def _map(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        out = x.clone()
        k = x.shape[0]
        for start, stop, rows, cols, left, right in self.parts:
            w = x[:, start:stop].reshape(k, rows, cols)
            if right is not None:  # rows: w_i ↦ V w_i (forward) or Vᵀ w_i (inverse)
                w = right.inverse(w) if inverse else right.forward(w)
            if left is not None:  # columns: U (forward) or Uᵀ (inverse)
                wt = w.transpose(1, 2)
                w = (left.inverse(wt) if inverse else left.forward(wt)).transpose(1, 2)
            out[:, start:stop] = w.reshape(k, -1)
        return out

    def _forward(self, x):
        return self._map(x, inverse=False)

    def _inverse(self, x):
        return self._map(x, inverse=True)


def _side(n: int, gen: torch.Generator, max_dense: int):
    return DenseMap(haar(n, gen)) if n <= max_dense else HadamardMap(n, gen)


class ComposedBasis(_BasisBase):
    """R = R₁·R₂·…·R_n: ``to_params`` applies R_n first, ``from_params`` applies R₁ᵀ first."""

    def __init__(self, bases: Sequence[Basis]):
        if not bases or len({b.d for b in bases}) != 1:
            raise SmoothprobeError("composed bases must be at least one, all of the same d")
        self.bases = tuple(bases)
        self.d = bases[0].d
        self.name = "+".join(b.name for b in bases)
        self.mixes_tensors = any(b.mixes_tensors for b in bases)

    def _forward(self, x):
        for b in reversed(self.bases):
            x = b.to_params(x)
        return x

    def _inverse(self, x):
        for b in self.bases:
            x = b.from_params(x)
        return x
