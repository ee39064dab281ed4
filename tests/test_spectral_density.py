"""Stochastic Lanczos quadrature against exact spectra."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.sampling import rademacher
from smoothprobe.estimators.spectral_density import (
    block_lanczos_quadrature,
    smoothed_density,
    spectral_density,
)
from smoothprobe.linear_operator import DenseOperator


def with_spectrum(eigs: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(
        torch.randn(eigs.numel(), eigs.numel(), generator=g, dtype=torch.float64)
    )
    h = (q * eigs) @ q.T
    return (h + h.T) / 2


def bimodal(d: int = 400, seed: int = 0) -> torch.Tensor:
    """Eigenvalues: a bulk around 0 (60%), a bump at 3 (40%) and two outliers."""
    g = torch.Generator().manual_seed(seed)
    n0 = int(0.6 * (d - 2))
    eigs = torch.cat(
        [
            0.5 * torch.randn(n0, generator=g, dtype=torch.float64),
            3.0 + 0.3 * torch.randn(d - 2 - n0, generator=g, dtype=torch.float64),
            torch.tensor([9.0, -4.0], dtype=torch.float64),
        ]
    )
    return eigs


def test_quadrature_reproduces_moments_up_to_degree_2m_minus_1():
    eigs = bimodal(200, 1)
    h = with_spectrum(eigs, 1)
    g = torch.Generator().manual_seed(0)
    v = rademacher(3, 200, generator=g) / math.sqrt(200)
    steps = 6
    quads = block_lanczos_quadrature(DenseOperator(h), v, steps=steps)
    for row, (nodes, weights) in zip(v, quads, strict=True):
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        power = row.clone()
        for p in range(1, 2 * steps):
            power = h @ power
            exact = float(row @ power)  # vᵀHᵖv
            assert float((weights * nodes**p).sum()) == pytest.approx(exact, rel=1e-8, abs=1e-10)


def test_density_matches_the_exact_smoothed_density():
    eigs = bimodal()
    op = DenseOperator(with_spectrum(eigs, 0))
    sd = spectral_density(op, max_hvps=600, steps=60, generator=2)
    dx = sd.grid[1] - sd.grid[0]
    exact = smoothed_density(
        sd.grid, [(eigs.numpy(), np.full(eigs.numel(), 1 / eigs.numel()))], sd.sigma
    )
    assert sd.density.sum() * dx == pytest.approx(1.0, abs=1e-3)
    assert np.abs(sd.density - exact).sum() * dx < 0.1  # L1 distance of two densities (max 2)
    assert sd.grid[0] < float(eigs.min()) and sd.grid[-1] > float(eigs.max())
    assert sd.hvps == 600 == op.cost.hvps
    truth = float((eigs < 0).double().mean())
    assert abs(sd.negative_mass - truth) <= 4 * sd.negative_mass_stderr + 0.03


def test_invariant_subspaces_stop_runs_early_and_exactly():
    eigs = torch.tensor([1.0] * 30 + [-2.0] * 20 + [5.0] * 10, dtype=torch.float64)
    op = DenseOperator(torch.diag(eigs))
    sd = spectral_density(op, max_hvps=160, steps=40, generator=0)
    assert sd.hvps == 4 * 3  # three distinct eigenvalues: each run breaks down after 3 steps
    for nodes, weights in zip(sd.nodes, sd.weights, strict=True):
        np.testing.assert_allclose(nodes, [-2.0, 1.0, 5.0], atol=1e-10)
        assert weights.sum() == pytest.approx(1.0)
    mass = np.mean([w for w in sd.weights], axis=0)
    np.testing.assert_allclose(mass, [20 / 60, 30 / 60, 10 / 60], atol=0.15)


def test_orthogonal_change_of_basis_leaves_the_density_distribution_alone():
    eigs = bimodal(300, 3)
    a = spectral_density(
        DenseOperator(with_spectrum(eigs, 4)), max_hvps=600, steps=50, sigma=0.3, generator=1
    )
    b = spectral_density(
        DenseOperator(with_spectrum(eigs, 5)), max_hvps=600, steps=50, sigma=0.3, generator=1
    )
    grid = np.linspace(-6, 11, 400)
    da = smoothed_density(grid, list(zip(a.nodes, a.weights, strict=True)), 0.3)
    db = smoothed_density(grid, list(zip(b.nodes, b.weights, strict=True)), 0.3)
    assert np.abs(da - db).sum() * (grid[1] - grid[0]) < 0.1


def test_estimate_is_json_ready_with_the_curve_in_extra():
    sd = spectral_density(
        DenseOperator(with_spectrum(bimodal(100, 2), 2)),
        max_hvps=60,
        steps=20,
        num_points=64,
        generator=0,
    )
    (est,) = sd.estimates()
    assert est.quantity == "spectral_density" and est.method == "slq"
    assert math.isfinite(est.value) and 0.0 <= est.value <= 1.0
    assert len(est.extra["grid"]) == len(est.extra["density"]) == 64
    json.dumps(est.to_dict(), allow_nan=False)


def test_same_seed_same_density_and_sigma_rel():
    op = DenseOperator(with_spectrum(bimodal(100, 2), 2))
    a = spectral_density(op, max_hvps=60, steps=20, generator=7)
    b = spectral_density(op, max_hvps=60, steps=20, generator=7)
    np.testing.assert_array_equal(a.density, b.density)
    lo = min(n.min() for n in a.nodes)
    hi = max(n.max() for n in a.nodes)
    assert a.sigma == pytest.approx(0.01 * (hi - lo))


@pytest.mark.parametrize(
    "kwargs",
    [{"max_hvps": 0}, {"steps": 0}, {"num_points": 1}, {"sigma": -1.0}, {"sigma_rel": 0.0}],
)
def test_invalid_options_raise(kwargs):
    with pytest.raises(SmoothprobeError):
        spectral_density(DenseOperator(torch.eye(5, dtype=torch.float64)), **kwargs)
