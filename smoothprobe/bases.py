"""Changes of basis θ = R x with R orthogonal (MATH.md §3): seeded, invertible, matrix-free.

A :class:`Basis` applies R and Rᵀ to blocks of vectors: ``to_params(x) = R x`` maps rotated
coordinates to parameter coordinates, ``from_params(g) = Rᵀ g`` maps a parameter-space vector
(a gradient or an HVP) back. The Hessian in the new coordinates is Rᵀ H R
(:class:`~smoothprobe.rotated_operator.RotatedOperator`). All maps work on (d,) or (k, d)
tensors and compute in float32 or better: the result dtype is ``promote(input dtype, float32)``.

============================  ================================================================
spec (``build_basis``)         R
============================  ================================================================
``identity``                   I
``permutation``                a uniformly random coordinate permutation P
``sign``                       a random diagonal of ±1
``hadamard``                   randomized Hadamard: P·D·W·D (see :class:`HadamardBasis`)
``block-haar:K``               block diagonal, Haar-random K×K blocks on consecutive chunks
``matrix``                     W ↦ U W Vᵀ per ≥2-D tensor, Haar U, V (see :class:`MatrixBasis`)
``a+b``                        the composition R_a·R_b (b applied first in ``to_params``)
============================  ================================================================

Any component accepts ``:seed=N`` to override its seed, so a basis name (e.g.
``"hadamard:seed=3"``) rebuilds the same basis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout

BASIS_KINDS = ("identity", "hadamard", "block-haar:K", "matrix", "permutation", "sign")
MAX_BLOCK_HAAR_ENTRIES = 1 << 28  # stored rotation entries (float64) before we refuse
_FWHT_FACTOR_BITS = 5  # W_n applied as a Kronecker product of 32×32 Hadamard factors


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


def haar(n: int, generator: torch.Generator, *, count: int | None = None) -> torch.Tensor:
    """Haar-random orthogonal matrices (QR of a Gaussian with the sign fix), float64, CPU.

    Args:
        n: size.
        generator: CPU generator.
        count: number of matrices (a (count, n, n) batch), or None for one (n, n).

    Returns:
        The matrix or batch.
    """
    shape = (n, n) if count is None else (count, n, n)
    g = torch.randn(shape, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    sign[sign == 0] = 1
    return q * sign.unsqueeze(-2)


def random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    """n random ±1 as float32 (CPU)."""
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float32) * 2 - 1


class _Cache:
    """Per (device, dtype) copies of a basis' tensors."""

    def __init__(self):
        self._store: dict[tuple, torch.Tensor] = {}

    def get(self, key: str, tensor: torch.Tensor, like: torch.Tensor, *, cast: bool = True):
        dtype = like.dtype if cast else tensor.dtype
        k = (key, like.device, dtype)
        if k not in self._store:
            self._store[k] = tensor.to(device=like.device, dtype=dtype)
        return self._store[k]


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


def _hadamard_factor(bits: int, like: torch.Tensor) -> torch.Tensor:
    """The normalized 2^bits × 2^bits Sylvester Hadamard matrix."""
    h = torch.ones(1, 1, dtype=like.dtype, device=like.device)
    for _ in range(bits):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(h.shape[0])


def fwht(x: torch.Tensor, factors: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Normalized Walsh–Hadamard transform W x = H_n x / √n along the last dim (n a power of 2).

    H_n = H_{2^a} ⊗ H_{2^b} ⊗ ...: one batched matmul per factor of at most 32×32, so the cost is
    O(n log n) with a small constant (≈ 64 n flops per 5 levels) and log₃₂ n passes over memory.

    Args:
        x: (..., n) tensor, n a power of 2.
        factors: optional cache of Hadamard factors keyed by bit count (same dtype/device as x).

    Returns:
        (..., n) tensor; W is symmetric and orthogonal, so ``fwht(fwht(x)) == x``.
    """
    n = x.shape[-1]
    m = n.bit_length() - 1
    if 1 << m != n:
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    rows = y.shape[0]
    factors = {} if factors is None else factors
    done = 0
    while done < m:
        bits = min(_FWHT_FACTOR_BITS, m - done)
        if bits not in factors:
            factors[bits] = _hadamard_factor(bits, y)
        inner = 1 << done
        outer = n // (inner << bits)
        y = torch.matmul(factors[bits], y.reshape(rows * outer, 1 << bits, inner))
        done += bits
    return y.reshape(*lead, n)


class HadamardMap:
    """A seeded randomized-Hadamard orthogonal map of R^n acting on the last dim.

    For n = 2^m: R = P·D₁·W·D₀ (W the normalized Walsh–Hadamard matrix, D random signs, P a random
    permutation), exactly MATH.md §3. For other n, padding R^n into R^{2^(m+1)} would not be
    orthogonal on R^n, so instead W acts on windows of w = 2^⌊log₂ n⌋ coordinates that overlap:
    R = P·D₃·W_tail·D₂·W_head·D₁·W_tail·D₀, where W_head applies W to coordinates [0, w) and W_tail
    to [n − w, n) (identity elsewhere). Every factor is orthogonal on R^n, hence so is R; the
    windows overlap (2w > n), so every output coordinate depends on every input coordinate.
    Cost O(n log n): at most three transforms of size w ≤ n.

    Args:
        n: dimension.
        generator: CPU generator to draw signs and the permutation from.
    """

    def __init__(self, n: int, generator: torch.Generator):
        self.n = n
        self.width = 1 << (n.bit_length() - 1)
        self.windows = (0,) if self.width == n else (n - self.width, 0, n - self.width)
        self.signs = torch.stack([random_signs(n, generator) for _ in range(len(self.windows) + 1)])
        self.perm = torch.randperm(n, generator=generator)
        self.inverse_perm = torch.argsort(self.perm)
        self._cache = _Cache()
        self._factors: dict[tuple, dict[int, torch.Tensor]] = {}

    def _window(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Applies W to x[..., start:start+w] in place (x must be a fresh tensor) and returns x."""
        factors = self._factors.setdefault((x.device, x.dtype), {})
        stop = start + self.width
        if start == 0 and stop == self.n:
            return fwht(x, factors)
        x[..., start:stop] = fwht(x[..., start:stop], factors)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns R x along the last dim."""
        signs = self._cache.get("s", self.signs, x)
        for j, start in enumerate(self.windows):
            x = self._window(x * signs[j], start)
        x = x * signs[-1]
        return x[..., self._cache.get("p", self.perm, x, cast=False)]

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Returns Rᵀ x along the last dim."""
        signs = self._cache.get("s", self.signs, x)
        x = x[..., self._cache.get("ip", self.inverse_perm, x, cast=False)] * signs[-1]
        for j in reversed(range(len(self.windows))):
            x = self._window(x, self.windows[j]).mul_(signs[j])
        return x


class DenseMap:
    """An orthogonal map given by a dense matrix Q (float64, CPU), acting on the last dim."""

    def __init__(self, q: torch.Tensor):
        self.q = q
        self._cache = _Cache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._cache.get("q", self.q, x).T

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._cache.get("q", self.q, x)


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


def _derived_seed(seed: int, index: int, count: int) -> int:
    """Component seeds of a composition: the seed itself for one component, else mixed."""
    return seed if count == 1 else (seed * 1_000_003 + 7_919 * (index + 1)) % (1 << 62)


def _parse_component(text: str, layout: ParameterLayout, seed: int) -> Basis:
    """One component ``kind[:arg][:seed=N][:vectors=identity]``."""
    parts = [p for p in text.strip().split(":") if p]
    if not parts:
        raise SmoothprobeError("empty basis; use one of " + "|".join(BASIS_KINDS))
    kind, args, options = parts[0], [], {}
    for p in parts[1:]:
        if "=" in p:
            key, _, value = p.partition("=")
            options[key] = value
        else:
            args.append(p)
    if "seed" in options:
        seed = _int_option(options.pop("seed"), "seed", text)
    vectors = options.pop("vectors", "haar")
    if options:
        raise SmoothprobeError(
            f"basis {text!r}: unknown option(s) {sorted(options)}; "
            "only seed=N (and vectors=identity for matrix)"
        )
    d = layout.d
    if kind == "block-haar":
        if len(args) != 1:
            raise SmoothprobeError(f"basis {text!r} needs a chunk size, e.g. block-haar:64")
        return BlockHaarBasis(d, chunk=_int_option(args[0], "chunk size", text), seed=seed)
    if args:
        raise SmoothprobeError(f"basis {text!r}: {kind} takes no argument")
    if kind == "matrix":
        return MatrixBasis(layout, seed=seed, vectors=vectors)
    simple = {
        "identity": lambda: IdentityBasis(d),
        "hadamard": lambda: HadamardBasis(d, seed=seed),
        "permutation": lambda: PermutationBasis(d, seed=seed),
        "sign": lambda: SignBasis(d, seed=seed),
    }
    if kind not in simple:
        raise SmoothprobeError(
            f"unknown basis {kind!r}; use " + "|".join(BASIS_KINDS) + " (join with '+' to compose)"
        )
    return simple[kind]()


def _int_option(value: str, what: str, text: str) -> int:
    try:
        out = int(value)
    except ValueError:
        out = -1
    if out < 0:
        raise SmoothprobeError(
            f"basis {text!r}: {what} must be a non-negative integer, got {value!r}"
        )
    return out


def build_basis(spec: str, layout: ParameterLayout, *, seed: int = 0) -> Basis:
    """Parses a CLI ``--basis`` spec.

    Args:
        spec: ``identity``, ``hadamard``, ``block-haar:K``, ``matrix``, ``permutation`` or
            ``sign``; components joined by ``+`` compose (R = R₁·R₂, the last applied first);
            ``:seed=N`` on a component overrides its seed (basis names round-trip).
        layout: the parameter layout (d, and the tensors for ``matrix``).
        seed: seed; components of a composition get distinct seeds derived from it.

    Returns:
        The basis.

    Raises:
        SmoothprobeError: unknown kind, missing or bad chunk size, bad seed.
    """
    if not isinstance(seed, int) or seed < 0:
        raise SmoothprobeError(f"seed={seed!r}: use a non-negative integer")
    texts = (spec or "").split("+")
    bases = [
        _parse_component(t, layout, _derived_seed(seed, i, len(texts))) for i, t in enumerate(texts)
    ]
    return bases[0] if len(bases) == 1 else ComposedBasis(bases)
