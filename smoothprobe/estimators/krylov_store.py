"""Storage of a Krylov basis in bounded memory: rows in a chosen dtype, products chunked.

Lanczos keeps its orthonormal basis Q (m × d) to re-orthogonalize every new vector against it.
At d = 124M one float64 row is 1 GB, so the basis is the largest object of a run: this store
holds at most ``capacity`` rows (thick restart keeps it there), in ``dtype`` (float64, or float32
for half the memory), and never materializes a float64 copy of Q — every product with Q runs
over row chunks with a float64 temporary of at most ``chunk_rows`` rows.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_BYTES = 64 << 20  # float64 temporaries of at most this many bytes per product
REORTH_KEEP = 0.5**0.5  # DGKS: a second Gram–Schmidt pass only when ‖w‖ fell below this share


class BasisStore:
    """At most ``capacity`` orthonormal rows of length d, stored in ``dtype``.

    Args:
        capacity: rows the store can hold.
        d: row length.
        dtype: storage dtype (float64 or float32).
        device: storage device.
    """

    def __init__(self, capacity: int, d: int, *, dtype: torch.dtype, device: torch.device):
        self.rows = torch.empty(capacity, d, dtype=dtype, device=device)
        self.size = 0
        self.d = d
        self.chunk_cols = max(1, CHUNK_BYTES // (8 * max(1, capacity)))
        # float32 rows are widened chunk by chunk into one reused float64 buffer: a fresh 64 MB
        # temporary per chunk was page-faulted in every time (~8 s per step at d = 124M)
        self._wide = None
        if dtype != torch.float64:
            cols = min(d, self.chunk_cols)
            self._wide = torch.empty(capacity, cols, dtype=torch.float64, device=device)

    @property
    def capacity(self) -> int:
        return self.rows.shape[0]

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size()

    def append(self, v: torch.Tensor) -> torch.Tensor:
        """Stores v (float64, unit) and returns the stored row (a view in the storage dtype: what
        Q really holds)."""
        self.rows[self.size] = v
        self.size += 1
        return self.rows[self.size - 1]

    def row(self, i: int) -> torch.Tensor:
        return self.rows[i].to(torch.float64)

    def _chunk(self, a: int, b: int) -> torch.Tensor:
        """Columns a:b of the stored rows as float64 (a view, or the reused wide buffer)."""
        rows = self.rows[: self.size, a:b]
        if self._wide is None:
            return rows
        return self._wide[: self.size, : b - a].copy_(rows)

    def coefficients(self, w: torch.Tensor) -> torch.Tensor:
        """Qᵀ-products Q w (size,) in float64, without a float64 copy of Q."""
        out = torch.zeros(self.size, dtype=torch.float64, device=w.device)
        for a in range(0, self.d, self.chunk_cols):
            b = min(self.d, a + self.chunk_cols)
            out += self._chunk(a, b) @ w[a:b]
        return out

    def subtract(self, w: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """w − Qᵀ c in place on w (float64)."""
        for a in range(0, self.d, self.chunk_cols):
            b = min(self.d, a + self.chunk_cols)
            w[a:b] -= coeffs @ self._chunk(a, b)
        return w

    def orthogonalize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Removes from w its components along the stored rows (Gram–Schmidt, a second pass when
        the first removed more than 1 − ``REORTH_KEEP`` of w's norm).

        Returns:
            (w minus its projection, the total projection coefficients (size,)).
        """
        if self.size == 0:
            return w, torch.zeros(0, dtype=torch.float64, device=w.device)
        before = float(w.norm())
        c1 = self.coefficients(w)
        w = self.subtract(w, c1)
        if float(w.norm()) > REORTH_KEEP * before:  # little cancellation: one pass is exact
            return w, c1  # enough (Daniel–Gragg–Kaufman–Stewart); else a second pass
        c2 = self.coefficients(w)
        return self.subtract(w, c2), c1 + c2

    def rotate(self, vectors: np.ndarray) -> None:
        """Replaces the rows by Sᵀ Q (S: (size, l) columns, l ≤ size) in place, chunk by chunk."""
        s = torch.as_tensor(vectors, dtype=torch.float64, device=self.rows.device)
        keep = s.shape[1]
        for a in range(0, self.d, self.chunk_cols):
            b = min(self.d, a + self.chunk_cols)
            block = s.T @ self._chunk(a, b)
            self.rows[:keep, a:b] = block.to(self.rows.dtype)
        self.size = keep

    def matrix(self) -> torch.Tensor:
        """The stored rows (size, d) as float64 (allocates size·d·8 bytes)."""
        return self.rows[: self.size].to(torch.float64)
