"""The dual certificate of the H∞ relaxation: an upper bound on λ_max(A − Diag(u)) (MATH.md §7).

For A = [[0, H], [H, 0]] (2d × 2d) and any u ∈ R^{2d}, every z ∈ {±1}^{2d} has
zᵀAz = zᵀ(A − Diag(u))z + Σu ≤ 2d·λ_max(A − Diag(u)) + Σu, so H∞ = ½·max zᵀAz ≤ ½Σu + d·λ⁺ for
any λ⁺ ≥ λ_max(A − Diag(u)). Two ways to get λ⁺:

- exact: materialise H with d HVPs and take the largest eigenvalue of the dense 2d × 2d matrix
  (small d only); the bound is certified (up to floating point).
- Lanczos: ``steps`` steps on M = A − Diag(u) (2 HVPs per step, batched) from a uniformly random
  unit start, with full reorthogonalisation, then the Kuczyński–Woźniakowski bound. For a PSD
  matrix P of size n and Lanczos from a uniformly random start, P(θ_k < (1 − ε)·λ_max(P)) ≤
  1.648·√n·e^{−√ε(2k−1)}. Applied to the *fixed* PSD matrix P = M + c*·I with c* = −λ_min(M)
  (Ritz values shift with it), with probability ≥ 1 − δ₁:
  λ_max(M) ≤ θ_max + ε/(1 − ε)·(θ_max + c*) ≤ θ_max + ε/(1 − ε)·(θ_max + c) for any c ≥ c*.
  The shift c is an upper bound on ‖M‖ ≥ c* from the same run (a KW bound on M²); a union
  bound covers both (``krylov_bound.lanczos_upper_bounds`` splits δ in thirds).
  Memory: the Lanczos basis, (steps + 1)·2d float64 numbers (e.g. 1,001 × 57,088 × 8 B ≈ 457 MB
  for d = 28,544), plus O(steps) for the tridiagonal matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smoothprobe.estimators.krylov_bound import kw_epsilon, lanczos_upper_bounds


@dataclass(frozen=True)
class EigenBound:
    """An upper bound on λ_max(A − Diag(u)).

    Attributes:
        lambda_upper: the bound λ⁺.
        lambda_estimate: the largest Ritz value (exact eigenvalue for the exact method).
        failure_prob: probability that λ⁺ < λ_max (0 for the exact method).
        method: ``"exact"`` or ``"lanczos"``.
        steps: Lanczos steps (0 for exact).
        shift: the upper bound c on ‖A − Diag(u)‖ used as the PSD shift (Lanczos).
        epsilon: the KW relative error ε at failure probability δ₁ (Lanczos).
        hvps: HVPs used.
    """

    lambda_upper: float
    lambda_estimate: float
    failure_prob: float
    method: str
    steps: int
    shift: float
    epsilon: float
    hvps: int


def _split_apply(operator, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(A − Diag(u))·z for z = (a, b) ∈ R^{2d}: (H b − u_a·a, H a − u_b·b), one 2-row matvec."""
    d = operator.d
    a, b = z[:d], z[d:]
    block = torch.stack([b, a]).to(dtype=operator.dtype, device=operator.device)
    images = operator.matvec(block).to(torch.float64)
    return torch.cat([images[0], images[1]]) - u * z


def exact_lambda_max(operator, u: torch.Tensor, *, chunk_size: int = 64) -> EigenBound:
    """λ_max(A − Diag(u)) from the dense H (d HVPs, O(d²) memory, O(d³) time).

    Args:
        operator: symmetric operator.
        u: (2d,) certificate.
        chunk_size: probes per ``matvec`` call.
    """
    from smoothprobe.linear_operator import dense_matrix

    hvps0 = operator.cost.hvps
    h = dense_matrix(operator, chunk=chunk_size).cpu()
    h = (h + h.T) / 2
    d = operator.d
    a = torch.zeros(2 * d, 2 * d, dtype=torch.float64)
    a[:d, d:] = h
    a[d:, :d] = h
    a -= torch.diag(u.cpu().to(torch.float64))
    top = float(torch.linalg.eigvalsh(a)[-1])
    # eigvalsh is backward stable: the error is a few ulps of ‖A − Diag(u)‖.
    slack = 64 * torch.finfo(torch.float64).eps * float(torch.linalg.matrix_norm(a, ord=2))
    return EigenBound(top + slack, top, 0.0, "exact", 0, 0.0, 0.0, operator.cost.hvps - hvps0)


def lanczos_lambda_max(
    operator,
    u: torch.Tensor,
    *,
    steps: int,
    failure_prob: float,
    generator: torch.Generator,
) -> EigenBound:
    """Probabilistic upper bound on λ_max(A − Diag(u)) from ``steps`` Lanczos steps (2·steps HVPs).

    Args:
        operator: symmetric operator (H).
        u: (2d,) certificate.
        steps: Lanczos steps (fixed in advance: the KW bound needs a fixed number of steps).
        failure_prob: δ, shared by the λ_max bound and the shift's norm bound (union bound).
        generator: source of the uniformly random start vector.
    """
    hvps0 = operator.cost.hvps
    n = 2 * operator.d
    u = u.to(torch.float64)
    basis = torch.zeros(steps + 1, n, dtype=torch.float64)
    start = torch.randn(n, generator=generator, dtype=torch.float64, device=generator.device)
    basis[0] = start.cpu() / start.norm().cpu()
    alpha, beta = [], []
    beta_last, scale = 0.0, 0.0
    for k in range(steps):
        w = _split_apply(operator, basis[k].to(operator.device), u.to(operator.device)).cpu()
        alpha.append(float(basis[k] @ w))
        w -= alpha[-1] * basis[k]
        if k:
            w -= beta[-1] * basis[k - 1]
        # Full reorthogonalisation (one classical Gram–Schmidt pass against every earlier vector
        # after the three-term recurrence; a second pass when the norm dropped by half or more).
        before = float(w.norm())
        w -= basis[: k + 1].T @ (basis[: k + 1] @ w)
        norm = float(w.norm())
        if norm < 0.5 * before:
            w -= basis[: k + 1].T @ (basis[: k + 1] @ w)
            norm = float(w.norm())
        scale = max(scale, abs(alpha[-1]), norm)
        if k == steps - 1:
            beta_last = norm
            break
        if norm <= 1e-12 * scale:
            break  # invariant subspace: the Ritz values are exact eigenvalues
        beta.append(norm)
        basis[k + 1] = w / norm
    del basis
    k = len(alpha)
    theta = _ritz_max(alpha, beta)
    if k < steps:
        # Breakdown: the Krylov space is invariant, so more steps would not change θ and the KW
        # bound with k → ∞ gives λ_max ≤ θ (the start has a component along the top eigenvector
        # almost surely); the slack covers the round-off of the breakdown test.
        upper = theta + 1e-9 * scale
        return EigenBound(
            upper, theta, failure_prob, "lanczos", k, 0.0, 0.0, operator.cost.hvps - hvps0
        )
    bounds = lanczos_upper_bounds(alpha, beta, beta_last, d=n, failure_prob=failure_prob)
    eps = kw_epsilon(d=n, steps=k, failure_prob=failure_prob / 3)
    return EigenBound(
        bounds.lambda_max_upper,
        theta,
        failure_prob,
        "lanczos",
        k,
        bounds.norm_upper,
        eps,
        operator.cost.hvps - hvps0,
    )


def _ritz_max(alpha: list[float], beta: list[float]) -> float:
    from scipy.linalg import eigvalsh_tridiagonal

    if len(alpha) == 1:
        return alpha[0]
    return float(eigvalsh_tridiagonal(alpha, beta[: len(alpha) - 1])[-1])
