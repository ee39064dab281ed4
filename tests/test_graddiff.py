"""Sampled gradient differences: exact on quadratics, below the exact constants, → HVP as r → 0."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from smoothprobe.bases import build_basis
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound
from smoothprobe.estimators.graddiff import (
    coordinate_scale,
    gradient_differences,
    perturbation_directions,
)
from smoothprobe.examples import build_example
from smoothprobe.geometries import resolve_geometry
from smoothprobe.partitions import per_tensor
from smoothprobe.problem import problem_from_module


class Quadratic(nn.Module):
    """θ ↦ θ; with ``quadratic_loss`` the loss is ½θᵀAθ + bᵀθ, gradient Aθ + b."""

    def __init__(self, shapes, generator):
        super().__init__()
        self.parts = nn.ParameterList(
            [nn.Parameter(torch.randn(s, generator=generator, dtype=torch.float64)) for s in shapes]
        )

    def forward(self, x):
        return torch.cat([p.reshape(-1) for p in self.parts])


def quadratic_problem(A, *, shapes=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = A.shape[0]
    shapes = shapes or [(d,)]
    b = torch.randn(d, generator=gen, dtype=torch.float64)

    def loss(theta, targets):
        return 0.5 * theta @ (A.to(theta.dtype) @ theta) + b.to(theta.dtype) @ theta

    model = Quadratic(shapes, gen)
    data = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    return problem_from_module(model, loss, data, dtype="float64")


def random_symmetric(d, seed):
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return (M + M.T) / 2


# Norm pairs written out independently of smoothprobe.geometries (loops over blocks).
def primal(x, kind, labels=None):
    if kind == "l2":
        return math.sqrt(sum(float(t) ** 2 for t in x))
    if kind == "linf":
        return max(abs(float(t)) for t in x)
    return max(
        math.sqrt(sum(float(x[i]) ** 2 for i in range(len(x)) if labels[i] == b))
        / math.sqrt(int((labels == b).sum()))
        for b in range(int(labels.max()) + 1)
    )


def dual(g, kind, labels=None):
    if kind == "l2":
        return math.sqrt(sum(float(t) ** 2 for t in g))
    if kind == "linf":
        return sum(abs(float(t)) for t in g)
    return sum(
        math.sqrt(int((labels == b).sum()))
        * math.sqrt(sum(float(g[i]) ** 2 for i in range(len(g)) if labels[i] == b))
        for b in range(int(labels.max()) + 1)
    )


def h_inf(A):
    """‖A‖_{∞→1} = max over sign vectors s of ‖As‖₁, by enumeration (tiny d)."""
    d = A.shape[0]
    return max(
        float((A @ torch.tensor(s, dtype=torch.float64)).abs().sum())
        for s in itertools.product([-1.0, 1.0], repeat=d)
    )


def block_upper(A, labels):
    """U(Φ) = Σ_{b,b'} √(d_b d_b') ‖A_bb'‖₂ ≥ H(Φ)."""
    blocks = [torch.nonzero(labels == b).reshape(-1) for b in range(int(labels.max()) + 1)]
    return sum(
        math.sqrt(len(i) * len(j)) * float(torch.linalg.matrix_norm(A[i][:, j], 2))
        for i in blocks
        for j in blocks
    )


LABELS = torch.tensor([0, 0, 1, 1, 1, 2])


@pytest.mark.parametrize("kind", ["l2", "linf", "block"])
@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_quadratic_ratio_is_the_exact_directional_value(kind, mode):
    A = random_symmetric(6, seed=3)
    problem = quadratic_problem(A, shapes=[(2,), (4,)], seed=1)
    geometry = LABELS if kind == "block" else kind
    radii = [2.0, 1e-1, 1e-3]
    result = gradient_differences(
        problem, radii=radii, geometry=geometry, radius_mode=mode, samples=12, generator=7
    )
    directions = perturbation_directions(
        problem,
        resolve_geometry(geometry),
        samples=12,
        generator=torch.Generator().manual_seed(7),
        radius_mode=mode,
    )
    theta = problem.theta
    for sample, r in zip(result.radii, radii, strict=True):
        assert sample.radius == r
        for j in range(12):
            delta = (theta + r * directions[j]) - theta  # realized in float64
            exact = dual(A @ delta, kind, LABELS) / primal(delta, kind, LABELS)
            assert sample.ratios[j] == pytest.approx(exact, rel=1e-9, abs=1e-12)
            if mode == "absolute":
                assert primal(delta, kind, LABELS) == pytest.approx(r, rel=1e-9)
    for j in range(12):  # the HVP value of a quadratic is the same directional value
        v = directions[j]
        exact = dual(A @ v, kind, LABELS) / primal(v, kind, LABELS)
        assert result.hvp_ratios[j] == pytest.approx(exact, rel=1e-10)


@settings(max_examples=20, deadline=None)
@given(
    d=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    radius=st.floats(1e-3, 10.0),
    mode=st.sampled_from(["absolute", "relative"]),
)
def test_quadratic_max_never_exceeds_the_exact_constant(d, seed, radius, mode):
    A = random_symmetric(d, seed)
    problem = quadratic_problem(A, seed=seed + 1)
    labels = torch.arange(d) % 2 if d > 1 else torch.zeros(d, dtype=torch.int64)
    constants = {
        "l2": float(torch.linalg.matrix_norm(A, 2)),
        "linf": h_inf(A),
        "block": block_upper(A, labels),
    }
    for kind, constant in constants.items():
        geometry = labels if kind == "block" else kind
        result = gradient_differences(
            problem,
            radii=radius,
            geometry=geometry,
            radius_mode=mode,
            samples=24,
            generator=seed,
        )
        estimates = {e.quantity: e for e in result.estimates()}
        tol = 1e-10 * constant
        assert estimates["graddiff_max"].value <= constant + tol, kind
        assert estimates["hvp_ratio_max"].value <= constant + tol, kind
        assert estimates["graddiff_mean"].value <= estimates["graddiff_max"].value + tol


def test_linf_max_reaches_h_inf_when_every_sign_pattern_is_drawn():
    A = random_symmetric(4, seed=11)
    problem = quadratic_problem(A)
    result = gradient_differences(problem, radii=0.5, geometry="linf", samples=256, generator=0)
    # 256 draws from 16 sign patterns miss a given pair ±s with probability (7/8)^256 ≈ 1e-15
    assert float(result.radii[0].ratios.max()) == pytest.approx(h_inf(A), rel=1e-12)


def test_singleton_blocks_equal_linf_and_one_block_is_d_times_l2():
    A = random_symmetric(5, seed=5)
    problem = quadratic_problem(A)
    # singleton blocks draw sign vectors too: every ratio is some ‖As‖₁ (‖s‖∞ = 1)
    values = torch.tensor(
        [
            float((A @ torch.tensor(s, dtype=torch.float64)).abs().sum())
            for s in itertools.product([-1.0, 1.0], repeat=5)
        ]
    )
    for geometry in ("linf", torch.arange(5)):
        ratios = (
            gradient_differences(problem, radii=0.3, geometry=geometry, samples=8, generator=2)
            .radii[0]
            .ratios
        )
        assert all(float((values - x).abs().min()) <= 1e-12 * float(x) for x in ratios)
    one = gradient_differences(
        problem, radii=0.3, geometry=torch.zeros(5, dtype=torch.int64), samples=64, generator=2
    )
    assert float(one.radii[0].ratios.max()) <= 5 * float(torch.linalg.matrix_norm(A, 2)) * (
        1 + 1e-12
    )


def test_basis_maps_differences_by_the_rotation():
    A = random_symmetric(8, seed=4)
    problem = quadratic_problem(A)
    basis = build_basis("hadamard", problem.layout, seed=3)
    R = basis.to_params(torch.eye(8, dtype=torch.float64)).T  # columns R e_i
    result = gradient_differences(
        problem, radii=1e-2, geometry="linf", samples=6, generator=1, basis=basis
    )
    directions = perturbation_directions(
        problem, resolve_geometry("linf"), samples=6, generator=torch.Generator().manual_seed(1)
    )
    rotated = R.T @ A @ R
    for j, v in enumerate(directions):
        exact = dual(rotated @ v, "linf") / primal(v, "linf")
        assert result.radii[0].ratios[j] == pytest.approx(exact, rel=1e-9)
        assert result.hvp_ratios[j] == pytest.approx(exact, rel=1e-9)
    assert result.basis == basis.name


def test_relative_radius_scales_each_tensor_by_its_norm():
    A = random_symmetric(7, seed=1)
    problem = quadratic_problem(A, shapes=[(3,), (4,)])
    with torch.no_grad():  # make the tensors' scales very different
        problem.theta[:3] *= 100.0
    v = perturbation_directions(
        problem,
        resolve_geometry("linf"),
        samples=3,
        generator=torch.Generator().manual_seed(0),
        radius_mode="relative",
    )
    r = 1e-3
    for slot in problem.layout.slots:
        expected = r * float(problem.theta[slot.slice].norm())
        for row in v:
            assert float((r * row[slot.slice]).norm()) == pytest.approx(expected, rel=1e-12)
    scale = coordinate_scale(problem.theta, problem.layout)
    assert float(scale[0]) == pytest.approx(float(problem.theta[:3].norm()) / math.sqrt(3))


def test_estimates_bounds_settings_and_reproducibility():
    problem = quadratic_problem(random_symmetric(5, seed=2))
    state = torch.random.get_rng_state()
    a = gradient_differences(problem, radii=[1e-1, 1e-2], samples=5, generator=9)
    b = gradient_differences(problem, radii=[1e-1, 1e-2], samples=5, generator=9)
    assert torch.equal(torch.random.get_rng_state(), state)
    for x, y in zip(a.radii, b.radii, strict=True):
        assert torch.equal(x.ratios, y.ratios)
    estimates = a.estimates()
    names = [e.quantity for e in estimates]
    assert names == ["graddiff_max", "graddiff_mean"] * 2 + ["hvp_ratio_max", "hvp_ratio_mean"]
    first = estimates[0]
    assert first.bound == Bound.LOWER and estimates[1].bound == Bound.ESTIMATE
    assert first.settings["radius"] == 0.1 and first.settings["samples"] == 5
    assert first.settings["radius_mode"] == "absolute" and first.geometry == "l2"
    assert estimates[1].ci_low <= estimates[1].value <= estimates[1].ci_high
    # 5 perturbed points + ∇L(θ) (+ the vmap check) on the first radius, 5 on the second
    assert first.gradients == 5 + 1 + (a.gradient_mode == "vmap")
    assert estimates[2].gradients == 5
    assert estimates[-1].hvps == 5 and set(first.extra["quantiles"]) == {"0.1", "0.5", "0.9"}


@pytest.mark.parametrize("kind", ["l2", "linf"])
def test_streamed_directions_give_the_same_sweep(kind):
    """Directions alive at once (the memory plan's chunk) never change the result."""
    problem = quadratic_problem(random_symmetric(6, seed=3))
    runs = [
        gradient_differences(
            problem, radii=[1e-1, 1e-3], geometry=kind, samples=5, generator=4, max_directions=m
        )
        for m in (None, 1, 2)
    ]
    same = lambda a, b: torch.allclose(a, b, rtol=1e-10, atol=0)  # noqa: E731 - vmap widths
    for run in runs[1:]:
        assert run.hvps == 5 and same(run.hvp_ratios, runs[0].hvp_ratios)
        for x, y in zip(run.radii, runs[0].radii, strict=True):
            assert same(x.ratios, y.ratios) and torch.equal(x.step_norms, y.step_norms)
            assert x.gradients == y.gradients
    with pytest.raises(SmoothprobeError, match="max_directions"):
        gradient_differences(problem, radii=1.0, max_directions=0)


def test_user_errors():
    problem = quadratic_problem(random_symmetric(4, seed=0))
    for kwargs in (
        {"radii": []},
        {"radii": -1.0},
        {"radii": float("nan")},
        {"radii": 1.0, "samples": 0},
        {"radii": 1.0, "geometry": "l3"},
        {"radii": 1.0, "radius_mode": "percent"},
        {"radii": 1.0, "geometry": torch.tensor([0, 0, 2, 2])},
    ):
        with pytest.raises(SmoothprobeError):
            gradient_differences(problem, **kwargs)
    mixing = build_basis("hadamard", problem.layout, seed=0)
    with pytest.raises(SmoothprobeError, match="mixes tensors"):
        gradient_differences(problem, radii=1.0, radius_mode="relative", basis=mixing)
    with pytest.raises(SmoothprobeError, match="resolution"):
        f32 = problem_from_module(
            problem.model, problem.loss_fn, (torch.zeros(1, 1), torch.zeros(1, 1)), dtype="float32"
        )
        gradient_differences(f32, radii=1e-12, hvp=False)


def test_vmap_and_loop_agree_on_a_net():
    problem = build_example("mlp")
    fast = gradient_differences(
        problem, radii=1e-2, samples=3, generator=0, hvp=False, gradient_mode="vmap"
    )
    slow = gradient_differences(
        problem, radii=1e-2, samples=3, generator=0, hvp=False, gradient_mode="loop"
    )
    assert (fast.gradient_mode, slow.gradient_mode) == ("vmap", "loop")
    assert torch.allclose(fast.radii[0].ratios, slow.radii[0].ratios, rtol=1e-10)


def _second_difference_bound(problem, directions, geometry, s):
    """(1/2)‖∇³L[v, v]‖_*/‖v‖ per direction, from (∇L(θ+sv) + ∇L(θ−sv) − 2∇L(θ)) / s²."""
    g0 = problem.gradient()
    out = []
    for v in directions:
        t = (
            problem.gradient(problem.theta + s * v)
            + problem.gradient(problem.theta - s * v)
            - 2 * g0
        ) / s**2
        out.append(0.5 * float(geometry.dual_norm(t)) / float(geometry.norm(v)))
    return torch.tensor(out)


@pytest.mark.parametrize(("name", "kind"), [("mlp", "l2"), ("mlp", "block"), ("gpt", "linf")])
def test_small_nets_approach_the_hvp_value_as_r_goes_to_zero(name, kind):
    """Taylor: ∇L(θ+rv) − ∇L(θ) = rHv + (r²/2)∇³L[v,v] + O(r³), so by the triangle inequality
    |ρ(r) − ‖Hv‖_*/‖v‖| ≤ (r/2)‖∇³L[v,v]‖_*/‖v‖ + O(r²) (+ round-off eps‖∇L‖_*/(r‖v‖)). The
    third-derivative term is measured per direction by a central second difference; a factor
    1.5 absorbs the O(r²) remainder at these radii."""
    problem = build_example(name)
    geometry = per_tensor(problem.layout) if kind == "block" else kind
    geo = resolve_geometry(geometry)
    radii = [1e-2, 1e-3, 1e-4]
    samples = 3
    result = gradient_differences(
        problem, radii=radii, geometry=geometry, samples=samples, generator=5
    )
    directions = perturbation_directions(
        problem, geo, samples=samples, generator=torch.Generator().manual_seed(5)
    )
    third = _second_difference_bound(problem, directions, geo, s=1e-2)  # ‖v‖ = 1
    hvp = result.hvp_ratios
    gaps = []
    for sample, r in zip(result.radii, radii, strict=True):
        gap = (sample.ratios - hvp).abs()
        roundoff = 100 * result.eps * result.gradient_dual_norm / sample.step_norms
        assert bool((gap <= 1.5 * r * third + roundoff).all()), (r, gap, r * third)
        gaps.append(float((gap / hvp).max()))
    assert gaps[-1] < 5e-3 and gaps[-1] < gaps[0] / 30  # converges, linearly in r (÷100)


def test_models_vmap_cannot_handle_fall_back_to_the_loop_with_a_warning():
    A = random_symmetric(4, seed=8)
    plain = quadratic_problem(A, seed=2)

    def branching(theta, targets):  # data-dependent Python control flow: no vmap
        quadratic = 0.5 * theta @ (A @ theta)
        return quadratic if bool(theta.sum() > -1e30) else -quadratic

    problem = problem_from_module(
        plain.model, branching, (torch.zeros(1, 1), torch.zeros(1, 1)), dtype="float64"
    )
    with pytest.warns(RuntimeWarning, match="falling back"):
        result = gradient_differences(problem, radii=0.1, samples=4, generator=0, hvp=False)
    assert result.gradient_mode == "loop"
    reference = gradient_differences(
        problem, radii=0.1, samples=4, generator=0, hvp=False, gradient_mode="loop"
    )
    assert torch.equal(result.radii[0].ratios, reference.radii[0].ratios)
    with pytest.raises(SmoothprobeError, match="vmapped gradients failed"):
        gradient_differences(problem, radii=0.1, samples=2, hvp=False, gradient_mode="vmap")
