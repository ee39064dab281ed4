"""Kuczyński–Woźniakowski bounds from a finished Lanczos result (Ritz values and residuals only).

``krylov_bound.lanczos_upper_bounds`` needs the tridiagonal T_k. A ``SpectrumResult`` keeps its
Ritz values θ_i and residuals r_i = β_k|s_{k,i}| instead, and those determine T_k: a Jacobi
matrix is fixed by its eigenvalues and the last components s_{k,i} of its eigenvectors, with
β_k = ‖r‖ (Σ_i s_{k,i}² = 1). Lanczos on diag(θ) from the start s_k rebuilds T_k in reverse order
(k ≤ a few hundred: microseconds). Residuals below rounding are floored by ``lanczos``, which
can only raise the bound.

Valid only when the run started from a uniformly random direction (``lanczos(start=None)``):
a gradient or mixed start voids the guarantee.
"""

from __future__ import annotations

import math

import numpy as np

from smoothprobe.estimators.krylov_bound import KrylovBounds, lanczos_upper_bounds


def tridiagonal_from_ritz(
    theta: np.ndarray, residuals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """(alpha (k,), beta (k−1,), β_k) of the T_k with these Ritz values and residuals."""
    theta = np.asarray(theta, dtype=np.float64)
    res = np.abs(np.asarray(residuals, dtype=np.float64))
    beta_last = float(np.linalg.norm(res))
    k = theta.size
    if beta_last == 0.0:  # an invariant subspace: T_k's last row is unknown but irrelevant
        return theta.copy(), np.zeros(max(k - 1, 0)), 0.0
    q = np.zeros((k, k))
    q[0] = res / beta_last
    alpha, beta = np.zeros(k), np.zeros(max(k - 1, 0))
    for j in range(k):
        w = theta * q[j]
        alpha[j] = float(q[j] @ w)
        w -= q[: j + 1].T @ (q[: j + 1] @ w)  # full re-orthogonalization (twice)
        w -= q[: j + 1].T @ (q[: j + 1] @ w)
        if j + 1 < k:
            beta[j] = float(np.linalg.norm(w))
            if beta[j] == 0.0:
                break
            q[j + 1] = w / beta[j]
    return alpha[::-1].copy(), beta[::-1].copy(), beta_last


def ritz_upper_bounds(
    theta, residuals, *, d: int, failure_prob: float = 1e-3
) -> KrylovBounds | None:
    """KW bounds on λ_max, λ_min, ‖H‖₂ from a random-start Lanczos run's Ritz pairs.

    Args:
        theta: Ritz values (any order).
        residuals: their residuals, same order.
        d: dimension of the operator.
        failure_prob: δ shared by the three bounds.

    Returns:
        The bounds (infinite ends when too few steps for d and δ), or None without Ritz values.
    """
    order = np.argsort(np.asarray(theta, dtype=np.float64))
    theta = np.asarray(theta, dtype=np.float64)[order]
    residuals = np.asarray(residuals, dtype=np.float64)[order]
    if theta.size == 0:
        return None
    alpha, beta, beta_last = tridiagonal_from_ritz(theta, residuals)
    bounds = lanczos_upper_bounds(alpha, beta, beta_last, d=d, failure_prob=failure_prob)
    if not math.isfinite(bounds.lambda_max_upper):
        return bounds
    # never below what the run certified (the Ritz extremes)
    return KrylovBounds(
        lambda_max_upper=max(bounds.lambda_max_upper, float(theta[-1])),
        lambda_min_lower=min(bounds.lambda_min_lower, float(theta[0])),
        norm_upper=max(bounds.norm_upper, float(max(theta[-1], -theta[0]))),
        failure_prob=bounds.failure_prob,
        steps=bounds.steps,
    )
