"""The ℓ∞ suite ``measure_linf``: quantities, bounds, ρ, budgets and determinism."""

from __future__ import annotations

import pytest
import torch

from smoothprobe import Bound, DenseOperator, Estimate, ParameterLayout
from smoothprobe.compare.brackets import l11_over_dl2_estimate
from smoothprobe.errors import SmoothprobeError
from smoothprobe.suites.linf import DEFAULT_HINF_HVPS, linf_hvps_at_most, measure_linf


def hessian(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.randn(d, generator=g, dtype=torch.float64))
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (a + a.T) / 2 * torch.outer(s, s) / d**0.5


def test_quantities_bounds_and_hvp_accounting():
    h = hessian(150, 0)
    layout = ParameterLayout.from_shapes([("a", (100,)), ("b", (5, 10))])
    op = DenseOperator(h, layout=layout)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    before = torch.get_rng_state()
    result = measure_linf(op, max_hvps=64, generator=3, l2_norm=l2, hinf_hvps=DEFAULT_HINF_HVPS)
    assert torch.equal(torch.get_rng_state(), before)
    est = {e.quantity: e for e in result.estimates()}
    names = ["l11_norm", "linf_lower", "max_row", "hinf_lower", "hinf_upper", "l11_over_dl2"]
    assert [e.quantity for e in result.estimates()] == names
    assert sum(e.hvps for e in result.estimates()) == op.cost.hvps
    at_most = linf_hvps_at_most(max_hvps=64, restarts=8, hinf_hvps=DEFAULT_HINF_HVPS)
    assert op.cost.hvps <= at_most  # the progress bar's total
    assert est["l11_norm"].hvps <= 64
    truth = float(h.abs().sum())
    l11 = est["l11_norm"]
    assert l11.method == "two-phase" and l11.ci_low <= truth <= l11.ci_high
    assert l11.extra["l11_per_d"] == pytest.approx(l11.value / 150)
    lower = est["linf_lower"]
    assert lower.bound is Bound.LOWER and l2 * (1 - 1e-9) <= lower.value <= truth
    assert lower.value >= est["max_row"].extra["certified_lower"] * (1 - 1e-12)
    assert est["max_row"].value == pytest.approx(float(h.abs().sum(1).max()), rel=1e-12)
    assert [r["name"] for r in est["max_row"].extra["per_tensor"]] == ["a", "b"]
    low, high = est["hinf_lower"], est["hinf_upper"]
    assert low.bound is Bound.LOWER and high.bound is Bound.UPPER  # d small: exact eigenvalue
    assert lower.value <= low.value <= high.value < truth
    assert high.extra["l11_norm"] == l11.value and high.extra["rank"] == 4
    assert high.extra["l11_over_hinf_upper"] == pytest.approx(l11.value / high.value)
    ratio = est["l11_over_dl2"]
    assert ratio.value == pytest.approx(l11.value / (150 * l2))
    assert ratio.ci_low == pytest.approx(l11.ci_low / (150 * l2))
    assert ratio.ci_high == pytest.approx(l11.ci_high / (150 * l2))
    assert ratio.confidence == pytest.approx(l11.confidence)
    op = DenseOperator(h, layout=layout)
    again = measure_linf(op, max_hvps=64, generator=3, l2_norm=l2, hinf_hvps=DEFAULT_HINF_HVPS)
    assert [e.value for e in again.estimates()] == [e.value for e in result.estimates()]


@pytest.mark.parametrize("method", ["cauchy-iqr", "uniform", "stratified", "exact"])
def test_every_method_runs_in_the_suite(method):
    h = hessian(60, 1)
    hvps = 60 if method == "exact" else 30
    found = measure_linf(
        h, method=method, max_hvps=hvps, generator=0, hinf_hvps=DEFAULT_HINF_HVPS
    ).estimates()
    out = {e.quantity: e for e in found}
    used = sum(e.hvps for e in found)
    assert used <= linf_hvps_at_most(max_hvps=hvps, restarts=8, hinf_hvps=DEFAULT_HINF_HVPS)
    truth = float(h.abs().sum())
    assert out["linf_lower"].value <= truth
    assert out["max_row"].extra["certified_lower"] <= float(h.abs().sum(1).max()) * (1 + 1e-12)
    if method == "exact":
        assert out["l11_norm"].bound is Bound.EXACT
        assert out["l11_norm"].value == pytest.approx(truth)
    assert "l11_over_dl2" not in out and "rho" not in out
    assert out["linf_lower"].value <= out["hinf_lower"].value <= out["hinf_upper"].value


def test_hinf_bracket_can_be_skipped():
    out = [
        e.quantity for e in measure_linf(hessian(30, 3), max_hvps=16).estimates()
    ]  # library default: off
    assert out == ["l11_norm", "linf_lower", "max_row"]


def test_rho_validation_and_errors():
    h = hessian(20, 2)
    with pytest.raises(SmoothprobeError):
        measure_linf(h, max_hvps=16, l2_norm=0.0).estimates()
    with pytest.raises(SmoothprobeError):
        measure_linf(h, max_hvps=16, method="bogus").estimates()
    with pytest.raises(SmoothprobeError):
        measure_linf(torch.ones(3, 4)).estimates()
    est = measure_linf(h, max_hvps=16).estimates()[0]
    assert l11_over_dl2_estimate(est, 2.0, d=20).value == pytest.approx(est.value / 40)


def test_l11_over_dl2_with_a_lanczos_l2_is_an_upper_bound_not_exact():
    """Old code printed `rho 2.56 exact` for an exact ‖H‖₁,₁ over a Lanczos (lower-bound) L₂."""
    h = hessian(40, 3)
    l2 = Estimate("l2_norm", 2.0, Bound.LOWER, extra={"residual": 0.5, "converged": False})
    l11 = measure_linf(h, max_hvps=40, method="exact").estimates()[0]
    ratio = l11_over_dl2_estimate(l11, l2, d=40)
    assert l11.bound is Bound.EXACT
    assert ratio.quantity == "l11_over_dl2"
    assert ratio.bound is Bound.UPPER  # ‖H‖₁,₁/(d·θ) ≥ ‖H‖₁,₁/(d·L₂) because θ ≤ L₂
    assert ratio.value == pytest.approx(l11.value / 80)
    assert ratio.extra["high_kind"] == "certified" and ratio.extra["low_kind"] == "none"


def test_hinf_defaults_agree_across_layers():
    from smoothprobe.estimators.hinf_bracket import minimum_hvps
    from smoothprobe.measure import MIN_HINF_HVPS, MeasureSettings
    from smoothprobe.suites.linf import DEFAULT_HINF_HVPS

    assert MeasureSettings().hinf_hvps == DEFAULT_HINF_HVPS and MIN_HINF_HVPS == minimum_hvps()
    with pytest.raises(SmoothprobeError, match="hinf_hvps"):
        MeasureSettings(hinf_hvps=10).validate()
    MeasureSettings(hinf_hvps=0).validate()
