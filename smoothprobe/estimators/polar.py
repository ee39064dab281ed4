"""Polar factors of batches of matrices: the direction Muon steps along (MATH.md §8).

For G = U Σ Vᵀ (thin SVD) the polar factor is U Vᵀ. It maximises ⟨Y, G⟩ over ‖Y‖₂ ≤ 1, and the
maximum is the nuclear norm ‖G‖_nuc = Σσ_i. Two ways to compute it:

- ``svd``: a batched float64 SVD (exact up to rounding; the default).
- ``newton-schulz``: the cubic iteration X ← 1.5X − 0.5XXᵀX from X₀ = G/‖G‖_F, which converges
  to U Vᵀ on the non-zero singular values (small σ grow by 1.5× per step, so rank-deficient
  directions may stay short). It is *checked*: the result is divided by its exact largest
  singular value (from the Gram matrix, like the SVD), so it is always feasible, ‖Y‖₂ ≤ 1, and
  ⟨Y, G⟩ ≤ ‖G‖_nuc stays a valid (possibly slightly smaller) lower value. Muon's own quintic
  coefficients are not used: they leave singular values in [0.7, 1.2], which is fine for
  training but not for a certified bound.
"""

from __future__ import annotations

import torch

from smoothprobe.errors import SmoothprobeError

POLAR_METHODS = ("svd", "newton-schulz")


def sigma_max(m: torch.Tensor) -> torch.Tensor:
    """Largest singular value of every matrix of a batch (..., a, b), float64 (..., )."""
    m = m.to(torch.float64)
    gram = m.mT @ m if m.shape[-1] <= m.shape[-2] else m @ m.mT
    gram = (gram + gram.mT) / 2
    return torch.linalg.eigvalsh(gram)[..., -1].clamp(min=0).sqrt()


def _newton_schulz(g: torch.Tensor, steps: int) -> torch.Tensor:
    norm = torch.linalg.matrix_norm(g, ord="fro", keepdim=True)
    x = g / norm.clamp(min=torch.finfo(torch.float64).tiny)
    wide = x.shape[-1] > x.shape[-2]
    if wide:
        x = x.mT
    for _ in range(steps):
        x = 1.5 * x - 0.5 * x @ (x.mT @ x)
    x = x.mT if wide else x
    top = sigma_max(x)[..., None, None]
    return torch.where(top > 1, x / top.clamp(min=1), x)


def polar_factor(
    matrices: torch.Tensor, *, method: str = "svd", steps: int = 40
) -> tuple[torch.Tensor, torch.Tensor]:
    """Polar factors Y of a batch of matrices and the values ⟨Y, G⟩.

    Args:
        matrices: (k, a, b) batch G (any float dtype; computed in float64).
        method: ``"svd"`` or ``"newton-schulz"``.
        steps: Newton–Schulz iterations.

    Returns:
        (Y (k, a, b) float64 with ‖Y_i‖₂ ≤ 1, values (k,) float64 = ⟨Y_i, G_i⟩ ≤ ‖G_i‖_nuc,
        equal to it for ``svd``).

    Raises:
        SmoothprobeError: unknown method.

    Example:
        >>> g = torch.tensor([[[3.0, 0.0], [0.0, -2.0]]], dtype=torch.float64)
        >>> y, v = polar_factor(g)
        >>> y.tolist(), float(v[0])
        ([[[1.0, 0.0], [0.0, -1.0]]], 5.0)
    """
    if method not in POLAR_METHODS:
        raise SmoothprobeError(f"polar method {method!r}: use one of {', '.join(POLAR_METHODS)}")
    g = matrices.to(torch.float64)
    if method == "svd":
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        y = u @ vh
    else:
        y = _newton_schulz(g, steps)
    values = (y * g).sum(dim=(-2, -1))
    return y, values


def nuclear_norm(matrices: torch.Tensor) -> torch.Tensor:
    """‖G_i‖_nuc for a batch (k, a, b), float64 (k,)."""
    return torch.linalg.svdvals(matrices.to(torch.float64)).sum(-1)
