"""Ritz values of a Lanczos projection: residuals, Kato–Temple error estimates, stopping rule."""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh_tridiagonal


def ritz_pairs(
    alpha: list[float], beta: list[float], beta_last: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposes T_m and returns Ritz values, residuals and first components.

    Args:
        alpha: the m diagonal entries of T_m.
        beta: the m − 1 off-diagonal entries.
        beta_last: β_m = ‖w_m‖, the norm of the next (unnormalized) Lanczos vector.

    Returns:
        (θ ascending (m,), residuals β_m |s_{m,i}| (m,), first components s_{1,i} (m,)).
    """
    if len(alpha) == 1:
        return np.array(alpha), np.array([abs(beta_last)]), np.array([1.0])
    theta, s = eigh_tridiagonal(np.asarray(alpha), np.asarray(beta))
    return theta, abs(beta_last) * np.abs(s[-1, :]), s[0, :]


def kato_temple_errors(theta: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Estimates |λ − θ_i| by min(r_i, r_i²/gap_i), the gap taken from neighbouring Ritz values.

    The eigenvalue next above θ_i is estimated from below by θ_{i+1} − r_{i+1}, the one below
    from above by θ_{i−1} + r_{i−1}; the top (bottom) Ritz value has no eigenvalue above (below)
    to worry about. A single Ritz value has no neighbour at all: its estimate is r.

    Args:
        theta: Ritz values, ascending.
        residuals: their residuals.

    Returns:
        Error estimates, same shape.
    """
    if len(theta) == 1:  # no neighbour: the gap is unknown
        return residuals.copy()
    inf = np.full(1, np.inf)
    above = np.concatenate([theta[1:] - residuals[1:], inf]) - theta
    below = theta - np.concatenate([-inf, theta[:-1] + residuals[:-1]])
    gap = np.minimum(above, below)
    with np.errstate(divide="ignore", invalid="ignore"):
        temple = np.where(gap > residuals, residuals**2 / np.where(gap > 0, gap, 1.0), np.inf)
    return np.minimum(residuals, temple)


def wanted_indices(m: int, *, which: str, top_k: int) -> list[int]:
    """Indices (into ascending Ritz values) of the eigenpairs the stopping rule watches."""
    wanted = set()
    if which in ("both", "largest"):
        wanted.update(range(max(0, m - top_k), m))
    if which in ("both", "smallest"):
        wanted.add(0)
    return sorted(wanted)


def meets_tolerance(
    theta: np.ndarray,
    residuals: np.ndarray,
    errors: np.ndarray,
    *,
    tol: float,
    floor: float,
    criterion: str,
) -> np.ndarray:
    """Per Ritz pair: r ≤ tol·|θ| (``"residual"``) or error ≤ tol·|θ| (``"gap"``), or r ≤ floor."""
    measure = residuals if criterion == "residual" else errors
    return (measure <= tol * np.abs(theta)) | (residuals <= floor)
