"""Seeded orthogonal maps of R^n acting on the last dim: the building blocks of ``bases``.

Haar-random matrices (``haar``, ``DenseMap``), random signs, the fast normalized Walsh–Hadamard
transform (``fwht``) and the randomized Hadamard map (``HadamardMap``, MATH.md §3), each
computed in O(n log n) or one matmul, with per (device, dtype) copies of their tensors
(``_Cache``).
"""

from __future__ import annotations

import math

import torch

_FWHT_FACTOR_BITS = 5  # W_n applied as a Kronecker product of 32×32 Hadamard factors


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
