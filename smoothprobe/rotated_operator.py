"""The Hessian in rotated coordinates: H_R = Rᵀ H R for θ = R x (MATH.md §3).

``RotatedOperator(operator, basis).matvec(V)`` = Rᵀ H R V: one HVP per probe plus two
transforms, so every estimator runs unchanged in any basis.

Layout and partitions in a rotated basis: the rotated operator keeps the original layout, i.e.
rotated coordinate i carries the tensor label of parameter coordinate i. For bases that act
inside tensors (identity, sign, ``matrix``: W ↦ U W Vᵀ) this is exact: the rotated coordinates of
a tensor are still that tensor's, so tensor/layer partitions keep their meaning (rows and heads
keep their positions but no longer their neurons). For mixing bases (``hadamard``,
``block-haar``, ``permutation``) a rotated coordinate mixes many tensors; a partition then means
"blocks of the same sizes at the same positions of the rotated vector", which is how the seed
paper compares Adam in rotated coordinates (same coordinate-wise rule, new coordinates). The
basis' ``mixes_tensors`` flag says which case applies.
"""

from __future__ import annotations

import torch

from smoothprobe.bases import Basis, compute_dtype
from smoothprobe.errors import SmoothprobeError
from smoothprobe.linear_operator import Operator


class RotatedOperator:
    """Rᵀ H R for an operator H and an orthogonal basis R.

    Vectors in and out are in ``compute_dtype(operator.dtype)`` (float32 or better); the inner
    operator sees its own dtype. The cost counter is the inner operator's (one HVP per probe).

    Args:
        operator: the operator H (parameter coordinates).
        basis: the change of basis θ = R x.

    Raises:
        SmoothprobeError: the basis and the operator have different dimensions.
    """

    def __init__(self, operator: Operator, basis: Basis):
        if basis.d != operator.d:
            raise SmoothprobeError(
                f"basis {basis.name!r} has d={basis.d:,} but the model has "
                f"d={operator.d:,}; build the basis from the same layout"
            )
        self.operator = operator
        self.basis = basis
        self.d = operator.d
        self.dtype = compute_dtype(operator.dtype)
        self.device = operator.device
        self.layout = operator.layout
        self.cost = operator.cost

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """Returns Rᵀ H R v for each row v ((k, d) or (d,))."""
        x = self.basis.to_params(vectors.to(self.dtype))
        hx = self.operator.matvec(x.to(self.operator.dtype))
        return self.basis.from_params(hx.to(self.dtype)).to(self.dtype)

    def gradient(self) -> torch.Tensor:
        """Rᵀ∇L(θ): the gradient in rotated coordinates (needs an inner ``gradient()``).

        Raises:
            AttributeError: the inner operator has no gradient (e.g. a dense matrix).
        """
        g = self.operator.gradient()
        return self.basis.from_params(g.to(self.dtype).reshape(1, -1)).reshape(-1)
