"""The H∞ bracket (MATH.md §7): certified against brute force, KW coverage, real Hessians."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from smoothprobe import Bound, DenseOperator
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.burer_monteiro import mixing_method
from smoothprobe.estimators.hinf_bracket import hinf_bracket
from smoothprobe.estimators.hinf_certificate import exact_lambda_max, lanczos_lambda_max
from smoothprobe.estimators.sign_ascent import sign_ascent


def brute_force(h: torch.Tensor) -> float:
    """max_{x∈{±1}^d} ‖Hx‖₁ = H∞, by enumeration."""
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=h.shape[0])), dtype=h.dtype)
    return float((signs @ h).abs().sum(dim=1).max())


def symmetric(d: int, seed: int, *, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    s = torch.exp(spread * torch.randn(d, generator=g, dtype=torch.float64))
    return (a + a.T) / 2 * torch.outer(s, s)


@given(d=st.integers(1, 14), seed=st.integers(0, 10_000), spread=st.floats(0.0, 2.0))
@settings(max_examples=40, deadline=None)
def test_bracket_contains_brute_force_optimum(d, seed, spread):
    h = symmetric(d, seed, spread=spread)
    truth = brute_force(h)
    b = hinf_bracket(DenseOperator(h), max_hvps=400, generator=seed)
    assert b.eigen.method == "exact" and b.failure_prob == 0.0
    assert b.lower <= truth * (1 + 1e-12) + 1e-300
    assert truth <= b.upper * (1 + 1e-9) + 1e-300
    # every ±1 pair is below the upper bound
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randint(0, 2, (64, d), generator=g).double() * 2 - 1
    y = torch.randint(0, 2, (64, d), generator=g).double() * 2 - 1
    assert float(((x @ h) * y).sum(dim=1).max()) <= b.upper * (1 + 1e-9) + 1e-300


@pytest.mark.parametrize("d", [12, 16])
def test_lanczos_certificate_is_exact_after_breakdown_and_brackets(d):
    h = symmetric(d, d, spread=0.5)
    truth = brute_force(h)
    b = hinf_bracket(h, max_hvps=400, eigen="lanczos", generator=3)
    assert b.eigen.method == "lanczos" and b.eigen.steps <= 2 * d
    assert b.lower <= truth * (1 + 1e-12) <= b.upper * (1 + 1e-9)
    exact = hinf_bracket(h, max_hvps=400, eigen="exact", generator=3)  # the same factor u
    assert b.upper == pytest.approx(exact.upper, rel=1e-7)
    assert exact.upper <= 1.3 * truth  # the SDP relaxation gap is far below K_G here


def test_zero_and_diagonal_and_rank_one():
    z = hinf_bracket(torch.zeros(5, 5, dtype=torch.float64), max_hvps=400)
    assert z.lower == 0.0 and abs(z.upper) < 1e-12
    diag = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    b = hinf_bracket(torch.diag(diag), max_hvps=400)
    assert b.lower == pytest.approx(6.5, rel=1e-12) and b.upper == pytest.approx(6.5, rel=1e-9)
    a = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    b = hinf_bracket(torch.outer(a, a), max_hvps=400)
    assert b.lower == pytest.approx(7.5**2, rel=1e-12)
    assert b.upper == pytest.approx(7.5**2, rel=1e-6)


def test_probabilistic_eigen_bound_holds_over_many_seeds():
    """KW coverage: with few steps and a large δ, failures stay within the binomial tolerance."""
    d, steps, delta, seeds = 150, 10, 0.3, 120
    h = symmetric(d, 7, spread=0.3)
    mix = mixing_method(DenseOperator(h), rank=4, generator=torch.Generator().manual_seed(0))
    u = torch.cat([(mix.x * mix.hy).sum(0), (mix.y * mix.hx).sum(0)])
    exact = exact_lambda_max(DenseOperator(h), u).lambda_estimate
    failures, slack = 0, []
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        bound = lanczos_lambda_max(
            DenseOperator(h), u, steps=steps, failure_prob=delta, generator=gen
        )
        assert bound.lambda_estimate <= exact + 1e-9  # a Ritz value never exceeds λ_max
        failures += bound.lambda_upper < exact
        slack.append(bound.lambda_upper - exact)
    assert failures <= stats.binom.ppf(1 - 1e-6, seeds, delta)
    # with 60 steps and δ = 1e-6 the bound holds every time and is not vacuous
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        bound = lanczos_lambda_max(DenseOperator(h), u, steps=60, failure_prob=1e-6, generator=gen)
        assert exact <= bound.lambda_upper < exact + 0.2 * bound.shift


def test_contract_budget_determinism_and_global_rng():
    h = symmetric(300, 1, spread=0.5)
    state = torch.get_rng_state()
    op = DenseOperator(h)
    b = hinf_bracket(op, max_hvps=500, eigen="lanczos", generator=5)
    assert torch.equal(state, torch.get_rng_state())
    assert b.hvps == op.cost.hvps <= 500
    assert b.hvps == sum(b.phase_hvps.values())
    again = hinf_bracket(
        h, max_hvps=500, eigen="lanczos", generator=torch.Generator().manual_seed(5)
    )
    assert (again.lower, again.upper) == (b.lower, b.upper)
    lower, upper = b.estimates()
    assert (lower.quantity, lower.bound) == ("hinf_lower", Bound.LOWER)
    assert (upper.quantity, upper.bound) == ("hinf_upper", Bound.PROB_UPPER)
    assert upper.failure_prob == 1e-6 and upper.extra["rank"] == 4
    assert upper.extra["bm_value"] == b.bm_value and lower.hvps + upper.hvps == b.hvps
    exact = hinf_bracket(h, max_hvps=800, eigen="exact").estimates()[1]
    assert exact.bound is Bound.UPPER and exact.failure_prob is None
    # never below sign ascent on the same starts; never above the trivial bounds
    sa = sign_ascent(DenseOperator(h), restarts=8, max_iters=30, generator=5)
    assert b.lower >= sa.value * (1 - 1e-12) - 1e-9
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    assert b.upper < min(float(h.abs().sum()), 300 * l2)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_hvps=10),
        dict(rank=0),
        dict(eigen="arpack"),
        dict(failure_prob=0.0),
        dict(failure_prob=1),
        dict(tol=-1.0),
        dict(roundings=0, restarts=0),
        dict(generator=1.5),
    ],
)
def test_bad_options_raise(kwargs):
    with pytest.raises(SmoothprobeError):
        hinf_bracket(symmetric(6, 0), **kwargs)


def hessian_like(d: int, seed: int) -> torch.Tensor:
    """A few dominant outlier directions over heterogeneous row scales, plus a small bulk."""
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(0.7 * torch.randn(d, generator=g, dtype=torch.float64))
    v = torch.randn(d, 6, generator=g, dtype=torch.float64) * s[:, None]
    lam = torch.tensor([10.0, 5.0, 3.0, -2.0, 1.0, -0.5], dtype=torch.float64)
    return (v * lam) @ v.T + 0.05 * symmetric(d, seed)


def test_rank_one_is_weaker_than_rank_four():
    """r = 1 is sign ascent: its certificate is loose; r = 4 closes the gap (prototype finding)."""
    h = hessian_like(120, 4)
    loose = hinf_bracket(h, max_hvps=2000, rank=1, eigen="exact", generator=0)
    tight = hinf_bracket(h, max_hvps=2000, rank=4, eigen="exact", generator=0)
    assert tight.upper < loose.upper / 1.1 and tight.ratio < 1.05
    # the certificate of a converged factor is the SDP value: upper ≈ the BM objective
    assert tight.upper <= tight.bm_value * 1.001
    # a dense random matrix needs a wider factor (its SDP solution has a higher rank)
    h = symmetric(120, 4, spread=0.7)
    wide = hinf_bracket(h, max_hvps=4000, rank=8, eigen="exact", tol=1e-6, generator=0)
    assert wide.upper <= wide.bm_value * 1.001


def _rotated_dense(h: torch.Tensor, basis) -> torch.Tensor:
    """RᵀHR, dense (Rᵀ applied to the rows, then to the columns)."""
    left = basis.from_params(h)
    return basis.from_params(left.T.contiguous()).T.contiguous()


@pytest.mark.parametrize(
    ("name", "basis"),
    [
        ("mlp", "identity"),
        ("mlp", "hadamard"),
        pytest.param("cnn", "identity", marks=pytest.mark.slow),
        pytest.param("cnn", "hadamard", marks=pytest.mark.slow),
        pytest.param("gpt", "identity", marks=pytest.mark.slow),
        pytest.param("gpt", "hadamard", marks=pytest.mark.slow),
    ],
)
def test_real_hessians_bracket_within_15_percent(name, basis):
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    from smoothprobe.bases import build_basis
    from smoothprobe.layout import ParameterLayout
    from smoothprobe.rotated_operator import RotatedOperator

    h = examples.exact_hessian(name)
    h = (h + h.T) / 2
    d = h.shape[0]
    rot = build_basis(basis, ParameterLayout.from_shapes([("theta", (d,))]), seed=0)
    dense = _rotated_dense(h, rot)
    op = RotatedOperator(DenseOperator(h), rot)
    b = hinf_bracket(op, max_hvps=1024, generator=0)
    assert b.eigen.method == "lanczos" and b.hvps <= 1024
    many = sign_ascent(DenseOperator(dense), restarts=64, max_iters=30, generator=1)
    assert max(many.value, b.lower) <= b.upper
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    assert b.upper < min(float(dense.abs().sum()), d * l2)
    assert b.ratio <= 1.15
    assert math.isfinite(b.bm_value) and b.bm_value <= b.upper
