"""The Hessian restricted to some parameter tensors: H_SS = Pᵀ H P (P embeds those coordinates).

``RestrictedOperator(operator, names)`` acts on the coordinates of the named tensors only (the
others held at zero): one HVP per probe. Its largest eigenvalue magnitude is at most ‖H‖₂
(a principal submatrix), and every norm of the spectral geometry's matrix part is a norm of H_SS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import Operator


class RestrictedOperator:
    """Pᵀ H P for the coordinates of some tensors of the operator's layout.

    Args:
        operator: H on all d coordinates.
        names: tensor names (canonical) to keep, in any order (kept in layout order).

    Raises:
        SmoothprobeError: a name that is not in the layout, or no name.
    """

    def __init__(self, operator: Operator, names: Sequence[str]):
        wanted = set(names)
        known = {s.name for s in operator.layout.slots}
        missing = sorted(wanted - known)
        if missing or not wanted:
            raise SmoothprobeError(
                f"cannot restrict to {missing[:3] or 'no tensors'}: name tensors of the layout"
            )
        slots = [s for s in operator.layout.slots if s.name in wanted]
        self.operator = operator
        self.index = torch.cat([torch.arange(s.start, s.stop) for s in slots]).to(operator.device)
        self.layout = ParameterLayout.from_shapes(
            [(s.name, s.shape) for s in slots], aliases={s.name: s.aliases for s in slots}
        )
        self.d = self.layout.d
        self.dtype = operator.dtype
        self.device = operator.device
        self.cost = operator.cost

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        """(k, d_S) → (k, d): zeros off the kept coordinates."""
        k, d = vectors.shape[0], self.operator.d
        out = torch.zeros(k, d, dtype=vectors.dtype, device=self.device)
        out[:, self.index] = vectors
        return out

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """Returns (H v)_S for v supported on S, each row ((k, d_S) or (d_S,))."""
        single = vectors.ndim == 1
        block = vectors.reshape(1, -1) if single else vectors
        out = self.operator.matvec(self.embed(block.to(self.dtype)))[:, self.index]
        return out.reshape(-1) if single else out
