"""Sign ascent: a certified lower bound on ‖H‖∞→1, checked by enumeration on tiny matrices."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import scaled_symmetric as symmetric
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe import Bound, DenseOperator
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.sign_ascent import sign_ascent


def brute_force_inf_to_1(h: torch.Tensor) -> float:
    """max over u ∈ {±1}^d of ‖Hu‖₁ = max_{u,v} uᵀHv, by enumerating all 2^d sign vectors."""
    d = h.shape[0]
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=d)), dtype=h.dtype)
    return float((signs @ h).abs().sum(dim=1).max())


class AsymmetricOperator(DenseOperator):
    """Applies a slightly non-symmetric matrix (as a buggy HVP would)."""

    def matvec(self, vectors):
        self.cost.hvps += 1 if vectors.ndim == 1 else vectors.shape[0]
        return vectors @ self.matrix.T


@given(d=st.integers(1, 12), seed=st.integers(0, 10_000), spread=st.floats(0.0, 2.0))
@settings(max_examples=60, deadline=None)
def test_never_exceeds_brute_force_or_l11(d, seed, spread):
    h = symmetric(d, seed, spread=spread)
    truth = brute_force_inf_to_1(h)
    r = sign_ascent(DenseOperator(h), restarts=4, max_iters=10, generator=seed)
    assert r.value <= truth * (1 + 1e-12) + 1e-300
    assert truth <= float(h.abs().sum()) * (1 + 1e-12)
    # the returned pair certifies the value: v = sign(Hu), vᵀHu = ‖Hu‖₁
    assert float(r.v @ h @ r.u) == pytest.approx(r.value, rel=1e-12, abs=1e-300)
    assert set(r.v.unique().tolist()) <= {-1.0, 1.0}


def test_finds_the_optimum_on_most_tiny_matrices():
    hits, trials = 0, 30
    for seed in range(trials):
        h = symmetric(10, seed)
        r = sign_ascent(DenseOperator(h), restarts=16, max_iters=20, generator=seed)
        hits += r.value >= brute_force_inf_to_1(h) * (1 - 1e-12)
    assert hits >= 0.8 * trials


@pytest.mark.parametrize("d", [1, 5, 16])
def test_exact_on_diagonal_and_rank_one(d):
    g = torch.Generator().manual_seed(d)
    diag = torch.randn(d, generator=g, dtype=torch.float64)
    r = sign_ascent(DenseOperator(torch.diag(diag)), restarts=2, generator=0)
    assert r.value == pytest.approx(float(diag.abs().sum()), rel=1e-12)
    a = torch.randn(d, generator=g, dtype=torch.float64)
    r = sign_ascent(DenseOperator(torch.outer(a, a)), restarts=1, generator=0)
    assert r.value == pytest.approx(float(a.abs().sum()) ** 2, rel=1e-12)


@given(seed=st.integers(0, 10_000))
@settings(max_examples=20, deadline=None)
def test_permutation_and_sign_flip_invariance(seed):
    """The target is invariant; the bound on each version stays below it."""
    g = torch.Generator().manual_seed(seed)
    h = symmetric(9, seed)
    perm = torch.randperm(9, generator=g)
    s = torch.randint(0, 2, (9,), generator=g).double() * 2 - 1
    versions = [h, h[perm][:, perm], s[:, None] * h * s[None, :]]
    truths = [brute_force_inf_to_1(m) for m in versions]
    assert truths[1] == pytest.approx(truths[0]) and truths[2] == pytest.approx(truths[0])
    for m in versions:
        assert sign_ascent(DenseOperator(m), restarts=3, generator=seed).value <= truths[0] * (
            1 + 1e-12
        )


def test_sign_flip_maps_the_trajectory_exactly():
    """With starts flipped alongside H, the ascent visits the flipped iterates: same value."""
    h = symmetric(40, 3)
    s = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0).double()
    starts = torch.where(
        torch.rand(5, 40, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0
    ).double()
    a = sign_ascent(DenseOperator(h), restarts=0, starts=starts, generator=0)
    b = sign_ascent(
        DenseOperator(s[:, None] * h * s[None, :]), restarts=0, starts=starts * s, generator=0
    )
    assert a.value == pytest.approx(b.value, rel=1e-12)


def test_contract_budget_determinism_and_global_rng():
    h = symmetric(64, 5)
    before = torch.get_rng_state()
    op = DenseOperator(h)
    r1 = sign_ascent(op, restarts=6, max_iters=7, generator=11)
    assert op.cost.hvps == r1.hvps <= 6 * 7 + 1
    r2 = sign_ascent(DenseOperator(h), restarts=6, max_iters=7, generator=11)
    assert r1.value == r2.value and torch.equal(r1.u, r2.u)
    assert torch.equal(torch.get_rng_state(), before)
    assert len(r1.restart_values) == 6
    assert max(r1.restart_values) >= r1.value * (1 - 1e-12)


def test_values_never_decrease_along_the_ascent():
    h = symmetric(50, 7, spread=1.5)
    op = DenseOperator(h)
    last = -math.inf
    for iters in range(1, 8):
        r = sign_ascent(op, restarts=1, max_iters=iters, generator=4, check=False)
        assert r.value >= last * (1 - 1e-12)
        last = r.value


def test_column_starts_certify_the_largest_row():
    h = symmetric(30, 8, spread=1.5)
    top = int(h.abs().sum(1).argmax())
    r = sign_ascent(DenseOperator(h), restarts=0, column_starts=torch.tensor([top]), max_iters=1)
    assert r.value == pytest.approx(float(h[top].abs().sum()), rel=1e-12)
    more = sign_ascent(DenseOperator(h), restarts=0, column_starts=torch.tensor([top]))
    assert more.value >= r.value


def test_asymmetric_operator_cannot_inflate_the_bound():
    h = symmetric(20, 9)
    bumped = h.clone()
    bumped[0, 1:] += 0.5  # H is no longer symmetric
    # one step, so u ≠ v (at a fixed point u = v both evaluations coincide)
    r = sign_ascent(AsymmetricOperator(bumped), restarts=4, max_iters=1, generator=0)
    assert r.asymmetry > 1e-6 and not torch.equal(r.u, r.v)
    forward = float(r.v @ bumped @ r.u)
    backward = float(r.u @ bumped @ r.v)
    assert r.value == pytest.approx(min(forward, backward), rel=1e-12)
    assert sign_ascent(DenseOperator(h), restarts=4, generator=0).asymmetry < 1e-12


def test_linf_lower_estimate_fields_and_errors():
    h = symmetric(25, 10)
    est = sign_ascent(DenseOperator(h), restarts=3, generator=2).estimate()
    assert est.quantity == "linf_lower" and est.bound is Bound.LOWER
    assert est.method == "sign-ascent" and est.seed == 2 and est.hvps > 0
    assert est.value <= float(h.abs().sum())
    for kwargs in (
        dict(restarts=-1),
        dict(max_iters=0),
        dict(restarts=0),
        dict(starts=torch.full((1, 25), 2.0)),
        dict(generator=1.5),
    ):
        with pytest.raises(SmoothprobeError):
            sign_ascent(DenseOperator(h), **kwargs)


@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        pytest.param("cnn", marks=pytest.mark.slow),
        pytest.param("gpt", marks=pytest.mark.slow),
    ],
)
def test_real_models_lower_bound_below_l11_and_above_rows(name):
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    problem = examples.build_example(name)
    h = examples.exact_hessian(name)
    rows = h.abs().sum(1)
    op = problem.hvp_operator()
    r = sign_ascent(
        op, restarts=4, column_starts=rows.argsort(descending=True)[:2], max_iters=15, generator=0
    )
    assert float(rows.max()) * (1 - 1e-9) <= r.value <= float(h.abs().sum())
    assert r.asymmetry < 1e-8 and op.cost.hvps == r.hvps
    # ‖H‖₂ ≤ ‖H‖∞→∞ = max row ≤ the bound (the top row is a start)
    assert float(torch.linalg.eigvalsh(h).abs().max()) <= r.value * (1 + 1e-9)
