"""Lanczos and power iteration against exact dense float64 eigenvalues."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound
from smoothprobe.estimators.lanczos import kato_temple_errors, lanczos
from smoothprobe.estimators.power_iteration import power_iteration
from smoothprobe.linear_operator import DenseOperator


def haar(d: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def with_spectrum(eigs: torch.Tensor, seed: int) -> torch.Tensor:
    """Q diag(eigs) Qᵀ for a Haar-random Q (symmetrized)."""
    q = haar(eigs.numel(), seed)
    h = (q * eigs) @ q.T
    return (h + h.T) / 2


def goe(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (a + a.T) / 2


def outliers(d: int, seed: int) -> torch.Tensor:
    """A network-Hessian-like spectrum: a few large outliers over a bulk around 0."""
    g = torch.Generator().manual_seed(seed)
    top = torch.tensor([50.0, 31.0, 20.0, 12.0, 8.0], dtype=torch.float64)
    bulk = 0.3 * torch.randn(d - 5, generator=g, dtype=torch.float64)
    return with_spectrum(torch.cat([top, bulk]), seed)


def negative_dominant(d: int, seed: int) -> torch.Tensor:
    """|λ_min| > λ_max: the ℓ2 norm comes from the negative end."""
    g = torch.Generator().manual_seed(seed)
    eigs = torch.cat(
        [
            torch.tensor([-9.0, 4.0], dtype=torch.float64),
            torch.rand(d - 2, generator=g, dtype=torch.float64) * 6 - 3,
        ]
    )
    return with_spectrum(eigs, seed)


def low_rank_noise(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, 4, generator=g, dtype=torch.float64)
    return u @ u.T + 1e-3 * goe(d, seed + 1)


MATRICES = {
    "goe": lambda: goe(300, 0),
    "outliers": lambda: outliers(400, 1),
    "negative_dominant": lambda: negative_dominant(300, 2),
    "low_rank_noise": lambda: low_rank_noise(300, 3),
}


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_extremes_match_eigvalsh_at_tol_1e8(name):
    h = MATRICES[name]()
    eigs = torch.linalg.eigvalsh(h)
    r = lanczos(DenseOperator(h), tol=1e-8, max_hvps=400, top_k=3, generator=7)
    assert r.converged and r.stop_reason == "converged"
    assert rel(r.lambda_max, float(eigs[-1])) <= 1e-6
    assert rel(r.lambda_min, float(eigs[0])) <= 1e-6
    assert rel(r.l2_norm, float(eigs.abs().max())) <= 1e-6
    np.testing.assert_allclose(r.top_values, eigs[-3:].flip(0).numpy(), rtol=1e-6)
    assert r.hvps == r.iterations < 300


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_residual_bounds_true_error(name):
    h = MATRICES[name]()
    eigs = torch.linalg.eigvalsh(h).numpy()
    r = lanczos(DenseOperator(h), tol=1e-5, max_hvps=400, top_k=2, generator=3)
    slack = 1e-12 * np.abs(eigs).max()
    # every Ritz value has an eigenvalue within its residual (Weyl/Kato)
    for theta, res in zip(r.ritz_values, r.ritz_residuals, strict=True):
        assert np.abs(eigs - theta).min() <= res + slack
    # and at convergence that eigenvalue is the extreme one
    assert -slack <= eigs[-1] - r.lambda_max <= r.residual_max + slack
    assert -slack <= r.lambda_min - eigs[0] <= r.residual_min + slack
    # the Kato–Temple estimate r²/gap is tighter than r and still covers the error here
    assert eigs[-1] - r.lambda_max <= r.error_max + slack
    assert r.lambda_min - eigs[0] <= r.error_min + slack
    assert r.error_max <= r.residual_max


def test_ritz_extremes_interlace_at_every_step():
    h = outliers(300, 5)
    eigs = torch.linalg.eigvalsh(h)
    r = lanczos(DenseOperator(h), tol=1e-10, max_hvps=200, generator=1)
    slack = 1e-12 * float(eigs.abs().max())
    assert max(r.history["lambda_max"]) <= float(eigs[-1]) + slack
    assert min(r.history["lambda_min"]) >= float(eigs[0]) - slack
    assert np.all(np.diff(r.history["lambda_max"]) >= -slack)  # θ_max only grows
    assert np.all(np.diff(r.history["lambda_min"]) <= slack)


def test_estimates_bounds_and_intervals():
    h = negative_dominant(200, 4)
    eigs = torch.linalg.eigvalsh(h)
    r = lanczos(DenseOperator(h), tol=1e-7, generator=0)
    ests = r.estimates()
    certified = {e.quantity: e for e in ests if e.bound is not Bound.PROB_UPPER}
    prob = {e.quantity: e for e in ests if e.bound is Bound.PROB_UPPER}
    assert list(certified) == ["lambda_max", "lambda_min", "l2_norm", "d_l2"]
    assert list(prob) == ["lambda_max", "l2_norm", "d_l2"]  # random start: KW upper ends
    est = certified
    assert est["lambda_max"].bound is Bound.LOWER and est["lambda_min"].bound is Bound.UPPER
    assert est["lambda_max"].value <= float(eigs[-1]) <= prob["lambda_max"].value
    assert est["l2_norm"].value <= float(eigs.abs().max()) <= prob["l2_norm"].value
    assert all(e.ci_high is None for e in est.values())  # θ + r is no certified end
    assert all(e.failure_prob == 1e-3 for e in prob.values())
    assert est["l2_norm"].value == pytest.approx(-r.lambda_min)  # the negative end dominates
    top = max(r.lambda_max + r.residual_max, -r.lambda_min + r.residual_min)
    assert est["l2_norm"].value + est["l2_norm"].extra["residual"] == pytest.approx(top)
    assert est["d_l2"].value == pytest.approx(200 * est["l2_norm"].value)
    for e in ests:
        assert e.hvps == r.hvps and e.geometry == "l2" and e.method == "lanczos"
        assert e.seed == 0
    for e in est.values():
        assert e.extra["converged"]
    user = lanczos(DenseOperator(h), tol=1e-7, start=torch.ones(200, dtype=torch.float64))
    assert all(e.bound is not Bound.PROB_UPPER for e in user.estimates())


def test_gap_criterion_stops_near_the_oracle_step():
    h = outliers(500, 11)
    lam = float(torch.linalg.eigvalsh(h)[-1])
    for seed in range(3):
        gap = lanczos(DenseOperator(h), tol=1e-4, which="largest", criterion="gap", generator=seed)
        res = lanczos(DenseOperator(h), tol=1e-4, which="largest", generator=seed)
        oracle = next(
            i + 1 for i, t in enumerate(res.history["lambda_max"]) if abs(t - lam) <= 1e-4 * lam
        )
        assert rel(gap.lambda_max, lam) <= 1e-4 and rel(res.lambda_max, lam) <= 1e-4
        assert oracle <= gap.hvps <= oracle + 2
        assert gap.hvps <= res.hvps


@settings(max_examples=30, deadline=None)
@given(
    eigs=st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30),
    basis_seed=st.integers(0, 2**31 - 1),
)
def test_spectrum_invariant_under_orthogonal_change_of_basis(eigs, basis_seed):
    lam = torch.tensor(eigs, dtype=torch.float64)
    scale = max(float(lam.abs().max()), 1e-3)
    h = with_spectrum(lam, basis_seed)
    q = haar(lam.numel(), basis_seed + 1)
    v = torch.randn(
        lam.numel(), generator=torch.Generator().manual_seed(basis_seed), dtype=torch.float64
    )
    a = lanczos(DenseOperator(h), tol=1e-10, max_hvps=64, start=v)
    b = lanczos(DenseOperator(q @ h @ q.T), tol=1e-10, max_hvps=64, start=q @ v)
    # equivariance: rotating matrix and start vector rotates the Krylov space, nothing else
    assert a.lambda_max == pytest.approx(b.lambda_max, abs=1e-8 * scale)
    assert a.lambda_min == pytest.approx(b.lambda_min, abs=1e-8 * scale)
    # and both recover the true extremes
    assert a.lambda_max == pytest.approx(float(lam.max()), abs=1e-8 * scale)
    assert b.lambda_min == pytest.approx(float(lam.min()), abs=1e-8 * scale)


@settings(max_examples=30, deadline=None)
@given(
    eigs=st.lists(st.integers(-1000, 1000), min_size=3, max_size=60, unique=True),
    seed=st.integers(0, 1000),
)
def test_diagonal_matrix_spectrum_recovered(eigs, seed):
    lam = torch.tensor(eigs, dtype=torch.float64)
    top = torch.sort(lam, descending=True).values[:3]
    r = lanczos(DenseOperator(torch.diag(lam)), tol=1e-10, max_hvps=100, top_k=3, generator=seed)
    assert r.converged
    assert r.lambda_max == pytest.approx(float(lam.max()), abs=1e-7)
    assert r.lambda_min == pytest.approx(float(lam.min()), abs=1e-7)
    np.testing.assert_allclose(r.top_values, top.numpy(), atol=1e-7)


def test_user_start_in_invariant_subspace_still_finds_extremes():
    h = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    start = torch.zeros(20, dtype=torch.float64)
    start[4], start[5] = 1.0, 2.0  # spans an invariant subspace holding only λ = 5, 6
    r = lanczos(DenseOperator(h), tol=1e-10, start=start, generator=0)
    assert r.lambda_max == pytest.approx(20.0) and r.lambda_min == pytest.approx(1.0)
    assert r.converged


def test_random_start_breakdown_is_exact():
    h = torch.diag(torch.tensor([3.0] * 10 + [-2.0] * 10 + [7.0] * 5, dtype=torch.float64))
    r = lanczos(DenseOperator(h), tol=1e-12, generator=0)
    assert r.iterations == 3 and r.stop_reason in ("converged", "invariant")
    assert (r.lambda_max, r.lambda_min) == (pytest.approx(7.0), pytest.approx(-2.0))


def test_budget_exhausted_reports_not_converged():
    h = goe(400, 9)
    op = DenseOperator(h)
    r = lanczos(op, tol=1e-12, max_hvps=7, generator=0)
    assert r.hvps == 7 == op.cost.hvps and not r.converged and r.stop_reason == "budget"
    assert not all(e.extra["converged"] for e in r.estimates())


def test_float32_operator_keeps_float64_recurrence():
    h = outliers(300, 2)
    eigs = torch.linalg.eigvalsh(h)
    r = lanczos(DenseOperator(h.to(torch.float32)), tol=1e-8, max_hvps=300, generator=0)
    assert r.converged  # residuals reach the float32 floor instead of spinning to the budget
    assert rel(r.lambda_max, float(eigs[-1])) <= 1e-5


def test_kato_temple_single_value_uses_residual():
    np.testing.assert_allclose(kato_temple_errors(np.array([2.0]), np.array([0.5])), [0.5])
    err = kato_temple_errors(np.array([0.0, 10.0]), np.array([0.1, 0.1]))
    np.testing.assert_allclose(err, [0.01 / 9.9, 0.01 / 9.9])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tol": 0},
        {"max_hvps": 0},
        {"top_k": 0},
        {"top_k": 999},
        {"which": "middle"},
        {"criterion": "vibes"},
        {"start": torch.zeros(10, dtype=torch.float64)},
        {"start": torch.ones(3)},
        {"generator": "seed"},
    ],
)
def test_invalid_options_raise_domain_errors(kwargs):
    with pytest.raises(SmoothprobeError):
        lanczos(DenseOperator(torch.eye(10, dtype=torch.float64)), **kwargs)


@pytest.mark.parametrize("name", ["outliers", "negative_dominant"])
def test_power_iteration_baseline_matches(name):
    h = MATRICES[name]()
    eigs = torch.linalg.eigvalsh(h)
    r = power_iteration(DenseOperator(h), tol=1e-7, max_hvps=20000, generator=0)
    assert r.converged and r.method == "power_iteration"
    assert rel(r.lambda_max, float(eigs[-1])) <= 1e-5
    assert rel(r.lambda_min, float(eigs[0])) <= 1e-5
    lz = lanczos(DenseOperator(h), tol=1e-7, generator=0)
    assert lz.hvps < r.hvps  # the point of Lanczos


def test_power_iteration_largest_only_and_top_k_limit():
    h = outliers(200, 3)
    r = power_iteration(DenseOperator(h), tol=1e-8, which="largest", generator=0)
    assert r.converged and not r.converged_min and math.isinf(r.residual_min)
    assert r.lambda_min >= float(torch.linalg.eigvalsh(h)[0])  # a Rayleigh quotient: valid bound
    with pytest.raises(SmoothprobeError):
        power_iteration(DenseOperator(h), top_k=2)


def _real_model(name: str):
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    problem = examples.build_example(name)
    h = examples.exact_hessian(name)
    return problem, torch.linalg.eigvalsh((h + h.T) / 2)


@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        pytest.param("cnn", marks=pytest.mark.slow),
        pytest.param("gpt", marks=pytest.mark.slow),
    ],
)
def test_real_models_match_dense_hessian(name):
    problem, eigs = _real_model(name)
    op = problem.hvp_operator()
    r = lanczos(op, tol=1e-8, max_hvps=300, generator=0)
    assert r.converged and r.hvps == op.cost.hvps
    assert rel(r.lambda_max, float(eigs[-1])) <= 1e-6
    assert rel(r.lambda_min, float(eigs[0])) <= 1e-6
    slack = 1e-10 * float(eigs.abs().max())
    assert float(eigs[-1]) - r.lambda_max <= r.residual_max + slack
    assert r.lambda_min - float(eigs[0]) <= r.residual_min + slack


def test_kept_krylov_basis_is_orthonormal_and_its_images_are_exact():
    h = outliers(200, 6)
    r = lanczos(DenseOperator(h), tol=1e-8, generator=2, keep_basis=True)
    q = r.krylov.basis
    assert q.shape == (r.iterations, 200)
    torch.testing.assert_close(
        q @ q.T, torch.eye(r.iterations, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(r.krylov.images(), q @ h, atol=1e-10 * float(h.norm()), rtol=0)
    assert lanczos(DenseOperator(h), tol=1e-8, generator=2).krylov is None
