"""Probabilistic upper bounds on extreme eigenvalues from a Lanczos run (Kuczyński–Woźniakowski).

A Ritz value never exceeds λ_max, so it is a certified *lower* bound; θ + r is an upper bound
only if the Krylov space did not miss the top eigenvector. From a start drawn uniformly on the
unit sphere (a normalised Gaussian) that miss is unlikely, and Kuczyński & Woźniakowski (SIAM J.
Matrix Anal. Appl. 13(4), 1992, Thm 4.2) bound its probability: for a PSD matrix of size d and k
Lanczos steps,

    P(θ_k ≤ (1 − ε)·λ_max) ≤ 1.648·√d·exp(−√ε·(2k − 1)).

A symmetric H is made PSD by a shift s ≥ −λ_min (Krylov spaces are shift-invariant, so the Ritz
values shift with it). The shift comes from the same run: K_k(H, q) contains K_⌈k/2⌉(H², q),
and the largest Rayleigh quotient of H² over K_k(H, q) is σ_max(T̃)², T̃ = [T_k; β_k e_kᵀ] the
(k + 1) × k Lanczos matrix, so the bound applied to the PSD H² bounds ‖H‖₂ ≥ −λ_min. The three
bounds (‖H‖₂, λ_max, −λ_min) share the failure probability δ in thirds (union bound).

Valid only for a uniformly random start vector and a run in (near-)exact arithmetic, i.e. with
full re-orthogonalisation; a gradient or mixed start voids the guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KW_CONSTANT = 1.648


def kw_epsilon(*, d: int, steps: int, failure_prob: float) -> float:
    """The relative error ε that k Lanczos steps miss with probability ≤ ``failure_prob``.

    Returns ``math.inf`` when the bound says nothing (ε ≥ 1: too few steps for this d and δ).

    >>> round(kw_epsilon(d=10**6, steps=100, failure_prob=1e-3), 4)
    0.0052
    """
    if d < 1 or steps < 1:
        raise ValueError(f"need d ≥ 1 and steps ≥ 1, got d={d}, steps={steps}")
    if not 0 < failure_prob < 1:
        raise ValueError(f"failure_prob must lie in (0, 1), got {failure_prob}")
    log_term = math.log(KW_CONSTANT * math.sqrt(d) / failure_prob)
    if log_term <= 0:
        return 0.0
    eps = (log_term / (2 * steps - 1)) ** 2
    return eps if eps < 1 else math.inf


@dataclass(frozen=True)
class KrylovBounds:
    """Bounds that hold together with probability ≥ 1 − ``failure_prob``.

    Attributes:
        lambda_max_upper: upper bound on λ_max.
        lambda_min_lower: lower bound on λ_min.
        norm_upper: upper bound on ‖H‖₂ = max(λ_max, −λ_min).
        failure_prob: probability that any of the three fails.
        steps: Lanczos steps the bounds rest on.
    """

    lambda_max_upper: float
    lambda_min_lower: float
    norm_upper: float
    failure_prob: float
    steps: int


def lanczos_upper_bounds(
    alpha: Sequence[float],
    beta: Sequence[float],
    beta_last: float,
    *,
    d: int,
    failure_prob: float,
) -> KrylovBounds:
    """Probabilistic bounds on λ_max, λ_min and ‖H‖₂ from a Lanczos tridiagonal.

    Args:
        alpha: the k diagonal entries of T_k.
        beta: the k − 1 off-diagonal entries.
        beta_last: β_k = ‖w_k‖, the norm of the next (unnormalised) Lanczos vector.
        d: dimension of the operator.
        failure_prob: δ, shared by the three bounds.

    Returns:
        KrylovBounds; infinite ends when k is too small for this d and δ.
    """
    k = len(alpha)
    if k < 1 or len(beta) != k - 1:
        raise ValueError(f"need k ≥ 1 alpha and k − 1 beta, got {len(alpha)} and {len(beta)}")
    t = np.diag(np.asarray(alpha, dtype=np.float64))
    if k > 1:
        off = np.asarray(beta, dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    theta = np.linalg.eigvalsh(t)
    extended = np.vstack([t, np.zeros((1, k))])
    extended[k, k - 1] = float(beta_last)
    sigma = float(np.linalg.svd(extended, compute_uv=False)[0])

    third = failure_prob / 3
    eps_sq = kw_epsilon(d=d, steps=math.ceil(k / 2), failure_prob=third)
    norm_from_square = sigma / math.sqrt(1 - eps_sq) if eps_sq < 1 else math.inf
    eps = kw_epsilon(d=d, steps=k, failure_prob=third)
    shift = norm_from_square
    if math.isfinite(eps) and math.isfinite(shift):
        lam_max_upper = float(theta[-1]) + (float(theta[-1]) + shift) * eps / (1 - eps)
        lam_min_lower = float(theta[0]) - (shift - float(theta[0])) * eps / (1 - eps)
    else:
        lam_max_upper, lam_min_lower = math.inf, -math.inf
    norm_upper = min(norm_from_square, max(lam_max_upper, -lam_min_lower))
    return KrylovBounds(
        lambda_max_upper=lam_max_upper,
        lambda_min_lower=lam_min_lower,
        norm_upper=norm_upper,
        failure_prob=failure_prob,
        steps=k,
    )
