"""The spectral (Muon) geometry against dense float64 ground truth (MATH.md §8)."""

from __future__ import annotations

import math

import pytest
import torch

from smoothprobe.bases import HadamardBasis, MatrixBasis
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.op_norm import op_lower_bound, op_upper_bound
from smoothprobe.estimators.polar import nuclear_norm, polar_factor, sigma_max
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.rotated_operator import RotatedOperator
from smoothprobe.spectral_geometry import spectral_geometry
from smoothprobe.suites.spectral import measure_spectral

TINY = ParameterLayout.from_shapes([("a.weight", (2, 2)), ("a.bias", (2,)), ("b.weight", (2, 3))])


def random_symmetric(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (a + a.T) / 2


def brute_force(h: torch.Tensor, geo, *, samples: int = 100_000, seed: int = 1) -> float:
    """max over random unit-ball vertices x of max_y yᵀHx = ‖Hx‖_* (exact for each x)."""
    g = torch.Generator().manual_seed(seed)
    x, _ = geo.maximizer(torch.randn(samples, h.shape[0], generator=g, dtype=torch.float64))
    return float(geo.dual_norm(x @ h).max())


def test_polar_factor_svd_and_newton_schulz_agree_and_are_feasible():
    g = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y, v = polar_factor(g)
    assert torch.allclose(sigma_max(y), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(v, nuclear_norm(g))
    y_ns, v_ns = polar_factor(g, method="newton-schulz")
    assert float(sigma_max(y_ns).max()) <= 1 + 1e-12
    assert torch.allclose(y_ns, y, atol=1e-8)
    assert bool((v_ns <= v + 1e-12).all())
    with pytest.raises(SmoothprobeError, match="polar method"):
        polar_factor(g, method="qr")


def test_default_rule_picks_hidden_matrices_of_a_gpt():
    from smoothprobe.checkpoints import load_example

    layout = load_example("example:gpt", dtype="float64").problem.layout
    geo = spectral_geometry(layout)
    names = [b.name for b in geo.blocks]
    assert names == [
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_proj.weight",
    ]
    chosen = spectral_geometry(layout, matrices=["c_attn.weight$", "wte"])
    assert [b.name for b in chosen.blocks] == [
        "transformer.wte.weight",
        "transformer.h.0.attn.c_attn.weight",
    ]
    with pytest.raises(SmoothprobeError, match="not a matrix"):
        spectral_geometry(layout, matrices=["c_attn"])
    with pytest.raises(SmoothprobeError, match="matches no parameter"):
        spectral_geometry(layout, matrices=["nothing_here"])
    with pytest.raises(SmoothprobeError, match="spectral scale"):
        spectral_geometry(layout, scale="fro")


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("scale", ["one", "rms"])
def test_bracket_on_tiny_blocks_against_brute_force(mixed, scale):
    h = random_symmetric(TINY.d, seed=3)
    op = DenseOperator(h, layout=TINY)
    geo = spectral_geometry(TINY, mixed=mixed, scale=scale)
    lower = op_lower_bound(op, geo, restarts=16)
    upper = op_upper_bound(op, geo)
    brute = brute_force(h, geo)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    assert upper.certified and upper.method == "exact"
    assert lower.value <= upper.value * (1 + 1e-12)
    assert lower.value <= geo.radius_sq * l2 * (1 + 1e-12)
    assert brute <= upper.value * (1 + 1e-12) and brute <= geo.radius_sq * l2 * (1 + 1e-12)
    assert lower.value >= brute * (1 - 1e-3)  # the ascent finds at least what random search finds
    assert lower.converged and lower.asymmetry < 1e-12
    # the certified pair is feasible and evaluates to the reported value
    assert float(geo.norm(lower.x)) <= 1 + 1e-12


def test_rank_one_hessian_is_the_squared_dual_norm_and_hadamard_changes_it():
    """H = a aᵀ: yᵀHx = ⟨a,y⟩⟨a,x⟩, so H_op = ‖a‖_*² exactly (one block, s = 1: ‖A‖_nuc²)."""
    layout = ParameterLayout.from_shapes([("fc.weight", (3, 4)), ("proj.weight", (2, 3))])
    g = torch.Generator().manual_seed(5)
    u, v = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(4, generator=g)
    a = torch.cat([torch.outer(u, v.double()).reshape(-1), torch.zeros(6, dtype=torch.float64)])
    h = torch.outer(a, a)
    geo = spectral_geometry(layout)
    truth = float(geo.dual_norm(a)) ** 2
    assert truth == pytest.approx(float(u.norm() * v.double().norm()) ** 2)  # rank-1: nuc = F
    op = DenseOperator(h, layout=layout)
    lower, upper = op_lower_bound(op, geo), op_upper_bound(op, geo)
    assert lower.value == pytest.approx(truth, rel=1e-10)
    assert lower.value <= truth * (1 + 1e-12) <= upper.value * (1 + 1e-12)
    # a full Hadamard rotation mixes a into every matrix at full rank: H_op grows
    basis = HadamardBasis(layout.d, seed=0)
    rotated_a = basis.from_params(a.reshape(1, -1))[0]
    rotated_truth = float(geo.dual_norm(rotated_a)) ** 2
    assert rotated_truth > 1.5 * truth
    rotated = RotatedOperator(op, basis)
    rl = op_lower_bound(rotated, geo, restarts=4)
    assert rl.value == pytest.approx(rotated_truth, rel=1e-8)
    assert rl.value > op_upper_bound(op, geo).value  # disjoint brackets: not invariant


def test_identity_hessian_closed_form():
    """H = I on one m×n block: max ⟨Y, X⟩ over spectral balls = r = min(m, n) = R·L₂."""
    layout = ParameterLayout.from_shapes([("fc.weight", (2, 3))])
    op = DenseOperator(torch.eye(6, dtype=torch.float64), layout=layout)
    geo = spectral_geometry(layout)
    assert op_lower_bound(op, geo).value == pytest.approx(2.0, rel=1e-12)
    assert op_upper_bound(op, geo).value == pytest.approx(2.0, rel=1e-12)
    # a row vector (1 × n): spectral norm = ℓ2 norm, so H_op = ‖H‖₂
    row = ParameterLayout.from_shapes([("fc.weight", (1, 5))])
    h = random_symmetric(5, seed=9)
    geo_row = spectral_geometry(row)
    low = op_lower_bound(DenseOperator(h, layout=row), geo_row, restarts=8).value
    assert low == pytest.approx(float(torch.linalg.eigvalsh(h).abs().max()), rel=1e-6)


@pytest.mark.parametrize("mixed", [False, True])
def test_two_sided_matrix_rotation_leaves_h_op_unchanged(mixed):
    h = random_symmetric(TINY.d, seed=11)
    op = DenseOperator(h, layout=TINY)
    basis = MatrixBasis(TINY, seed=4, vectors="identity")
    rotated = RotatedOperator(op, basis)
    geo = spectral_geometry(TINY, mixed=mixed)
    up, up_r = op_upper_bound(op, geo), op_upper_bound(rotated, geo)
    assert up_r.value == pytest.approx(up.value, rel=1e-10)
    low = op_lower_bound(op, geo, restarts=16)
    # the optimal pair maps to a feasible pair of the rotated problem with the same value
    x_r = basis.from_params(low.x.reshape(1, -1))[0]
    assert float(geo.norm(x_r)) == pytest.approx(float(geo.norm(low.x)), rel=1e-10)
    value_r = float(geo.dual_norm(rotated.matvec(x_r)))
    assert value_r == pytest.approx(float(geo.dual_norm(op.matvec(low.x))), rel=1e-10)
    low_r = op_lower_bound(rotated, geo, restarts=16)
    assert low_r.value == pytest.approx(low.value, rel=1e-4)


def test_suite_records_bracket_and_ratios():
    h = random_symmetric(TINY.d, seed=2)
    op = DenseOperator(h, layout=TINY)
    eig = torch.linalg.eigvalsh(h).abs()
    l2 = float(eig.max())
    reference = [
        Estimate("l2_norm", l2, Bound.LOWER, ci_low=l2, ci_high=l2 * (1 + 1e-9), geometry="l2"),
        Estimate("linf_lower", 0.5 * float(h.abs().sum()), Bound.LOWER, geometry="linf"),
        Estimate("l11_norm", float(h.abs().sum()), Bound.EXACT, geometry="linf"),
    ]
    out = measure_spectral(op, reference=reference, restarts=8, l2_failure_prob=None)
    by = {(e.quantity, e.settings["partition"]): e for e in out}
    for part in ("matrices", "mixed"):
        low, up = by[("op_lower", part)], by[("op_upper", part)]
        rl2, rho = by[("op_upper_rl2", part)], by[("rho_op", part)]
        assert all(e.geometry == "spectral" for e in (low, up, rl2, rho))
        assert low.bound is Bound.LOWER and up.bound is Bound.UPPER
        assert low.value <= min(up.value, rl2.value)
        assert rho.ci_low <= rho.value <= 1.0 and rho.bound is Bound.UPPER
        r = spectral_geometry(TINY, mixed=part == "mixed").radius_sq
        assert rl2.value == pytest.approx(r * l2 * (1 + 1e-9))
        assert rho.ci_low == pytest.approx(low.value / rl2.value)
    assert by[("op_upper", "matrices")].value <= by[("op_upper", "mixed")].value
    ratio = by[("muon_adam_ratio", "mixed")]
    assert ratio.ci_low <= ratio.value
    assert ("muon_adam_ratio", "matrices") not in by
    assert math.isfinite(ratio.value)


def test_budget_too_small_for_block_norms_is_a_clear_error():
    op = DenseOperator(random_symmetric(TINY.d, seed=0), layout=TINY)
    with pytest.raises(SmoothprobeError):
        op_upper_bound(op, spectral_geometry(TINY), method="row-frobenius")


def test_r_l2_end_from_the_suites_own_random_start_lanczos():
    h = random_symmetric(TINY.d, seed=6)
    op = DenseOperator(h, layout=TINY)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    out = measure_spectral(op, l2_failure_prob=1e-3)
    by = {(e.quantity, e.settings["partition"]): e for e in out}
    for part in ("matrices", "mixed"):
        rl2 = by[("op_upper_rl2", part)]
        assert rl2.bound is Bound.PROB_UPPER and rl2.failure_prob == 1e-3
        r = spectral_geometry(TINY, mixed=part == "mixed").radius_sq
        assert rl2.value >= r * l2 * (1 - 1e-12)
        rho = by[("rho_op", part)]
        assert rho.extra["lower_bound"] == "prob_upper"
        assert rho.ci_low <= by[("op_lower", part)].value / (r * l2)


def test_own_l2_run_with_a_bounded_basis_takes_the_first_basis_full_bound():
    """A restarted Lanczos run is no longer one Krylov space of the random start: its KW end
    comes from the first basis-full (lanczos's own bound), and still bounds ‖H‖₂."""
    from smoothprobe.suites.spectral import kw_l2_ends

    a = torch.randn(80, 80, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    h = (a + a.T) / 2
    norm = float(torch.linalg.matrix_norm(h, 2))
    full = kw_l2_ends(DenseOperator(h), failure_prob=1e-3, max_hvps=80, tol=1e-10,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    bounded = kw_l2_ends(DenseOperator(h), failure_prob=1e-3, max_hvps=80, tol=1e-10,
                         generator=torch.Generator().manual_seed(0), max_basis=20)  # fmt: skip
    for low, high, bound, delta, _ in (full, bounded):
        assert low <= norm * (1 + 1e-9) and high >= norm and bound is Bound.PROB_UPPER
        assert delta == 1e-3
    assert bounded[0] == pytest.approx(norm, rel=1e-6) and bounded[1] > full[1]
    # ten rows: the first basis-full proves no finite end, so none is given (not θ + r)
    assert kw_l2_ends(DenseOperator(h), failure_prob=1e-3, max_hvps=80, tol=1e-10,
                      generator=torch.Generator().manual_seed(0), max_basis=10) is None  # fmt: skip
