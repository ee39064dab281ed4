"""The operator protocol every estimator consumes, and a dense-matrix implementation.

An operator applies a symmetric d × d matrix H (the Hessian, possibly in a rotated basis) to a
*block* of k probe vectors at once: ``matvec(V)`` with V of shape (k, d) returns H·V row-wise,
i.e. the (k, d) tensor whose row j is H v_j. Estimators are written against this protocol only,
so every estimator runs on a real model, a rotated model, or a dense test matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from smoothprobe.layout import ParameterLayout


@dataclass
class CostCounter:
    """Counts the work an operator has done: one HVP per probe vector, one gradient per call."""

    hvps: int = 0
    gradients: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.hvps, self.gradients


@runtime_checkable
class Operator(Protocol):
    """A symmetric linear operator on R^d applied to blocks of probes.

    Attributes:
        d: dimension.
        dtype: dtype of vectors ``matvec`` accepts and returns.
        device: device of those vectors.
        layout: parameter layout of the coordinates (tensor names and slices).
        cost: work counter, incremented by ``matvec``.
    """

    d: int
    dtype: torch.dtype
    device: torch.device
    layout: ParameterLayout
    cost: CostCounter

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """Returns H·v for each row v of ``vectors`` (shape (k, d) or (d,); same shape out)."""
        ...


class DenseOperator:
    """A dense symmetric matrix as an operator (ground truth for tests and small models).

    Args:
        matrix: (d, d) symmetric tensor.
        layout: optional parameter layout; defaults to one tensor named ``"theta"``.

    Raises:
        ValueError: when ``matrix`` is not square.
    """

    def __init__(self, matrix: torch.Tensor, *, layout: ParameterLayout | None = None):
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"DenseOperator needs a square matrix, got shape {tuple(matrix.shape)}"
            )
        self.matrix = matrix
        self.d = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.layout = layout or ParameterLayout.from_shapes([("theta", (self.d,))])
        if self.layout.d != self.d:
            raise ValueError(f"layout has d={self.layout.d} but the matrix has d={self.d}")
        self.cost = CostCounter()

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        single = vectors.ndim == 1
        block = vectors.reshape(1, -1) if single else vectors
        self.cost.hvps += block.shape[0]
        out = block.to(self.dtype) @ self.matrix  # H symmetric: (V H)_j = H v_j
        return out.reshape(-1) if single else out

    def dense(self) -> torch.Tensor:
        """Returns the matrix itself."""
        return self.matrix


def dense_matrix(
    operator: Operator, *, chunk: int = 64, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Materializes an operator as a dense matrix by applying it to identity columns.

    Args:
        operator: any operator.
        chunk: probes per ``matvec`` call.
        dtype: dtype of the returned matrix.

    Returns:
        (d, d) tensor; row j is H e_j.
    """
    d = operator.d
    rows = []
    for start in range(0, d, chunk):
        stop = min(d, start + chunk)
        eye = torch.zeros(stop - start, d, dtype=operator.dtype, device=operator.device)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1
        rows.append(operator.matvec(eye).to(dtype))
    return torch.cat(rows)
