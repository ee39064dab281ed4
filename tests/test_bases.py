"""Bases: orthogonality, inverse, seeding, structure, invariances of RᵀHR, specs and speed."""

from __future__ import annotations

import time

import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe.bases import (
    BlockHaarBasis,
    DenseMap,
    HadamardBasis,
    MatrixBasis,
    PermutationBasis,
    SignBasis,
    build_basis,
    fwht,
)
from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import DenseOperator, dense_matrix
from smoothprobe.rotated_operator import RotatedOperator

SPECS = [
    "identity",
    "hadamard",
    "block-haar:5",
    "block-haar:1000",
    "matrix",
    "permutation",
    "sign",
    "permutation+hadamard",
    "matrix+sign",
]

LAYOUT = ParameterLayout.from_shapes(
    [
        ("conv.weight", (3, 2, 2, 2)),
        ("conv.bias", (3,)),
        ("fc.weight", (4, 6)),
        ("fc.bias", (4,)),
        ("scale", ()),
    ]
)  # d = 24 + 3 + 24 + 4 + 1 = 56


def as_matrix(basis) -> torch.Tensor:
    """R as a dense matrix: column j is R e_j."""
    return basis.to_params(torch.eye(basis.d, dtype=torch.float64)).T


def l11(m: torch.Tensor) -> float:
    return float(m.abs().sum())


@pytest.mark.parametrize("spec", SPECS)
def test_orthogonal_invertible_adjoint(spec):
    b = build_basis(spec, LAYOUT, seed=3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, b.d, generator=gen, dtype=torch.float64)
    y = torch.randn(5, b.d, generator=gen, dtype=torch.float64)
    rx = b.to_params(x)
    torch.testing.assert_close(b.from_params(rx), x, rtol=0, atol=1e-12)  # RᵀR = I
    torch.testing.assert_close(b.to_params(b.from_params(y)), y, rtol=0, atol=1e-12)  # RRᵀ = I
    torch.testing.assert_close(rx.norm(dim=1), x.norm(dim=1), rtol=1e-13, atol=0)
    torch.testing.assert_close(
        (rx * y).sum(1), (x * b.from_params(y)).sum(1), rtol=1e-12, atol=1e-12
    )  # ⟨Rx, y⟩ = ⟨x, Rᵀy⟩
    r = as_matrix(b)
    torch.testing.assert_close(r.T @ r, torch.eye(b.d, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(b.to_params(x[0]), rx[0])  # (d,) and (k, d) agree


@pytest.mark.parametrize("spec", SPECS)
def test_float32_and_low_precision(spec):
    b = build_basis(spec, LAYOUT, seed=0)
    x = torch.randn(3, b.d, generator=torch.Generator().manual_seed(0))
    rx = b.to_params(x)
    assert rx.dtype == torch.float32
    torch.testing.assert_close(b.from_params(rx), x, rtol=0, atol=2e-6)
    assert b.to_params(x.to(torch.bfloat16)).dtype == torch.float32  # never below float32
    assert b.to_params(x.to(torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("spec", SPECS)
def test_seeded_and_name_round_trip(spec):
    a, b = build_basis(spec, LAYOUT, seed=7), build_basis(spec, LAYOUT, seed=7)
    x = torch.randn(2, LAYOUT.d, dtype=torch.float64)
    torch.testing.assert_close(a.to_params(x), b.to_params(x), rtol=0, atol=0)
    again = build_basis(a.name, LAYOUT, seed=12345)  # the name carries the seeds
    assert again.name == a.name
    torch.testing.assert_close(again.to_params(x), a.to_params(x), rtol=0, atol=0)
    if spec != "identity":
        other = build_basis(spec, LAYOUT, seed=8)
        assert not torch.equal(other.to_params(x), a.to_params(x))


def test_global_rng_untouched():
    state = torch.random.get_rng_state()
    for spec in SPECS:
        build_basis(spec, LAYOUT, seed=1).to_params(torch.ones(LAYOUT.d))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32, 64, 256, 2048])
def test_fwht_matches_scipy(n):
    x = torch.randn(3, n, dtype=torch.float64)
    h = torch.tensor(scipy.linalg.hadamard(n), dtype=torch.float64) / n**0.5
    torch.testing.assert_close(fwht(x), x @ h.T, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="power-of-two"):
        fwht(torch.ones(3))


def test_hadamard_structure():
    r = as_matrix(HadamardBasis(64, seed=0))  # d = 2^6: R = P·D·W·D, entries ±1/8
    torch.testing.assert_close(r.abs(), torch.full((64, 64), 1 / 8, dtype=torch.float64))
    r = as_matrix(HadamardBasis(37, seed=0))  # overlapping windows: every output mixes all
    assert float((r.abs() > 1e-12).double().mean()) > 0.9
    for d in (37, 48, 63, 65):
        q = as_matrix(HadamardBasis(d, seed=2))
        torch.testing.assert_close(q.T @ q, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-12)


def test_block_haar_structure():
    d, k = 23, 5
    r = as_matrix(BlockHaarBasis(d, chunk=k, seed=0))
    chunk = torch.arange(d) // k
    off = chunk[:, None] != chunk[None, :]
    assert float(r[off].abs().max()) == 0.0 and float(r[~off].abs().min()) > 0
    full = as_matrix(BlockHaarBasis(6, chunk=100, seed=0))
    assert float(full.abs().min()) > 0  # k ≥ d: one dense Haar rotation
    # Haar: E[R_00²] = 1/k (mean over seeds, with a loose tolerance)
    vals = torch.stack([BlockHaarBasis(3, chunk=3, seed=s).blocks[0, 0, 0] for s in range(400)])
    assert abs(float(vals.square().mean()) - 1 / 3) < 0.06
    with pytest.raises(SmoothprobeError, match="GiB"):
        BlockHaarBasis(10**9, chunk=4096, seed=0)


def test_matrix_basis_is_kronecker_per_tensor():
    b = MatrixBasis(LAYOUT, seed=0)
    r = as_matrix(b)
    slots = LAYOUT.slots
    owner = torch.cat([torch.full((s.numel,), i) for i, s in enumerate(slots)])
    assert float(r[owner[:, None] != owner[None, :]].abs().max()) == 0.0  # stays in its tensor
    fc = LAYOUT.slot("fc.weight")
    part = next(p for p in b.parts if p[0] == fc.start)
    u, v = part[4].q, part[5].q
    torch.testing.assert_close(r[fc.slice, fc.slice], torch.kron(u, v))  # vec(UWVᵀ) = (U⊗V)w
    s = LAYOUT.slot("scale")
    assert float(r[s.start, s.start]) == 1.0  # a scalar is left alone
    keep = MatrixBasis(LAYOUT, seed=0, vectors="identity")
    rk = as_matrix(keep)
    cb = LAYOUT.slot("conv.bias")
    torch.testing.assert_close(rk[cb.slice, cb.slice], torch.eye(3, dtype=torch.float64))
    wide = MatrixBasis(LAYOUT, seed=0, max_dense=3)  # sides > 3 use randomized Hadamard maps
    assert not any(isinstance(p[5], DenseMap) for p in wide.parts if p[3] > 3)
    rw = as_matrix(wide)
    torch.testing.assert_close(
        rw.T @ rw, torch.eye(LAYOUT.d, dtype=torch.float64), rtol=0, atol=1e-12
    )


def spd_diagonal_dominant(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64) * 0.05
    lam = torch.where(torch.arange(d) % 3 == 0, 10.0, 1.0).to(torch.float64)
    return torch.diag(lam) + (a + a.T) / 2


@pytest.mark.parametrize("spec", SPECS)
def test_rotated_operator_spectrum_and_l11(spec):
    h = spd_diagonal_dominant(LAYOUT.d, 0)
    op = DenseOperator(h, layout=LAYOUT)
    b = build_basis(spec, LAYOUT, seed=5)
    rot = RotatedOperator(op, b)
    hr = dense_matrix(rot)
    r = as_matrix(b)
    torch.testing.assert_close(hr, r.T @ h @ r, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        torch.linalg.eigvalsh(hr), torch.linalg.eigvalsh(h), rtol=0, atol=1e-10
    )  # spectrum (λ_max, L₂) invariant
    ratio = l11(hr) / l11(h)
    if spec in ("identity", "permutation", "sign"):
        assert ratio == pytest.approx(1.0, rel=1e-12)
    elif spec in ("hadamard", "block-haar:1000", "permutation+hadamard", "matrix", "matrix+sign"):
        assert ratio > 1.5  # a mixing rotation spreads the dominant diagonal
    else:
        assert ratio > 1.05
    assert rot.layout is op.layout and rot.cost is op.cost


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 40), seed=st.integers(0, 2**31), kind=st.sampled_from(["p", "s"]))
def test_permutation_and_sign_keep_l11(d, seed, kind):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    h = (a + a.T) / 2
    layout = ParameterLayout.from_shapes([("w", (d,))])
    b = PermutationBasis(d, seed=seed) if kind == "p" else SignBasis(d, seed=seed)
    hr = dense_matrix(RotatedOperator(DenseOperator(h, layout=layout), b))
    assert l11(hr) == pytest.approx(l11(h), rel=1e-12)
    assert torch.sort(hr.abs().reshape(-1)).values.allclose(torch.sort(h.abs().reshape(-1)).values)


def test_rotated_operator_dtype_cost_and_errors():
    h = spd_diagonal_dominant(LAYOUT.d, 1).to(torch.bfloat16)
    op = DenseOperator(h, layout=LAYOUT)
    rot = RotatedOperator(op, build_basis("hadamard", LAYOUT, seed=0))
    assert rot.dtype == torch.float32
    out = rot.matvec(torch.randn(3, LAYOUT.d))
    assert out.dtype == torch.float32 and out.shape == (3, LAYOUT.d)
    assert rot.matvec(torch.randn(LAYOUT.d)).shape == (LAYOUT.d,)
    assert op.cost.hvps == 4
    with pytest.raises(SmoothprobeError, match="same layout"):
        RotatedOperator(op, HadamardBasis(10, seed=0))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("foo", "unknown basis"),
        ("block-haar", "chunk size"),
        ("block-haar:x", "non-negative"),
        ("block-haar:0", "must be ≥ 1"),
        ("hadamard:3", "takes no argument"),
        ("sign:bogus=1", "unknown option"),
        ("", "empty basis"),
        ("hadamard+", "empty basis"),
        ("matrix:vectors=rows", "vectors"),
    ],
)
def test_build_basis_errors(spec, message):
    with pytest.raises(SmoothprobeError, match=message) as err:
        build_basis(spec, LAYOUT, seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(SmoothprobeError, match="seed"):
        build_basis("sign", LAYOUT, seed=-1)


def test_hadamard_fast_at_one_million():
    """One application at d = 10⁶ (3 overlapping 2^19 transforms): well under a second."""
    b = HadamardBasis(10**6, seed=0)
    x = torch.randn(1, 10**6, generator=torch.Generator().manual_seed(0))
    b.to_params(x)
    best = min(_timed(lambda: b.to_params(x)) for _ in range(3))
    assert best < 1.0, f"{best:.2f} s"
    torch.testing.assert_close(b.from_params(b.to_params(x)), x, rtol=0, atol=1e-5)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
