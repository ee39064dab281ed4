"""Row ℓ1 norms: estimates, exact rows from sampled columns, certified bounds, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe import Bound, DenseOperator, ParameterLayout
from smoothprobe.estimators.l11 import estimate_l11
from smoothprobe.estimators.row_norms import RowNorms, max_row_estimate, refine_max_row

LAYOUT = ParameterLayout.from_shapes([("w", (10, 6)), ("b", (10,)), ("head", (3, 10))])
D = LAYOUT.d  # 100


def matrix(seed: int, *, spike: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.randn(D, generator=g, dtype=torch.float64))
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    h = (a + a.T) / 2 * torch.outer(s, s) / 10
    if spike:
        h[63, :] *= spike  # make row/column 63 (b[3]) clearly the largest
        h[:, 63] *= spike
    return h


def rows_true(h: torch.Tensor) -> torch.Tensor:
    return h.abs().sum(dim=1)


@pytest.mark.parametrize("method", ["two-phase", "uniform", "stratified", "cauchy-median"])
def test_exact_rows_are_exact_and_lower_bounds_certified(method):
    h = matrix(0)
    truth = rows_true(h)
    run = estimate_l11(DenseOperator(h, layout=LAYOUT), method=method, max_hvps=64, generator=1)
    rows = run.rows
    assert rows.estimates.shape == (D,) and rows.exact.dtype == torch.bool
    if method == "cauchy-median":
        assert not rows.exact.any() and not torch.isnan(rows.estimates).any()
    else:
        assert rows.exact.sum() > 0
        torch.testing.assert_close(
            rows.estimates[rows.exact], truth[rows.exact], rtol=1e-12, atol=0
        )
    assert bool((rows.lower <= truth * (1 + 1e-12)).all())
    assert rows.certified_max_lower() <= float(truth.max()) * (1 + 1e-12)


def test_cauchy_row_estimates_track_truth():
    h = matrix(1)
    rows = estimate_l11(
        DenseOperator(h, layout=LAYOUT), method="cauchy-geomean", max_hvps=400, generator=0
    ).rows
    log_err = (rows.estimates / rows_true(h)).log()
    # per-row log error of the geometric mean has s.d. π/(2√k) = 0.079 at k = 400
    assert float(log_err.std()) < 2 * math.pi / (2 * 20)
    assert abs(float(log_err.mean())) < 0.05


def test_summary_per_tensor_and_export():
    h = matrix(2)
    run = estimate_l11(DenseOperator(h, layout=LAYOUT), method="exact", max_hvps=D)
    table = run.rows.summary()
    truth = rows_true(h).numpy()
    assert [r["name"] for r in table] == ["w", "b", "head"]
    assert [r["numel"] for r in table] == [60, 10, 30]
    for row, slot in zip(table, LAYOUT.slots, strict=True):
        part = truth[slot.start : slot.stop]
        assert row["known"] == row["exact"] == slot.numel
        assert row["sum"] == pytest.approx(part.sum()) and row["max"] == pytest.approx(part.max())
        assert row["q0.5"] == pytest.approx(np.quantile(part, 0.5))
        flat = int(np.ravel_multi_index(row["argmax"], slot.shape))
        assert part[flat] == pytest.approx(part.max())
    assert sum(r["sum"] for r in table) == pytest.approx(float(h.abs().sum()))
    exported = run.rows.to_numpy()
    assert exported.shape == (D,) and np.allclose(exported, truth)
    exported[0] = -1  # a copy: the RowNorms stay intact
    assert run.rows.estimates[0] > 0


def test_summary_with_unknown_rows():
    rows = RowNorms.empty(LAYOUT).with_columns(
        torch.tensor([0, 61]), torch.tensor([2.0, 5.0], dtype=torch.float64)
    )
    table = rows.summary()
    assert table[0]["known"] == 1 and table[0]["sum"] == 2.0
    assert table[1]["known"] == 1 and table[1]["argmax"] == [1]
    assert table[2]["known"] == 0 and "sum" not in table[2]
    assert rows.location(61) == {"index": 61, "tensor": "b", "position": [1]}


def test_refine_finds_the_largest_row_exactly():
    h = matrix(3, spike=30.0)
    op = DenseOperator(h, layout=LAYOUT)
    run = estimate_l11(op, method="cauchy-geomean", max_hvps=64, generator=0)
    before = op.cost.hvps
    rows, used = refine_max_row(op, run.rows, max_hvps=16, round_size=4)
    assert op.cost.hvps - before == used <= 16
    est = max_row_estimate(rows, hvps=used)
    truth = rows_true(h)
    assert est.value == pytest.approx(float(truth.max()), rel=1e-12)
    assert int(truth.argmax()) == 63  # the spiked row b[3]
    assert est.extra["argmax"] == {"index": 63, "tensor": "b", "position": [3]}
    assert est.extra["argmax_exact"] and est.extra["certified_lower"] == pytest.approx(est.value)
    assert refine_max_row(op, rows, max_hvps=0)[1] == 0
    again = estimate_l11(op, method="cauchy-geomean", max_hvps=64, generator=0).rows
    same, _ = refine_max_row(op, again, max_hvps=16, round_size=4, in_place=True)
    assert same is again  # no copy of the d-vectors
    for name in ("estimates", "exact", "lower"):
        assert torch.equal(getattr(same, name), getattr(rows, name)), name


def test_max_row_bound_kinds():
    h = matrix(4)
    truth = float(rows_true(h).max())
    op = DenseOperator(h, layout=LAYOUT)
    exact = max_row_estimate(estimate_l11(op, method="exact", max_hvps=D).rows)
    assert exact.bound is Bound.EXACT and exact.value == pytest.approx(truth)
    sampled = max_row_estimate(estimate_l11(op, method="uniform", max_hvps=20, generator=0).rows)
    assert sampled.bound is Bound.LOWER and sampled.value <= truth * (1 + 1e-12)
    estimated = max_row_estimate(
        estimate_l11(op, method="two-phase", max_hvps=64, generator=0).rows
    )
    assert estimated.bound is Bound.ESTIMATE
    assert estimated.extra["certified_lower"] <= truth * (1 + 1e-12)
    empty = max_row_estimate(RowNorms.empty(LAYOUT))
    assert empty.bound is Bound.LOWER and empty.value == 0


@given(seed=st.integers(0, 1000))
@settings(max_examples=15, deadline=None)
def test_permutation_and_sign_flip_leave_row_norm_targets_unchanged(seed):
    g = torch.Generator().manual_seed(seed)
    h = matrix(seed % 5)
    perm = torch.randperm(D, generator=g)
    s = torch.randint(0, 2, (D,), generator=g).double() * 2 - 1
    truth = rows_true(h)
    torch.testing.assert_close(rows_true(h[perm][:, perm]), truth[perm])
    flipped = s[:, None] * h * s[None, :]
    torch.testing.assert_close(rows_true(flipped), truth)
    # exact rows of the flipped matrix are the same numbers
    a = estimate_l11(
        DenseOperator(h, layout=LAYOUT), method="uniform", max_hvps=30, generator=seed
    ).rows
    b = estimate_l11(
        DenseOperator(flipped, layout=LAYOUT), method="uniform", max_hvps=30, generator=seed
    ).rows
    assert torch.equal(a.exact, b.exact)
    torch.testing.assert_close(a.estimates[a.exact], b.estimates[b.exact], rtol=1e-12, atol=0)
