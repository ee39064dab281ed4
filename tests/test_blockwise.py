"""H(Φ) bounds against exact ground truth: enumeration, ε-nets, block-diagonal, spectral cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from smoothprobe.bases import build_basis
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.blockwise import (
    block_lower_bound,
    block_upper_bound,
    dual_norm,
    project_to_sphere,
)
from smoothprobe.estimators.l11 import estimate_l11
from smoothprobe.estimators.sign_ascent import sign_ascent
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.partitions import (
    Partition,
    from_function,
    one_block,
    per_layer,
    per_row,
    per_tensor,
    singleton,
)
from smoothprobe.rotated_operator import RotatedOperator
from smoothprobe.suites.blockwise import measure_blockwise

F64 = torch.float64


def sym(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return (a + a.T) / 2


def diag_dominant(d: int, seed: int) -> torch.Tensor:
    return torch.diag(torch.linspace(1, 5, d, dtype=F64)) + 0.1 * sym(d, seed)


def low_rank_noise(d: int, seed: int, *, rank: int = 3, noise: float = 0.01) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(d, rank, generator=gen, dtype=F64)
    s = torch.tensor([4.0, -2.0, 1.0][:rank], dtype=F64)
    return u @ torch.diag(s) @ u.T + noise * sym(d, seed + 1)


def with_spectrum(eigs: list[float], seed: int) -> torch.Tensor:
    q = torch.linalg.qr(
        torch.randn(len(eigs), len(eigs), dtype=F64, generator=torch.Generator().manual_seed(seed))
    ).Q
    return q @ torch.diag(torch.tensor(eigs, dtype=F64)) @ q.T


MATRICES = {"random": sym, "diag-dominant": diag_dominant, "low-rank+noise": low_rank_noise}


def flat_layout(d: int) -> ParameterLayout:
    return ParameterLayout.from_shapes([("w", (d,))])


def partition_of(sizes: list[int]) -> Partition:
    labels = torch.cat([torch.full((s,), i, dtype=torch.int64) for i, s in enumerate(sizes)])
    return Partition(
        "custom",
        labels,
        tuple(f"b{i}" for i in range(len(sizes))),
        torch.tensor(sizes, dtype=torch.int64),
    )


def exact_u(h: torch.Tensor, p: Partition) -> float:
    """U(Φ) from the dense matrix, block by block."""
    total = 0.0
    for b in range(p.num_blocks):
        for c in range(p.num_blocks):
            ib, ic = p.block_indices(b), p.block_indices(c)
            block = h[ib][:, ic]
            total += math.sqrt(len(ib) * len(ic)) * float(torch.linalg.matrix_norm(block, ord=2))
    return total


def h_inf_by_enumeration(h: torch.Tensor) -> float:
    """H∞ = max over x ∈ {±1}^d of ‖Hx‖₁ (y = sign(Hx) is optimal); x and −x are the same."""
    d = h.shape[0]
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d - 1)), dtype=F64)
    x = torch.cat([signs, torch.ones(len(signs), 1, dtype=F64)], 1)
    return float((x @ h).abs().sum(1).max())


def h_phi_by_net(h: torch.Tensor, p: Partition, *, m: int = 400) -> tuple[float, float]:
    """Exact bracket of H(Φ) for blocks of size 1 or 2: [max over an ε-net, that / (1 − ε)].

    f(x) = ‖Hx‖_Φ* is convex, so its max over the Φ-ball is on the product of block spheres;
    |f(x) − f(x')| ≤ H(Φ)‖x − x'‖_Φ, and every point is within ε = π/m (Φ-norm) of the net.
    """
    axes = []
    for b in range(p.num_blocks):
        s = int(p.sizes[b])
        if s == 1:
            axes.append(torch.tensor([[-1.0], [1.0]], dtype=F64))
        else:
            assert s == 2
            t = torch.arange(m, dtype=F64) * 2 * math.pi / m
            axes.append(math.sqrt(2) * torch.stack([t.cos(), t.sin()], 1))
    grids = torch.meshgrid(*[torch.arange(len(a)) for a in axes], indexing="ij")
    parts = [a[g.reshape(-1)] for a, g in zip(axes, grids, strict=True)]
    x = torch.zeros(parts[0].shape[0], p.d, dtype=F64)
    for b, part in enumerate(parts):
        x[:, p.block_indices(b)] = part
    best = float(dual_norm(x @ h, p).max())
    eps = math.pi / m if any(int(s) == 2 for s in p.sizes) else 0.0
    return best, best / (1 - eps)


@pytest.mark.parametrize("kind", list(MATRICES))
def test_singleton_is_linf(kind):
    d = 11
    h = MATRICES[kind](d, 0)
    op = DenseOperator(h, layout=flat_layout(d))
    p = singleton(op.layout)
    u = block_upper_bound(op, p)
    assert u.certified and u.method == "exact" and u.hvps == d
    assert u.value == pytest.approx(float(h.abs().sum()), rel=1e-12)  # U = ‖H‖₁,₁
    truth = h_inf_by_enumeration(h)
    low = block_lower_bound(op, p, restarts=64, iterations=50, generator=1)
    assert low.value <= truth * (1 + 1e-12)
    if kind == "diag-dominant":
        # every sign vector is (nearly) a fixed point of x ↦ sign(Hx): restarts decide
        assert low.value >= 0.9 * truth
    else:
        assert low.value >= truth * (1 - 1e-9)  # sign ascent finds the max on tiny d
    x = low.x
    assert bool((x.abs() == 1).all())  # singleton Φ-sphere = sign vectors
    assert float((torch.sign(h @ x) * (h @ x)).sum()) == pytest.approx(low.value, rel=1e-12)


@pytest.mark.parametrize("kind", list(MATRICES))
def test_singleton_matches_linf_estimators(kind):
    """Singleton Φ reproduces the ℓ∞ estimators: exact ‖H‖₁,₁ and sign ascent from equal starts."""
    d = 40
    h = MATRICES[kind](d, 2)
    op = DenseOperator(h, layout=flat_layout(d))
    p = singleton(op.layout)
    l11 = estimate_l11(op, method="exact", max_hvps=d).estimate
    assert block_upper_bound(op, p).value == pytest.approx(l11.value, rel=1e-12)
    gen = torch.Generator().manual_seed(4)
    starts = torch.randint(0, 2, (6, d), generator=gen).to(F64) * 2 - 1
    ours = block_lower_bound(op, p, restarts=0, init=starts, iterations=30, tol=1e-12)
    theirs = sign_ascent(op, restarts=0, starts=starts, max_iters=30)
    assert ours.value == pytest.approx(theirs.value, rel=1e-12)


@pytest.mark.parametrize("kind", list(MATRICES))
def test_one_block_is_d_l2(kind):
    d = 30
    h = MATRICES[kind](d, 1)
    op = DenseOperator(h, layout=flat_layout(d))
    d_l2 = d * float(torch.linalg.eigvalsh(h).abs().max())
    u = block_upper_bound(op, one_block(op.layout))
    assert u.value == pytest.approx(d_l2, rel=1e-12) and u.certified


def test_one_block_lower_converges_to_d_l2():
    eigs = [6.0, -3.0, 2.0] + [0.5] * 17
    h = with_spectrum(eigs, 0)
    op = DenseOperator(h, layout=flat_layout(20))
    low = block_lower_bound(op, one_block(op.layout), restarts=4, iterations=200, tol=1e-13)
    assert low.value <= 20 * 6.0 * (1 + 1e-12)
    assert low.value == pytest.approx(20 * 6.0, rel=1e-10)


def test_block_diagonal_u_equals_h_and_lower_converges():
    sizes = [1, 3, 4, 2, 5]
    blocks, truth = [], 0.0
    for i, s in enumerate(sizes):
        eigs = [3.0 + i, -1.0] + [0.3] * (s - 2) if s >= 2 else [-(2.0 + i)]
        blocks.append(with_spectrum(eigs, i))
        truth += s * max(abs(e) for e in eigs)
    h = torch.block_diag(*blocks)
    p = partition_of(sizes)
    op = DenseOperator(h, layout=flat_layout(p.d))
    u = block_upper_bound(op, p)
    assert u.value == pytest.approx(truth, rel=1e-12)  # U(Φ) = Σ d_b‖H_bb‖₂ = H(Φ)
    low = block_lower_bound(op, p, restarts=4, iterations=300, tol=1e-14)
    assert truth * (1 - 1e-9) <= low.value <= truth * (1 + 1e-12)
    m = u.contribution_matrix()
    torch.testing.assert_close(
        torch.diag(m),
        torch.tensor(
            [
                s * float(torch.linalg.matrix_norm(b, ord=2))
                for s, b in zip(sizes, blocks, strict=True)
            ],
            dtype=F64,
        ),
    )
    assert float((m - torch.diag(torch.diag(m))).abs().max()) < 1e-12


@pytest.mark.parametrize(
    "sizes, seed", [([2, 1, 2], 0), ([2, 2, 1], 1), ([1, 2, 1, 1], 2), ([2, 2], 3)]
)
@pytest.mark.parametrize("kind", list(MATRICES))
def test_sandwich_against_net_bracket(sizes, seed, kind):
    p = partition_of(sizes)
    h = MATRICES[kind](p.d, seed)
    op = DenseOperator(h, layout=flat_layout(p.d))
    net_low, net_high = h_phi_by_net(h, p)
    u = block_upper_bound(op, p)
    low = block_lower_bound(op, p, restarts=32, iterations=300, generator=seed)
    assert u.value == pytest.approx(exact_u(h, p), rel=1e-12)
    assert low.value <= net_high  # certified lower ≤ H(Φ)
    assert u.value >= net_low * (1 - 1e-12)  # U(Φ) ≥ H(Φ)
    assert low.value >= net_low * (1 - 1e-6)  # restarts find the maximum on tiny cases


LAYOUT = ParameterLayout.from_shapes(
    [("net.0.weight", (6, 4)), ("net.0.bias", (6,)), ("net.2.weight", (3, 6)), ("net.2.bias", (3,))]
)


@pytest.mark.parametrize("kind", list(MATRICES))
def test_refinement_chain(kind):
    """H∞ ≤ H(row) ≤ H(tensor) ≤ H(layer) ≤ d·L₂: every certified lower ≤ every coarser U."""
    h = MATRICES[kind](LAYOUT.d, 4)
    op = DenseOperator(h, layout=LAYOUT)
    chain = [
        singleton(LAYOUT),
        per_row(LAYOUT),
        per_tensor(LAYOUT),
        per_layer(LAYOUT),
        one_block(LAYOUT),
    ]
    lows = [block_lower_bound(op, p, restarts=8, iterations=100).value for p in chain]
    ups = [block_upper_bound(op, p).value for p in chain]
    for i, low in enumerate(lows):
        for up in ups[i:]:
            assert low <= up * (1 + 1e-12)
    assert ups[0] == pytest.approx(float(h.abs().sum()), rel=1e-12)
    assert ups[-1] == pytest.approx(
        LAYOUT.d * float(torch.linalg.eigvalsh(h).abs().max()), rel=1e-12
    )
    for p, up in zip(chain, ups, strict=True):
        assert up == pytest.approx(exact_u(h, p), rel=1e-11)


def test_ascent_is_monotone_batched_and_seeded():
    h = sym(LAYOUT.d, 7)
    op = DenseOperator(h, layout=LAYOUT)
    p = per_row(LAYOUT)
    steps = []
    state = torch.random.get_rng_state()
    low = block_lower_bound(
        op,
        p,
        restarts=5,
        iterations=40,
        tol=0.0,
        generator=3,
        callback=lambda t, v: steps.append(v.clone()),
    )
    assert torch.equal(state, torch.random.get_rng_state())
    vals = torch.stack(steps)
    assert bool((vals[1:] >= vals[:-1] - 1e-10 * vals[:-1].abs()).all())
    assert low.hvps == 5 * low.iterations + 1 and op.cost.hvps == low.hvps  # + final check
    assert low.asymmetry < 1e-12
    again = block_lower_bound(op, p, restarts=5, iterations=40, tol=0.0, generator=3)
    assert again.value == low.value
    # the value is yᵀHx at an explicit feasible pair
    x = low.x
    assert float((p.block_norms(x) / p.sizes.to(F64).sqrt()).max()) <= 1 + 1e-12
    y = project_to_sphere((h @ x).reshape(1, -1), p)[0]
    assert float(y @ h @ x) == pytest.approx(low.value, rel=1e-12)
    est = low.estimate()
    assert est.bound is Bound.LOWER and est.quantity == "block_lower"
    init = block_lower_bound(op, p, restarts=0, init=low.x, iterations=3)
    assert init.value >= low.value * (1 - 1e-12)


def test_sketch_is_below_exact_and_exact_for_low_rank():
    d = LAYOUT.d
    op = DenseOperator(low_rank_noise(d, 0, noise=0.0), layout=LAYOUT)
    p = per_layer(LAYOUT)  # widths 30 and 21 > p(2q+1) = 12: both sketched
    exact = block_upper_bound(op, p, method="exact")
    sk = block_upper_bound(op, p, method="sketch", sketch=4, iterations=1)
    assert sk.sketched_columns == 2 and not sk.certified
    assert sk.hvps == 2 * 4 * 3
    assert sk.value == pytest.approx(exact.value, rel=1e-9)  # rank 3 ≤ p: subspace is exact
    assert sk.upper_whp >= exact.value
    noisy = DenseOperator(sym(d, 1), layout=LAYOUT)
    for q in (0, 2):
        part = per_row(LAYOUT)
        ex = block_upper_bound(noisy, part, method="exact")
        s = block_upper_bound(noisy, part, method="sketch", sketch=1, iterations=q)
        assert torch.all(s.norms <= ex.norms * (1 + 1e-10) + 1e-12)  # lower estimates
        assert s.value <= ex.value * (1 + 1e-12)
        assert s.upper_whp >= ex.value  # probabilistic, holds for this seed
        est = s.estimate()
        assert est.bound is Bound.ESTIMATE and est.ci_high == s.upper_whp
        assert est.confidence == pytest.approx(1 - 2e-3)


def test_row_frobenius_bound():
    d = LAYOUT.d
    h = diag_dominant(d, 3)
    op = DenseOperator(h, layout=LAYOUT)
    p = per_row(LAYOUT)
    root = p.sizes.to(F64).sqrt()
    rows_f = torch.stack([h[p.block_indices(b)].norm() for b in range(p.num_blocks)])
    formula = math.sqrt(d) * float((root * rows_f).sum())
    assert formula >= exact_u(h, p)  # the cheap bound is an upper bound on U(Φ)
    r = block_upper_bound(op, p, method="row-frobenius", frobenius_probes=400, generator=0)
    assert r.hvps == 400 and r.norms is None and not r.certified
    assert abs(r.value - formula) <= 4 * r.stderr
    assert r.stderr < 0.05 * formula
    est = r.estimate()
    assert est.method == "row-frobenius" and est.bound is Bound.ESTIMATE and est.stderr > 0


def test_auto_method_follows_budget():
    op = DenseOperator(sym(LAYOUT.d, 0), layout=LAYOUT)
    p = per_layer(LAYOUT)
    assert block_upper_bound(op, p).method == "exact"
    assert block_upper_bound(op, p, max_hvps=LAYOUT.d).method == "exact"
    assert block_upper_bound(op, p, max_hvps=30, sketch=2, iterations=2).method == "sketch"
    r = block_upper_bound(op, p, max_hvps=10, frobenius_probes=8)
    assert r.method == "row-frobenius" and r.hvps == 8
    with pytest.raises(SmoothprobeError, match="upper method"):
        block_upper_bound(op, p, method="svd")


def test_heatmap_export_and_estimate():
    h = sym(LAYOUT.d, 2)
    op = DenseOperator(h, layout=LAYOUT)
    p = per_tensor(LAYOUT)
    u = block_upper_bound(op, p)
    m = u.contribution_matrix()
    assert m.shape == (4, 4)
    torch.testing.assert_close(m, m.T)
    assert float(m.sum()) == pytest.approx(u.value, rel=1e-12)
    est = u.estimate()
    assert est.bound is Bound.UPPER and est.geometry == "block"
    assert est.settings["partition"] == "tensor" and est.extra["certified"]
    torch.testing.assert_close(torch.tensor(est.extra["contributions"], dtype=F64), m)
    small = block_upper_bound(op, p, max_matrix_blocks=2)
    assert small.norms is None and float(small.contributions.sum()) == pytest.approx(u.value)
    with pytest.raises(SmoothprobeError, match="not kept"):
        small.contribution_matrix()


def test_rotated_bases():
    """One-block U is rotation invariant; permutation/sign keep the singleton U = ‖H‖₁,₁."""
    spread = torch.where(torch.arange(LAYOUT.d) % 3 == 0, 10.0, 1.0).to(F64)
    h = torch.diag(spread) + 0.05 * sym(LAYOUT.d, 5)
    op = DenseOperator(h, layout=LAYOUT)
    base_one = block_upper_bound(op, one_block(LAYOUT)).value
    base_l11 = block_upper_bound(op, singleton(LAYOUT)).value
    for spec in ("hadamard", "block-haar:8", "matrix", "permutation", "sign"):
        rot = RotatedOperator(op, build_basis(spec, LAYOUT, seed=1))
        assert block_upper_bound(rot, one_block(LAYOUT)).value == pytest.approx(base_one, rel=1e-10)
        l11 = block_upper_bound(rot, singleton(LAYOUT)).value
        if spec in ("permutation", "sign"):
            assert l11 == pytest.approx(base_l11, rel=1e-12)
        else:
            assert l11 > 1.2 * base_l11
    rot = RotatedOperator(op, build_basis("hadamard", LAYOUT, seed=1))
    dense = DenseOperator(
        torch.stack([rot.matvec(e) for e in torch.eye(LAYOUT.d, dtype=F64)]), layout=LAYOUT
    )
    p = per_row(LAYOUT)
    a = block_lower_bound(rot, p, restarts=4, iterations=30, tol=0.0, generator=2)
    b = block_lower_bound(dense, p, restarts=4, iterations=30, tol=0.0, generator=2)
    assert a.value == pytest.approx(b.value, rel=1e-9)


def test_measure_blockwise_suite():
    h = diag_dominant(LAYOUT.d, 0)
    op = RotatedOperator(DenseOperator(h, layout=LAYOUT), build_basis("sign", LAYOUT, seed=0))
    p = per_tensor(LAYOUT)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    out = measure_blockwise(op, p, restarts=4, iterations=50, l2_norm=l2, generator=0).estimates()
    assert [e.quantity for e in out] == ["block_upper", "block_lower", "rho_block"]
    assert all(isinstance(e, Estimate) and e.geometry == "block" for e in out)
    assert all(
        e.settings["partition"] == "tensor" and e.settings["basis"] == "sign:seed=0" for e in out
    )
    upper, lower, rho = out
    assert lower.value <= upper.value and upper.bound is Bound.UPPER
    assert rho.value == pytest.approx(upper.value / (LAYOUT.d * l2))
    assert rho.extra["low"] == pytest.approx(lower.value / (LAYOUT.d * l2))
    assert rho.bound is Bound.UPPER and 0 < rho.extra["low"] <= rho.value <= 1 + 1e-12
    l2_est = Estimate(quantity="l2_norm", value=l2, bound=Bound.ESTIMATE)
    est = measure_blockwise(op, p, restarts=2, iterations=5, l2_norm=l2_est).estimates()[2]
    assert est.bound is Bound.ESTIMATE
    assert len(measure_blockwise(op, p, restarts=2, iterations=5).estimates()) == 2
    limited = measure_blockwise(
        op, p, restarts=2, iterations=5, max_hvps=20, frobenius_probes=4
    ).estimates()
    assert limited[0].method == "row-frobenius" and limited[0].hvps == 4
    with pytest.raises(SmoothprobeError, match="max_hvps"):
        measure_blockwise(op, p, restarts=4, iterations=50, max_hvps=100).estimates()
    with pytest.raises(SmoothprobeError, match="same layout"):
        measure_blockwise(op, one_block(flat_layout(3))).estimates()


def test_user_partition_from_function():
    h = sym(LAYOUT.d, 9)
    op = DenseOperator(h, layout=LAYOUT)
    p = from_function(LAYOUT, lambda s: "w" if s.name.endswith("weight") else "b")
    assert block_upper_bound(op, p).value == pytest.approx(exact_u(h, p), rel=1e-12)


@pytest.mark.slow
def test_real_mlp_ground_truth():
    """The trained digits MLP (d = 2,410): exact dense Hessian, every partition bracketed."""
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    from smoothprobe.linear_operator import dense_matrix

    problem = examples.build_example("mlp")
    hvp = problem.hvp_operator()
    h = dense_matrix(hvp, chunk=256)
    op = DenseOperator(h, layout=problem.layout)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    d = problem.d
    results = {}
    for p in (
        singleton(op.layout),
        per_row(op.layout),
        per_tensor(op.layout),
        per_layer(op.layout),
        one_block(op.layout),
    ):
        u = block_upper_bound(op, p)
        low = block_lower_bound(op, p, restarts=4, iterations=60)
        assert u.certified and low.value <= u.value * (1 + 1e-12)
        assert l2 * (1 - 1e-9) <= low.value <= d * l2 * (1 + 1e-9)  # L₂ ≤ H(Φ) ≤ d·L₂
        results[p.name] = (low.value, u.value)
    assert results["singleton"][1] == pytest.approx(float(h.abs().sum()), rel=1e-10)
    assert results["one"][1] == pytest.approx(d * l2, rel=1e-10)
    assert results["one"][0] == pytest.approx(d * l2, rel=1e-3)
    names = list(results)
    for i, fine in enumerate(names):  # finer partitions' lower ≤ coarser partitions' U
        assert all(results[fine][0] <= results[c][1] * (1 + 1e-12) for c in names[i:])
    # the real HVP operator gives the same ascent as its dense matrix
    p = per_tensor(op.layout)
    a = block_lower_bound(hvp, p, restarts=2, iterations=3, tol=0.0, generator=5)
    b = block_lower_bound(op, p, restarts=2, iterations=3, tol=0.0, generator=5)
    assert a.value == pytest.approx(b.value, rel=1e-9)


def test_streamed_block_norms_match_gathered():
    """Above the gather limit every block's Gram is summed over chunks: same σ_max, any width."""
    from smoothprobe.estimators.blockwise_columns import _left_multiply, block_spectral_norms

    layout = ParameterLayout.from_shapes([("a", (1,)), ("b", (2, 3)), ("c", (7,)), ("d", (2,))])
    gen = torch.Generator().manual_seed(0)
    for partition in (per_tensor(layout), per_row(layout), singleton(layout)):
        for w in (2, 3, 5):
            rows = torch.randn(w, layout.d, generator=gen, dtype=F64)
            gathered = block_spectral_norms(rows, partition)
            streamed = block_spectral_norms(rows, partition, gather_entries=w * 2)
            torch.testing.assert_close(streamed, gathered, rtol=1e-12, atol=1e-12)
            for b in range(partition.num_blocks):
                block = rows[:, partition.block_indices(b)]
                assert math.isclose(
                    float(gathered[b]), float(torch.linalg.matrix_norm(block, 2)), rel_tol=1e-12
                )
    m = torch.randn(3, 3, generator=gen, dtype=F64)
    rows = torch.randn(3, 11, generator=gen, dtype=F64)
    expected = m @ rows
    _left_multiply(m, rows, entries=6)  # column chunks of 2
    torch.testing.assert_close(rows, expected)


def test_sketch_holds_one_probe_chunk():
    """Probes are built one chunk at a time: the operator never sees more than ``chunk`` rows,
    and a float32 operator gets float32 probes (the sketch's images stay in its dtype)."""
    h = low_rank_noise(12, 3)
    layout = ParameterLayout.from_shapes([("a", (6,)), ("b", (6,))])
    seen = []

    class Recording(DenseOperator):
        def matvec(self, v):
            seen.append((v.shape[0] if v.ndim == 2 else 1, v.dtype))
            return super().matvec(v)

    op = Recording(h.to(torch.float32), layout=layout)
    r = block_upper_bound(op, per_tensor(layout), method="sketch", sketch=2, chunk_size=1)
    assert seen and all(k == 1 and dt == torch.float32 for k, dt in seen)
    exact = block_upper_bound(DenseOperator(h, layout=layout), per_tensor(layout), method="exact")
    assert r.value <= exact.value * (1 + 1e-5)
    assert r.value >= 0.9 * exact.value


def test_orthonormalize_in_place_returns_the_map():
    from smoothprobe.estimators.blockwise_columns import _orthonormalize

    gen = torch.Generator().manual_seed(1)
    rows = torch.randn(4, 50, generator=gen, dtype=F64)
    old = rows.clone()
    t = _orthonormalize(rows, entries=40)  # column chunks of 10
    torch.testing.assert_close(rows @ rows.T, torch.eye(4, dtype=F64), atol=1e-13, rtol=0)
    torch.testing.assert_close(t @ old, rows)
    deficient = old.clone()
    deficient[2] = deficient[0] + deficient[1]  # rank 3: one direction becomes a zero row
    _orthonormalize(deficient)
    gram = deficient @ deficient.T
    assert int((deficient.abs().amax(1) == 0).sum()) == 1
    torch.testing.assert_close(gram, torch.diag(torch.diagonal(gram)), atol=1e-13, rtol=0)
    assert sorted(torch.diagonal(gram).round().tolist()) == [0.0, 1.0, 1.0, 1.0]
