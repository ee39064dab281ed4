"""The operator protocol every estimator consumes, and a dense-matrix implementation.

An operator applies a symmetric d × d matrix H (the Hessian, possibly in a rotated basis) to a
*block* of k probe vectors at once: ``matvec(V)`` with V of shape (k, d) returns H·V row-wise,
i.e. the (k, d) tensor whose row j is H v_j. Estimators are written against this protocol only,
so every estimator runs on a real model, a rotated model, or a dense test matrix.

``as_operator`` turns what a user holds (a dense tensor or array, a scipy ``LinearOperator``, a
``Problem``) into an operator; ``apply_in_chunks`` is the one chunked product every estimator
uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from smoothprobe.errors import SmoothprobeError
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


class MatmatOperator:
    """A scipy ``LinearOperator`` (or anything with ``matmat`` and a square ``shape``).

    Products go through ``matmat`` on (d, k) NumPy arrays, in float64.
    """

    def __init__(self, linear_operator, *, layout: ParameterLayout | None = None):
        shape = tuple(linear_operator.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise SmoothprobeError(f"expected a square linear operator, got shape {shape}")
        self.linear_operator = linear_operator
        self.d = int(shape[0])
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        self.layout = layout or ParameterLayout.from_shapes([("theta", (self.d,))])
        self.cost = CostCounter()

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        import numpy as np

        single = vectors.ndim == 1
        block = vectors.reshape(1, -1) if single else vectors
        self.cost.hvps += block.shape[0]
        columns = np.asarray(block.detach().to("cpu", torch.float64).numpy().T)
        out = torch.as_tensor(np.asarray(self.linear_operator.matmat(columns)).T.copy())
        out = out.to(torch.float64)
        return out.reshape(-1) if single else out


def as_operator(obj: object) -> Operator:
    """Returns an operator for a symmetric matrix, a scipy LinearOperator, a Problem or an operator.

    Args:
        obj: an ``Operator`` (returned as is), a (d, d) symmetric tensor or NumPy array, a scipy
            ``LinearOperator`` (anything with ``matmat`` and a square ``shape``), or an object
            with ``hvp_operator()`` (a ``Problem``).

    Returns:
        The operator.

    Raises:
        SmoothprobeError: a non-square or non-symmetric matrix, or an unsupported object.
    """
    if hasattr(obj, "matvec") and hasattr(obj, "d") and hasattr(obj, "cost"):
        return obj  # type: ignore[return-value]
    if type(obj).__module__ == "numpy" and hasattr(obj, "ndim"):
        obj = torch.from_numpy(obj)  # type: ignore[arg-type]
    if isinstance(obj, torch.Tensor):
        if obj.ndim != 2 or obj.shape[0] != obj.shape[1]:
            raise SmoothprobeError(f"expected a square (d, d) matrix, got shape {tuple(obj.shape)}")
        if not obj.dtype.is_floating_point:
            obj = obj.to(torch.float64)
        scale = float(obj.abs().max()) if obj.numel() else 0.0
        if float((obj - obj.T).abs().max()) > torch.finfo(obj.dtype).eps ** 0.5 * scale:
            raise SmoothprobeError(
                "the matrix is not symmetric; pass (A + A.T) / 2 if that is what you mean"
            )
        return DenseOperator(obj)
    if hasattr(obj, "hvp_operator"):
        return obj.hvp_operator()
    if hasattr(obj, "matmat") and hasattr(obj, "shape"):
        return MatmatOperator(obj)
    raise SmoothprobeError(
        f"cannot measure a {type(obj).__name__}: pass a symmetric matrix, a scipy "
        "LinearOperator, a Problem or an Operator"
    )


def apply_in_chunks(
    operator: Operator,
    probes: torch.Tensor,
    *,
    chunk_size: int,
    dtype: torch.dtype | None = torch.float64,
) -> torch.Tensor:
    """Returns H·v for each row v of ``probes``, at most ``chunk_size`` rows per ``matvec``.

    Each chunk is cast to the operator's dtype and device on the way in; the result is
    written into one (k, d) result in ``dtype`` (None: the operator's dtype), so the peak is that
    result plus one chunk of products.
    """
    out_dtype = operator.dtype if dtype is None else dtype
    k = probes.shape[0]
    if k <= chunk_size:
        chunk = probes.to(operator.device, operator.dtype)
        return operator.matvec(chunk).to(out_dtype) if k else chunk.to(out_dtype)
    out = torch.empty(k, operator.d, dtype=out_dtype, device=operator.device)
    for a in range(0, k, chunk_size):
        chunk = probes[a : a + chunk_size].to(operator.device, operator.dtype)
        out[a : a + chunk_size] = operator.matvec(chunk)
    return out
