"""Spectral bracket and preconditioned sharpness: records → tables, figures and the report."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from smoothprobe.compare.optimizers import precond_table, spectral_table
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.lanczos import lanczos
from smoothprobe.estimators.preconditioned import PreconditionedResult
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.records import RunContext, make_record
from smoothprobe.report.plot_style import has_data
from smoothprobe.report.plots_optimizers import plot_precond_sharpness, plot_spectral_bracket
from smoothprobe.suites.spectral import measure_spectral

LAYOUT = ParameterLayout.from_shapes([("a.weight", (2, 2)), ("a.bias", (2,)), ("b.weight", (2, 3))])


def dense(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(LAYOUT.d, LAYOUT.d, generator=g, dtype=torch.float64)
    return (a + a.T) / 2


def records_at(step: int, *, lr: float = 1e-2) -> list[dict]:
    h = dense(step)
    op = DenseOperator(h, layout=LAYOUT)
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    reference = [
        Estimate("l2_norm", l2, Bound.LOWER, ci_low=l2, ci_high=1.001 * l2, geometry="l2"),
        Estimate("lambda_max", l2, Bound.LOWER, geometry="l2"),
        Estimate("linf_lower", 0.5 * float(h.abs().sum()), Bound.LOWER, geometry="linf"),
        Estimate("l11_norm", float(h.abs().sum()), Bound.EXACT, geometry="linf"),
    ]
    spectral = measure_spectral(op, reference=reference)
    p = torch.linspace(0.5, 2.0, LAYOUT.d, dtype=torch.float64)
    scaled = DenseOperator(h / torch.outer(p.sqrt(), p.sqrt()), layout=LAYOUT)
    result = PreconditionedResult(
        spectrum=lanczos(scaled, max_hvps=LAYOUT.d, tol=1e-10),
        preconditioner={"preconditioner": "adam", "lr": lr, "beta1": 0.9},
        aeos_threshold=38 / lr,
        gd_threshold=2 / lr,
        lambda_max=l2,
    )
    context = RunContext(checkpoint=f"ckpt_{step}.pt", d=LAYOUT.d, step=step)
    return [make_record(e, context) for e in reference + spectral + result.estimates()]


def frame_of(records) -> pd.DataFrame:
    from smoothprobe.compare import normalize_records

    return normalize_records(pd.DataFrame(records))


def test_spectral_table_brackets_and_ratios():
    table = spectral_table(frame_of(records_at(1)))
    assert list(table["partition"]) == ["matrices", "mixed"]
    for _, row in table.iterrows():
        assert row["h_op_lower"] <= row["h_op_upper"]
        assert row["h_op_upper_kind"] in ("upper", "estimate", "prob_upper")
        assert row["rho_op_low"] <= row["rho_op_high"] <= 1
    mixed = table[table["partition"] == "mixed"].iloc[0]
    assert mixed["muon_adam_low"] <= mixed["muon_adam_high"]
    assert math.isnan(table[table["partition"] == "matrices"].iloc[0]["muon_adam_high"])


def test_precond_table_follows_training_order():
    frame = frame_of(records_at(20) + records_at(10))
    table = precond_table(frame)
    assert list(table["step"]) == [10, 20]
    assert table["aeos_threshold"].tolist() == pytest.approx([3800.0, 3800.0])
    assert (table["ratio_to_threshold"] == table["precond_lambda_max"] / 3800.0).all()
    assert table["lambda_max_times_lr_over_2"].tolist() == pytest.approx(
        (table["lambda_max"] * 1e-2 / 2).tolist()
    )


def test_figures_have_data_only_with_their_records():
    frame = frame_of(records_at(10) + records_at(20))
    assert has_data(plot_spectral_bracket(frame))
    assert has_data(plot_precond_sharpness(frame))
    empty = frame_of([r for r in records_at(10) if r["geometry"] == "l2"])
    assert not has_data(plot_spectral_bracket(empty))
    assert not has_data(plot_precond_sharpness(empty))
    assert spectral_table(empty).empty and precond_table(empty).empty


def test_report_includes_both_sections(tmp_path):
    from smoothprobe.report.render import build_report

    report = build_report(pd.DataFrame(records_at(10) + records_at(20)))
    assert "spectral.png" in report.files and "precond.png" in report.files
    assert "Spectral (Muon) geometry" in report.markdown
    assert "Preconditioned sharpness" in report.markdown
    assert "spectral.csv" in report.files and "precond.csv" in report.files
