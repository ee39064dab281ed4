"""Hutchinson, Hutch++ and the Frobenius estimator: exactness, unbiasedness and coverage."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound
from smoothprobe.estimators.frobenius import frobenius_sq
from smoothprobe.estimators.trace import deflated_probes, hutchinson_trace, hutchpp_trace
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.suites.l2 import measure_l2


def with_spectrum(eigs: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(
        torch.randn(eigs.numel(), eigs.numel(), generator=g, dtype=torch.float64)
    )
    h = (q * eigs) @ q.T
    return (h + h.T) / 2


def goe(d: int = 120, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return (a + a.T) / 2


def outliers(d: int = 120, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    eigs = torch.cat(
        [
            torch.tensor([40.0, 25.0, -15.0, 10.0], dtype=torch.float64),
            torch.randn(d - 4, generator=g, dtype=torch.float64),
        ]
    )
    return with_spectrum(eigs, seed)


class CallCounter(DenseOperator):
    """A dense operator that also counts matvec calls."""

    def __init__(self, matrix):
        super().__init__(matrix)
        self.calls = 0

    def matvec(self, vectors):
        self.calls += 1
        return super().matvec(vectors)


ESTIMATORS = {
    "hutchinson": (hutchinson_trace, lambda h: float(torch.trace(h))),
    "hutch++": (hutchpp_trace, lambda h: float(torch.trace(h))),
    "frobenius": (frobenius_sq, lambda h: float((h * h).sum())),
    "frobenius-hutchinson": (
        partial(frobenius_sq, method="hutchinson"),
        lambda h: float((h * h).sum()),
    ),
}


def test_hutchinson_is_exact_on_diagonal_matrices():
    h = torch.diag(torch.linspace(-3.0, 7.0, 50, dtype=torch.float64))
    est = hutchinson_trace(DenseOperator(h), max_hvps=5, generator=3)
    assert est.value == pytest.approx(float(torch.trace(h)), abs=1e-12)
    assert est.stderr == pytest.approx(0.0, abs=1e-12)
    assert est.bound is Bound.ESTIMATE and est.quantity == "trace" and est.hvps == 5


def test_hutchpp_is_exact_when_the_sketch_captures_the_range():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(80, 5, generator=g, dtype=torch.float64)
    h = u @ torch.diag(torch.tensor([5.0, -3.0, 2.0, 1.0, 0.5], dtype=torch.float64)) @ u.T
    est = hutchpp_trace(DenseOperator(h), max_hvps=18, generator=1)  # sketch rank 6 ≥ 5
    assert est.value == pytest.approx(float(torch.trace(h)), rel=1e-10)
    assert abs(est.stderr) <= 1e-8 * abs(est.value)
    assert est.extra["sketch_rank"] == 6 and est.hvps == 18 and est.method == "hutch++"


def test_frobenius_is_exact_on_scaled_orthogonal_matrices():
    q = with_spectrum(torch.ones(60, dtype=torch.float64), 2)  # = I up to rounding
    reflect = torch.eye(60, dtype=torch.float64) - 2 * torch.outer(q[0], q[0]) / (q[0] @ q[0])
    est = frobenius_sq(DenseOperator(3 * reflect), max_hvps=4, method="hutchinson")
    assert est.value == pytest.approx(9 * 60, rel=1e-12)  # ‖3Rz‖² = 9‖z‖² = 9d
    assert est.extra["frobenius"] == pytest.approx((9 * 60) ** 0.5)


def deflated_by_lanczos(quantity):
    """measure_l2's path: trace / ‖H‖_F² with probes deflated by the Lanczos basis."""

    def run(op, *, max_hvps, generator):
        ests = measure_l2(
            op, tol=1e-6, extras=("trace", "frobenius"), trace_hvps=max_hvps, generator=generator
        ).estimates()
        return next(e for e in ests if e.quantity == quantity)

    return run


COVERAGE = {
    **ESTIMATORS,
    "lanczos-deflated-trace": (deflated_by_lanczos("trace"), ESTIMATORS["hutchinson"][1]),
    "lanczos-deflated-frobenius": (deflated_by_lanczos("frobenius_sq"), ESTIMATORS["frobenius"][1]),
}


@pytest.mark.parametrize("matrix", ["outliers", "goe"])
@pytest.mark.parametrize("name", sorted(COVERAGE))
def test_error_bars_cover_the_truth_in_90_percent_of_seeds(name, matrix):
    estimator, truth_of = COVERAGE[name]
    h = outliers() if matrix == "outliers" else goe()
    truth = truth_of(h)
    op = DenseOperator(h)
    ests = [estimator(op, max_hvps=48, generator=seed) for seed in range(100)]
    inside = np.mean([e.ci_low <= truth <= e.ci_high for e in ests])
    assert inside >= 0.9
    # unbiased: the mean of 100 estimates is within 4 standard errors of the truth
    values = np.array([e.value for e in ests])
    assert abs(values.mean() - truth) <= 4 * values.std(ddof=1) / 10
    # and the reported stderr matches the observed spread (within a factor 1.5)
    assert 1 / 1.5 <= np.mean([e.stderr for e in ests]) / values.std(ddof=1) <= 1.5


def test_deflation_shrinks_the_error_by_orders_of_magnitude():
    h = outliers()
    fro = float((h * h).sum())
    op = DenseOperator(h)
    plain = np.std(
        [frobenius_sq(op, max_hvps=48, method="hutchinson", generator=s).value for s in range(30)]
    )
    sketch = np.std([frobenius_sq(op, max_hvps=48, generator=s).value for s in range(30)])
    lanczos = np.std(
        [deflated_by_lanczos("frobenius_sq")(op, max_hvps=48, generator=s).value for s in range(30)]
    )
    assert lanczos < sketch < plain / 10 and plain / fro > 0.05


def test_trace_and_frobenius_can_share_hutchpp_products():
    h = outliers()
    op = DenseOperator(h)
    shared = deflated_probes(op, max_hvps=30, generator=4)
    assert op.cost.hvps == 30 == shared.hvps
    tr = hutchpp_trace(op, products=shared)
    fro = frobenius_sq(op, products=shared)
    assert op.cost.hvps == 30  # no further HVPs
    assert tr.value == hutchpp_trace(op, max_hvps=30, generator=4).value
    assert fro.value == frobenius_sq(op, max_hvps=30, generator=4).value
    assert tr.hvps == fro.hvps == 30


def test_hutchpp_beats_hutchinson_on_outlier_spectra():
    op = DenseOperator(outliers())
    plain = np.std([hutchinson_trace(op, max_hvps=30, generator=s).value for s in range(40)])
    plus = np.std([hutchpp_trace(op, max_hvps=30, generator=s).value for s in range(40)])
    assert plus < 0.5 * plain


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_probes_go_through_matvec_in_blocks(name):
    estimator, _ = ESTIMATORS[name]
    h = outliers(60, 1)
    op = CallCounter(h)
    one = estimator(op, max_hvps=30, chunk_size=8, generator=5)
    assert op.cost.hvps == 30 == one.hvps
    hutchpp = name in ("hutch++", "frobenius")
    assert op.calls == (3 * 2 if hutchpp else 4)  # ceil(10/8) per Hutch++ third
    other = estimator(DenseOperator(h), max_hvps=30, chunk_size=1, generator=5)
    assert other.value == pytest.approx(one.value, rel=1e-12)  # blocking changes nothing


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_invalid_options_raise(name):
    estimator, _ = ESTIMATORS[name]
    op = DenseOperator(torch.eye(10, dtype=torch.float64))
    for kwargs in ({"max_hvps": 1}, {"chunk_size": 0}, {"confidence": 1.5}, {"generator": "x"}):
        with pytest.raises(SmoothprobeError):
            estimator(op, **kwargs)


def test_confidence_level_widens_the_interval():
    op = DenseOperator(outliers())
    narrow = hutchinson_trace(op, max_hvps=20, confidence=0.5, generator=0)
    wide = hutchinson_trace(op, max_hvps=20, confidence=0.99, generator=0)
    assert narrow.value == wide.value and narrow.stderr == wide.stderr
    assert wide.ci_high - wide.ci_low > 2 * (narrow.ci_high - narrow.ci_low)


@pytest.mark.slow
def test_coverage_on_a_real_network_hessian():
    examples = pytest.importorskip("smoothprobe.examples")
    pytest.importorskip("sklearn")
    h = examples.exact_hessian("mlp")
    h = (h + h.T) / 2
    op = DenseOperator(h)
    truth = {"trace": float(torch.trace(h)), "frobenius_sq": float((h * h).sum())}
    inside = {name: 0 for name in truth}
    for seed in range(100):
        for e in measure_l2(
            op, tol=1e-4, extras=("trace", "frobenius"), trace_hvps=32, generator=seed
        ).estimates():
            if e.quantity in truth:  # not the Ritz values nor their prob_upper ends
                inside[e.quantity] += e.ci_low <= truth[e.quantity] <= e.ci_high
    assert min(inside.values()) >= 90, inside
