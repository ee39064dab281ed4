"""Progress display for long runs: a tqdm bar on stderr that counts Hessian-vector products."""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm


class ProgressOperator:
    """Wraps an operator and advances a progress bar by the number of probes of each ``matvec``.

    Works for every estimator, since all of them go through ``matvec``.

    Args:
        operator: the operator to wrap.
        desc: label of the bar.
        total: planned number of HVPs (None: unknown).
        enabled: draw the bar (False: silent).
    """

    def __init__(self, operator, *, desc: str, total: int | None = None, enabled: bool = True):
        self.inner = operator
        self.d = operator.d
        self.dtype = operator.dtype
        self.device = operator.device
        self.layout = operator.layout
        self.cost = operator.cost
        self.desc = desc
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="hvp",
            file=sys.stderr,
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
        )

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        out = self.inner.matvec(vectors)
        self.bar.update(1 if vectors.ndim == 1 else vectors.shape[0])
        return out

    def resumed(self, hvps: int) -> None:
        """Counts ``hvps`` products a resumed run did before this process (the rate shown stays
        this process's own)."""
        if self.bar.disable:
            return
        self.bar.n += hvps
        self.bar.initial += hvps
        self.bar.last_print_n += hvps
        self.bar.refresh()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def close(self) -> None:
        self.bar.close()
