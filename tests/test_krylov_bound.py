"""The Kuczyński–Woźniakowski bounds hold at their stated failure probability (many seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from smoothprobe.estimators.krylov_bound import kw_epsilon, lanczos_upper_bounds


def lanczos_tridiagonal(a: np.ndarray, steps: int, rng: np.random.Generator):
    """Plain Lanczos with full re-orthogonalisation from a uniformly random start."""
    d = a.shape[0]
    q = rng.standard_normal(d)
    basis = [q / np.linalg.norm(q)]
    alpha, beta = [], []
    for j in range(steps):
        w = a @ basis[j]
        alpha.append(float(basis[j] @ w))
        for _ in range(2):
            w -= np.stack(basis).T @ (np.stack(basis) @ w)
        b = float(np.linalg.norm(w))
        if j == steps - 1:
            return alpha, beta, b
        beta.append(b)
        basis.append(w / b)
    raise AssertionError("unreachable")


def spiked(d: int, rng: np.random.Generator, *, top: float, negative: bool) -> np.ndarray:
    """A bulk on (0, 1) (or (−1, 1)) with one eigenvalue ``top`` in a random direction."""
    low = -1.0 if negative else 0.0
    eig = rng.uniform(low, 1.0, d)
    eig[0] = top
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * eig) @ q.T


def test_epsilon_shrinks_with_steps_and_grows_with_confidence():
    e1 = kw_epsilon(d=1000, steps=20, failure_prob=1e-2)
    assert kw_epsilon(d=1000, steps=40, failure_prob=1e-2) < e1
    assert kw_epsilon(d=1000, steps=20, failure_prob=1e-6) > e1
    assert kw_epsilon(d=10**8, steps=1, failure_prob=1e-3) == math.inf
    with pytest.raises(ValueError):
        kw_epsilon(d=10, steps=5, failure_prob=0.0)


@pytest.mark.parametrize("negative", [False, True])
def test_bounds_bracket_the_spectrum_at_the_stated_level(negative):
    """Few steps on a spiked matrix: θ + r misses often, the KW bound almost never."""
    rng = np.random.default_rng(1)
    d, steps, delta, trials = 300, 8, 0.1, 200
    a = spiked(d, rng, top=1.3, negative=negative)
    lam = np.linalg.eigvalsh(a)
    misses, ritz_misses = 0, 0
    for _ in range(trials):
        alpha, beta, beta_last = lanczos_tridiagonal(a, steps, rng)
        b = lanczos_upper_bounds(alpha, beta, beta_last, d=d, failure_prob=delta)
        eps = 1e-12
        ok = (
            b.lambda_max_upper >= lam[-1] - eps
            and b.lambda_min_lower <= lam[0] + eps
            and b.norm_upper >= max(abs(lam[0]), abs(lam[-1])) - eps
        )
        misses += not ok
        t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        ritz_misses += np.linalg.eigvalsh(t)[-1] + beta_last < lam[-1]
    # One-sided binomial test: at most this many misses at level δ with false-alarm rate 1e-3.
    assert misses <= binom.ppf(1 - 1e-3, trials, delta)
    assert b.failure_prob == delta and b.steps == steps
    assert math.isfinite(b.lambda_max_upper)
    if not negative:  # the case: the naive θ + r is no upper bound at this budget
        assert ritz_misses > 0


def test_converged_run_gives_a_tight_bound():
    rng = np.random.default_rng(2)
    d = 200
    a = spiked(d, rng, top=3.0, negative=True)
    lam = np.linalg.eigvalsh(a)
    alpha, beta, beta_last = lanczos_tridiagonal(a, 60, rng)
    b = lanczos_upper_bounds(alpha, beta, beta_last, d=d, failure_prob=1e-6)
    assert lam[-1] <= b.lambda_max_upper <= lam[-1] * 1.05
    assert b.norm_upper <= 3.0 * 1.05
