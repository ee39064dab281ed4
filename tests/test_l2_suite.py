"""measure_l2 and input coercion (the contract every estimator honours: test_contract.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import spiked

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.lanczos import mixed_start
from smoothprobe.linear_operator import DenseOperator, as_operator
from smoothprobe.suites.l2 import measure_l2, parse_extras


def matrix(d: int = 150, seed: int = 0) -> torch.Tensor:
    return spiked(d, seed)


def test_measure_l2_quantities_and_values():
    h = matrix()
    eigs = torch.linalg.eigvalsh(h)
    ests = measure_l2(
        h, tol=1e-8, top_k=2, extras="trace, frobenius,density", generator=3
    ).estimates()
    by = {e.quantity: e for e in ests}
    assert [e.quantity for e in ests] == [
        "lambda_max",
        "lambda_min",
        "l2_norm",
        "d_l2",
        "trace",
        "frobenius_sq",
        "spectral_density",
    ]
    assert by["lambda_max"].value == pytest.approx(float(eigs[-1]), rel=1e-8)
    assert by["lambda_min"].value == pytest.approx(float(eigs[0]), rel=1e-8)
    assert by["l2_norm"].value == pytest.approx(float(eigs.abs().max()), rel=1e-8)
    assert by["d_l2"].value == pytest.approx(150 * float(eigs.abs().max()), rel=1e-8)
    assert by["lambda_max"].extra["top_values"] == pytest.approx(eigs[-2:].flip(0).tolist())
    assert by["trace"].ci_low <= float(torch.trace(h)) <= by["trace"].ci_high
    assert by["frobenius_sq"].ci_low <= float((h * h).sum()) <= by["frobenius_sq"].ci_high
    assert by["trace"].hvps == by["frobenius_sq"].hvps == 64  # shared deflated probes
    assert by["spectral_density"].hvps == 8 * 80
    for e in ests:
        assert e.seed == 3 and e.geometry == "l2" and e.seconds >= 0 and e.method
        assert math.isfinite(e.value)
        json.dumps(e.to_dict(), allow_nan=False)
    for name in ("lambda_max", "lambda_min", "l2_norm", "d_l2"):
        assert "residual" in by[name].extra and by[name].hvps == by["lambda_max"].hvps


def test_measure_l2_accepts_arrays_operators_and_problems():
    h = matrix(60, 1)
    a = measure_l2(h.numpy(), generator=0).estimates()[0].value
    b = measure_l2(DenseOperator(h), generator=0).estimates()[0].value
    assert a == b
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    problem = examples.build_example("mlp")
    est = measure_l2(problem, tol=1e-4, generator=0).estimates()
    assert est[0].quantity == "lambda_max" and est[0].value > 0 and est[0].extra["converged"]


def test_measure_l2_starts_from_the_gradient_when_the_operator_has_one():
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    problem = examples.build_example("mlp")
    h = examples.exact_hessian("mlp")
    eigs = torch.linalg.eigvalsh((h + h.T) / 2)
    est = {e.quantity: e for e in measure_l2(problem, tol=1e-8, generator=0).estimates()}
    assert est["lambda_max"].settings["start"] == "gradient+random"
    assert est["lambda_max"].value == pytest.approx(float(eigs[-1]), rel=1e-7)
    assert est["lambda_min"].value == pytest.approx(float(eigs[0]), rel=1e-7)
    assert est["lambda_max"].gradients >= 1  # the gradient graph was built
    rand = {
        e.quantity: e
        for e in measure_l2(problem, tol=1e-8, start="random", generator=0).estimates()
    }
    assert rand["lambda_max"].settings["start"] == "random"
    assert (
        measure_l2(h, generator=0).estimates()[0].settings["start"] == "random"
    )  # dense: no gradient
    with pytest.raises(SmoothprobeError):
        measure_l2(h, start="eigenvector").estimates()


def test_mixed_start_weights_direction_and_noise_equally():
    d = 400
    u = torch.zeros(d, dtype=torch.float64)
    u[0] = 5.0
    v = mixed_start(u, generator=3)
    assert float(v[0]) == pytest.approx(1.0, abs=0.2)  # u/‖u‖ plus a tiny random share
    noise = v.clone()
    noise[0] = 0.0
    assert float(noise.norm()) == pytest.approx(1.0, abs=0.1)
    assert torch.equal(mixed_start(u, generator=3), v)
    zero = mixed_start(torch.zeros(d, dtype=torch.float64), generator=3)
    assert float(zero.norm()) == pytest.approx(1.0)


def test_measure_l2_with_a_user_start():
    h = matrix(80, 2)
    start = torch.randn(80, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    est = measure_l2(h, tol=1e-8, start=start).estimates()
    assert est[0].settings["start"] == "user"
    assert est[0].value == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-8)


@pytest.mark.parametrize(
    "bad", [torch.ones(3, 4), torch.tensor([[1.0, 2.0], [0.0, 1.0]]), "not a matrix"]
)
def test_as_operator_rejects_what_it_cannot_measure(bad):
    with pytest.raises(SmoothprobeError):
        as_operator(bad)


def test_extras_are_validated():
    assert parse_extras("density,trace") == ["trace", "density"]
    assert parse_extras(["frobenius_sq", "spectral_density"]) == ["frobenius", "density"]
    with pytest.raises(SmoothprobeError, match="unknown extra"):
        measure_l2(matrix(20), extras=("trace", "l11"))
