"""Tests of smoothprobe.bounds and smoothprobe.interval on records with known values."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe import compare as bounds
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.interval import Interval, Kind
from smoothprobe.records import RunContext, make_record

D = 100


def rec(
    quantity,
    value,
    bound=Bound.ESTIMATE,
    *,
    basis="identity",
    step=10,
    ckpt="ck.pt",
    partition=None,
    d=D,
    **kw,
):
    """One record through make_record, as estimators write them."""
    geometry = kw.pop(
        "geometry",
        {
            "l2_norm": "l2",
            "lambda_max": "l2",
            "lambda_min": "l2",
            "d_l2": "l2",
            "l11_norm": "linf",
            "linf_lower": "linf",
            "block_upper": "block",
            "block_lower": "block",
        }.get(quantity, ""),
    )
    est = Estimate(quantity, value, bound, geometry=geometry, **kw)
    ctx = RunContext(checkpoint=ckpt, d=d, step=step, basis=basis)
    return make_record(est, ctx, partition=partition)


def lanczos(value, residual, **kw):
    """An l2_norm record shaped like LanczosResult.estimates writes it."""
    return rec(
        "l2_norm",
        value,
        Bound.LOWER,
        ci_low=value,
        ci_high=value + residual,
        extra={"residual": residual},
        **kw,
    )


def spectrum(lam_max, residual, *, lam_min=None, converged=True, **kw):
    """lambda_max and lambda_min records as Lanczos writes them (L₂ = λ_max unless lam_min says)."""
    lam_min = -lam_max / 2 if lam_min is None else lam_min
    extra = {"residual": residual, "converged": converged}
    return [
        rec("lambda_max", lam_max, Bound.LOWER, extra=extra, **kw),
        rec("lambda_min", lam_min, Bound.UPPER, extra=extra, **kw),
    ]


def l11(value, low, high, **kw):
    return rec("l11_norm", value, ci_low=low, ci_high=high, confidence=0.95, **kw)


def frame(*records):
    return pd.DataFrame(list(records))


def one(table, **match):
    sel = table
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (match, len(sel))
    return sel.iloc[0]


# ------------------------------------------------------------------------------- Interval


def test_division_inherits_the_weakest_kind_of_the_ends_it_uses():
    h = Interval(50.0, 30.0, 55.0, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, 0.025)
    l2 = Interval(200.0, 200.0, 201.0, Kind.CERTIFIED, Kind.RESIDUAL)
    r = h / l2
    assert r.low == pytest.approx(30.0 / 201.0)
    assert r.high == pytest.approx(55.0 / 200.0)
    assert r.value == pytest.approx(0.25)
    assert r.low_kind is Kind.RESIDUAL  # certified ÷ residual
    assert r.high_kind is Kind.STATISTICAL  # statistical ÷ certified
    assert r.confidence == pytest.approx(0.975)
    assert r.low_label() == "Lanczos-residual lower"
    assert r.high_label() == "statistical upper (97.5% CI)"


def test_miscoverage_adds_over_statistical_inputs():
    a = Interval(10.0, 9.0, 11.0, Kind.STATISTICAL, Kind.STATISTICAL, 0.025, 0.025)
    b = Interval(5.0, 4.0, 6.0, Kind.STATISTICAL, Kind.STATISTICAL, 0.025, 0.025)
    assert a.confidence == pytest.approx(0.95)
    assert (a / b).confidence == pytest.approx(0.90)
    assert (a / Interval.exact(2.0)).confidence == pytest.approx(0.95)


def test_reciprocal_swaps_ends_and_kinds_and_handles_zero():
    iv = Interval(2.0, 1.0, 4.0, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, 0.05)
    r = iv.reciprocal()
    assert (r.low, r.high, r.value) == (0.25, 1.0, 0.5)
    assert (r.low_kind, r.high_kind) == (Kind.STATISTICAL, Kind.CERTIFIED)
    assert (r.low_alpha, r.high_alpha) == (0.05, 0.0)
    z = Interval(1.0, 0.0, 2.0, Kind.NONE, Kind.CERTIFIED).reciprocal()
    assert z.high == math.inf and z.high_kind is Kind.NONE


def test_cap_and_raise_only_tighten():
    iv = Interval(5.0, 1.0, 10.0, Kind.CERTIFIED, Kind.STATISTICAL, 0.0, 0.05)
    assert iv.cap_high(20.0, Kind.CERTIFIED) is iv
    capped = iv.cap_high(8.0, Kind.CERTIFIED)
    assert (capped.high, capped.high_kind, capped.high_alpha) == (8.0, Kind.CERTIFIED, 0.0)
    assert capped.confidence is None  # no statistical end left
    assert iv.raise_low(0.5, Kind.CERTIFIED) is iv
    assert iv.raise_low(2.0, Kind.RESIDUAL).low_kind is Kind.RESIDUAL


positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(positive, positive, positive, positive, st.floats(0, 1), st.floats(0, 1))
def test_quotient_interval_contains_every_quotient_of_members(a1, a2, b1, b2, s, t):
    a = Interval(a1, min(a1, a2), max(a1, a2), Kind.CERTIFIED, Kind.CERTIFIED)
    b = Interval(b1, min(b1, b2), max(b1, b2), Kind.CERTIFIED, Kind.CERTIFIED)
    x = a.low + s * (a.high - a.low)
    y = b.low + t * (b.high - b.low)
    q = a / b
    assert q.low * (1 - 1e-12) <= x / y <= q.high * (1 + 1e-12)


# ----------------------------------------------------------------------- record → interval


def test_record_interval_rules():
    exact = bounds.record_interval(rec("l11_norm", 7.0, Bound.EXACT))
    assert (exact.low, exact.high, exact.low_kind) == (7.0, 7.0, Kind.EXACT)
    lower = bounds.record_interval(rec("linf_lower", 3.0, Bound.LOWER))
    assert (lower.low, lower.high) == (3.0, math.inf)
    assert (lower.low_kind, lower.high_kind) == (Kind.CERTIFIED, Kind.NONE)
    upper = bounds.record_interval(rec("block_upper", 9.0, Bound.UPPER))
    assert upper.high == 9.0 and upper.high_kind is Kind.CERTIFIED and upper.low_kind is Kind.NONE
    ci = bounds.record_interval(l11(50.0, 45.0, 55.0))
    assert (ci.low, ci.high) == (45.0, 55.0)
    assert (ci.low_alpha, ci.high_alpha) == (pytest.approx(0.025), pytest.approx(0.025))
    se = bounds.record_interval(rec("trace", 10.0, stderr=1.0, confidence=0.95))
    assert se.low == pytest.approx(10.0 - 1.959964, abs=1e-5)
    assert se.high == pytest.approx(10.0 + 1.959964, abs=1e-5)
    bare = bounds.record_interval(rec("max_row", 4.0))
    assert bare.low_kind is Kind.POINT and bare.low == bare.high == 4.0


def test_lanczos_records_read_as_ritz_value_plus_residual_only_when_converged():
    top, bottom = spectrum(2.0, 0.01, lam_min=-1.0)
    iv = bounds.record_interval(top)
    assert (iv.low, iv.high) == (2.0, pytest.approx(2.01))
    assert (iv.low_kind, iv.high_kind) == (Kind.CERTIFIED, Kind.RESIDUAL)
    lam_min = bounds.record_interval(bottom)
    assert (lam_min.low, lam_min.high) == (pytest.approx(-1.01), -1.0)
    assert (lam_min.low_kind, lam_min.high_kind) == (Kind.RESIDUAL, Kind.CERTIFIED)


def test_unconverged_lanczos_gives_no_upper_end():
    """Old code took θ + r as the upper end of λ_max whether or not Lanczos converged."""
    top, bottom = spectrum(2.0, 0.01, converged=False)
    iv = bounds.record_interval(top)
    assert (iv.low, iv.high, iv.high_kind) == (2.0, math.inf, Kind.NONE)
    assert bounds.record_interval(bottom).low == -math.inf
    consts = bounds.constants_table(frame(top, bottom, l11(500.0, 450.0, 550.0)))
    assert one(consts, geometry="l2")["high"] == math.inf
    # without a proven d·L₂ upper end the H∞ bracket keeps the (1,1)-norm's statistical end
    assert one(consts, geometry="linf")["high"] == 550.0


def test_l2_norm_residual_alone_is_not_an_upper_end_of_both_ends_of_the_spectrum():
    """L₂ = max(|λ_max|, |λ_min|): the upper end must cover both ends (θ_max + r, |θ_min| + r)."""
    old = bounds.l2_interval([lanczos(2.0, 0.01)], D)[0]
    assert old.high == math.inf  # an l2_norm residual covers one end only
    both = [*spectrum(2.0, 0.1, lam_min=-1.95), lanczos(2.0, 0.1)]
    iv, source = bounds.l2_interval(both, D)
    assert iv.low == 2.0 and iv.high == pytest.approx(2.1)
    assert "lambda_max/lambda_min" in source
    flipped = [*spectrum(2.0, 0.3, lam_min=-1.95)]
    assert bounds.l2_interval(flipped, D)[0].high == pytest.approx(2.3)
    wide_min = [
        rec("lambda_max", 2.0, Bound.LOWER, extra={"residual": 0.01, "converged": True}),
        rec("lambda_min", -1.95, Bound.UPPER, extra={"residual": 0.2, "converged": True}),
    ]
    assert bounds.l2_interval(wide_min, D)[0].high == pytest.approx(2.15)  # |θ_min| + r_min


def test_prob_upper_records_are_their_own_kind():
    pu = rec("lambda_max", 2.2, Bound.PROB_UPPER, failure_prob=1e-3)
    iv = bounds.record_interval(pu)
    assert (iv.high, iv.high_kind, iv.high_alpha) == (2.2, Kind.PROBABILISTIC, 1e-3)
    assert iv.low_kind is Kind.NONE
    in_extra = rec(
        "lambda_max",
        2.0,
        Bound.LOWER,
        extra={"residual": 0.5, "prob_upper": 2.1, "failure_prob": 0.01},
    )
    iv = bounds.record_interval(in_extra)
    assert (iv.low_kind, iv.high, iv.high_kind) == (Kind.CERTIFIED, 2.1, Kind.PROBABILISTIC)
    # propagated: d·L₂ and ρ inherit the probabilistic end and its failure probability
    f = frame(
        pu,
        rec("lambda_max", 2.0, Bound.LOWER, extra={"residual": 1.0, "converged": False}),
        rec(
            "lambda_min",
            -1.0,
            Bound.UPPER,
            extra={"residual": 0.01, "prob_lower": -1.05, "failure_prob": 1e-3},
        ),
        l11(100.0, 90.0, 110.0),
        rec("linf_lower", 50.0, Bound.LOWER),
    )
    dl2 = one(bounds.constants_table(f), geometry="l2")
    assert (dl2["high"], dl2["high_kind"]) == (pytest.approx(220.0), "probabilistic")
    rho = one(bounds.rho_table(f), geometry="linf")
    assert dl2["high_alpha"] == pytest.approx(2e-3)  # both ends of the spectrum: summed
    assert rho["rho_low_kind"] == "probabilistic" and rho["rho_low_alpha"] == pytest.approx(2e-3)
    assert rho["rho_low"] == pytest.approx(50.0 / 220.0)
    assert "probabilistic" in rho["rho_low_label"]


def test_combine_prefers_exact_then_tightens_with_certified_ends():
    a = Interval(10.0, 8.0, 12.0, Kind.STATISTICAL, Kind.STATISTICAL, 0.025, 0.025)
    b = Interval(11.0, 6.0, 16.0, Kind.STATISTICAL, Kind.STATISTICAL, 0.025, 0.025)
    c = Interval(9.0, 9.0, math.inf, Kind.CERTIFIED, Kind.NONE)
    out = bounds.combine_intervals([a, b, c])
    assert (out.value, out.low, out.high) == (10.0, 9.0, 12.0)  # intersection
    assert out.low_kind is Kind.CERTIFIED and out.low_alpha == 0.0
    # the smaller of two 97.5% upper limits misses with probability up to 2.5% + 2.5% (Bonferroni);
    # old code kept the narrowest interval and its 2.5%, voiding the stated level
    assert out.high_kind is Kind.STATISTICAL and out.high_alpha == pytest.approx(0.05)
    assert out.confidence == pytest.approx(0.95)
    assert bounds.combine_intervals([a, Interval.exact(10.5), b]).value == 10.5
    assert bounds.combine_intervals([]) is None
    lows = [Interval(v, v, math.inf, Kind.CERTIFIED, Kind.NONE) for v in (3.0, 7.0, 5.0)]
    assert bounds.combine_intervals(lows).low == 7.0  # best certified lower bound


# ------------------------------------------------------------------------------- constants


def test_linf_bracket_and_rho_from_known_values():
    f = frame(*spectrum(2.0, 0.01), l11(50.0, 45.0, 55.0), rec("linf_lower", 30.0, Bound.LOWER))
    consts = bounds.constants_table(f)
    dl2 = one(consts, geometry="l2")
    assert (dl2["value"], dl2["low"]) == (200.0, 200.0)
    assert dl2["high"] == pytest.approx(201.0)
    h = one(consts, geometry="linf")
    assert (h["value"], h["low"], h["high"]) == (50.0, 30.0, 55.0)
    assert (h["low_label"], h["high_label"]) == ("certified lower", "statistical upper (97.5% CI)")
    assert h["partition"] == "singleton" and h["optimizer"] == "Adam"
    rho = one(bounds.rho_table(f), geometry="linf")
    assert rho["rho_value"] == pytest.approx(0.25)
    assert rho["rho_low"] == pytest.approx(30.0 / 201.0)
    assert rho["rho_high"] == pytest.approx(55.0 / 200.0)
    assert (rho["rho_low_kind"], rho["rho_high_kind"]) == ("residual", "statistical")
    assert rho["advantage_value"] == pytest.approx(4.0)
    assert rho["advantage_low"] == pytest.approx(200.0 / 55.0)
    assert rho["advantage_high"] == pytest.approx(201.0 / 30.0)
    assert rho["t_ratio_value"] == rho["rho_value"]
    assert rho["t_ratio_status"] == "structure only"
    sgd = one(bounds.rho_table(f), geometry="l2")
    assert (sgd["rho_value"], sgd["t_ratio_status"]) == (1.0, "exact")


def test_upper_end_is_capped_by_d_l2_and_rho_by_one():
    # the (1,1)-norm surrogate exceeds d·L₂ (as after a rotation): H∞ ≤ d·L₂ caps the bracket
    f = frame(*spectrum(2.0, 0.01), l11(300.0, 280.0, 320.0), rec("linf_lower", 150.0, Bound.LOWER))
    h = one(bounds.constants_table(f), geometry="linf")
    assert h["value"] == 200.0  # the surrogate, capped at d·L₂ (old code: 300, outside)
    assert h["surrogate"] == 300.0 and "uninformative" in h["point"]
    assert h["high"] == pytest.approx(201.0) and h["high_kind"] == "residual"
    rho = one(bounds.rho_table(f), geometry="linf")
    assert rho["rho_value"] == pytest.approx(1.0)  # old code: 1.5 > the proven 1
    assert rho["rho_high"] == 1.0 and rho["rho_high_kind"] == "certified"
    assert rho["rho_low"] == pytest.approx(150.0 / 201.0)


def test_blockwise_partitions_are_ordered_and_bracketed():
    f = frame(
        *spectrum(2.0, 0.0),
        rec("block_upper", 120.0, Bound.UPPER, partition="layer"),
        rec("block_lower", 100.0, Bound.LOWER, partition="layer"),
        rec("block_upper", 60.0, Bound.UPPER, partition="row"),
        rec("block_lower", 40.0, Bound.LOWER, partition="row"),
        rec("block_upper", 90.0, Bound.UPPER, partition="my.*regex"),
    )
    consts = bounds.constants_table(f)
    assert list(consts["partition"]) == ["one", "row", "layer", "my.*regex"]
    layer = one(consts, partition="layer")
    assert (layer["low"], layer["high"], layer["optimizer"]) == (100.0, 120.0, "Adalayer")
    assert (layer["low_kind"], layer["high_kind"]) == ("certified", "certified")
    custom = one(consts, partition="my.*regex")
    assert custom["low"] == 2.0 and custom["low_kind"] == "certified"  # H(Φ) ≥ L₂ ≥ Ritz value
    rho = one(bounds.rho_table(f), partition="row")
    assert (rho["rho_low"], rho["rho_high"]) == (0.2, 0.3)


def test_l2_is_borrowed_across_bases_and_falls_back_to_other_quantities():
    f = frame(
        *spectrum(2.0, 0.0),
        l11(50.0, 45.0, 55.0),
        l11(150.0, 140.0, 160.0, basis="hadamard:seed=0"),
    )
    rot = one(bounds.constants_table(f), geometry="l2", basis="hadamard:seed=0")
    assert rot["value"] == 200.0 and "rotation-invariant" in rot["source"]
    lam = frame(
        rec("lambda_max", 1.5, Bound.LOWER, extra={"residual": 0.0}),
        rec("lambda_min", -2.5, Bound.UPPER, extra={"residual": 0.0}),
    )
    assert one(bounds.constants_table(lam), geometry="l2")["value"] == 250.0
    only_d = frame(rec("d_l2", 300.0, Bound.EXACT))
    assert one(bounds.constants_table(only_d), geometry="l2")["value"] == 300.0


def test_without_l2_constants_remain_but_rho_is_undefined():
    f = frame(l11(50.0, 45.0, 55.0), rec("linf_lower", 30.0, Bound.LOWER))
    consts = bounds.constants_table(f)
    assert list(consts["geometry"]) == ["linf"]
    assert bounds.rho_table(f).empty
    numbers = bounds.headline_numbers(f)
    assert numbers["advantage"] is None
    assert any("l2" in m for m in numbers["missing"])


def test_rotation_change_is_the_ratio_of_constants():
    f = frame(
        *spectrum(2.0, 0.01),
        l11(50.0, 45.0, 55.0),
        rec("linf_lower", 30.0, Bound.LOWER),
        l11(150.0, 140.0, 160.0, basis="hadamard:seed=0"),
        rec("linf_lower", 100.0, Bound.LOWER, basis="hadamard:seed=0"),
    )
    row = one(bounds.rotation_table(f), geometry="linf")
    assert row["basis_rotated"] == "hadamard:seed=0"
    assert row["change_value"] == pytest.approx(3.0)
    assert row["change_low"] == pytest.approx(100.0 / 55.0)
    assert row["change_high"] == pytest.approx(160.0 / 30.0)
    assert (row["change_low_kind"], row["change_high_kind"]) == ("statistical", "statistical")
    assert row["change_low_label"] == "statistical lower (95% CI)"


def test_noise_ratio_and_batch_size():
    common = {"confidence": 0.95, "settings": {"batch_size": 16}}
    f = frame(
        rec("noise_l1", 30.0, ci_low=27.0, ci_high=33.0, **common),
        rec("noise_l2_sqrtd", 100.0, ci_low=95.0, ci_high=105.0, **common),
        rec("noise_block", 120.0, ci_low=100.0, ci_high=140.0, partition="layer", **common),
    )
    table = bounds.noise_table(f)
    l1 = one(table, quantity="noise_l1")
    assert l1["batch_size"] == 16
    assert l1["ratio_value"] == pytest.approx(0.3)
    assert l1["ratio_low"] == pytest.approx(27.0 / 105.0)
    assert l1["ratio_confidence"] == pytest.approx(0.90)
    block = one(table, quantity="noise_block")
    assert block["ratio_high"] == 1.0  # Σ√d_b‖σ_b‖ ≤ √d‖σ‖₂: capped
    numbers = bounds.headline_numbers(f)
    assert numbers["noise"]["batch_size"] == 16
    assert numbers["noise"]["ratio"]["value"] == pytest.approx(0.3)


def test_checkpoint_order_and_latest_headline():
    f = frame(
        lanczos(2.0, 0.0, step=200, ckpt="b.pt"),
        l11(50.0, 45.0, 55.0, step=200, ckpt="b.pt"),
        lanczos(1.0, 0.0, step=100, ckpt="a.pt"),
        l11(40.0, 35.0, 45.0, step=100, ckpt="a.pt"),
        lanczos(3.0, 0.0, step=None, ckpt="x.pt"),
    )
    assert bounds.checkpoint_order(f)[-1] == ("b.pt", 200.0)
    assert bounds.checkpoint_order(f)[0][0] == "x.pt"  # no step: before stepped ones
    numbers = bounds.headline_numbers(f)
    assert (numbers["checkpoint"], numbers["step"], numbers["d"]) == ("b.pt", 200, D)
    assert numbers["advantage"]["value"] == pytest.approx(200.0 / 50.0)
    earlier = bounds.headline_numbers(f, checkpoint="a.pt", step=100)
    assert earlier["advantage"]["value"] == pytest.approx(100.0 / 40.0)


def test_headline_numbers_original_rotated_and_blockwise():
    f = frame(
        *spectrum(2.0, 0.0),
        l11(50.0, 45.0, 55.0),
        rec("linf_lower", 30.0, Bound.LOWER),
        l11(250.0, 240.0, 260.0, basis="hadamard:seed=0"),
        rec("linf_lower", 120.0, Bound.LOWER, basis="hadamard:seed=0"),
        rec("block_upper", 80.0, Bound.UPPER, partition="tensor"),
        rec("block_lower", 70.0, Bound.LOWER, partition="tensor"),
    )
    n = bounds.headline_numbers(f)
    assert n["basis"] == "identity" and n["rotated_basis"] == "hadamard:seed=0"
    assert n["advantage"]["value"] == pytest.approx(4.0)
    assert n["rotated_advantage"]["value"] == pytest.approx(1.0)  # old: 0.8, below its bracket
    assert n["rotated_advantage"]["low"] == pytest.approx(1.0)  # H∞ ≤ d·L₂
    assert n["rotation_cost"]["value"] == pytest.approx(4.0)  # capped point 200 over 50
    assert n["rotation_cost"]["low"] == pytest.approx(120.0 / 55.0)
    assert n["blockwise"]["tensor"]["value"] == pytest.approx(2.5)
    assert n["blockwise"]["tensor"]["optimizer"] == "per-tensor Adam"
    assert n["missing"] == []


def test_empty_and_irrelevant_records():
    empty = pd.DataFrame(columns=["quantity", "value"])
    assert bounds.constants_table(empty).empty
    assert bounds.rho_table(empty).empty
    assert bounds.rotation_table(empty).empty
    assert bounds.noise_table(empty).empty
    assert bounds.headline_numbers(empty)["checkpoint"] is None
    only_trace = frame(rec("trace", 5.0, stderr=0.1))
    assert bounds.constants_table(only_trace).empty
    assert bounds.headline_numbers(only_trace)["advantage"] is None


def test_blockwise_singleton_records_bound_h_inf():
    # H(singletons) = H∞ (MATH.md §2): block records on singletons join the ℓ∞ bracket
    f = frame(
        *spectrum(2.0, 0.0),
        l11(50.0, 45.0, 55.0),
        rec("block_lower", 35.0, Bound.LOWER, partition="singleton"),
        rec("linf_lower", 30.0, Bound.LOWER),
    )
    consts = bounds.constants_table(f)
    assert "singleton" not in set(consts[consts["geometry"] == "block"]["partition"])
    h = one(consts, geometry="linf")
    assert (h["low"], h["high"], h["value"]) == (35.0, 55.0, 50.0)
    assert "block_lower[singleton]" in h["source"] and "linf_lower" in h["source"]
    exact = frame(
        *spectrum(2.0, 0.0),
        l11(50.0, 45.0, 55.0),
        rec("block_upper", 48.0, Bound.EXACT, partition="singleton"),
    )
    h = one(bounds.constants_table(exact), geometry="linf")
    assert (h["value"], h["high"], h["high_kind"]) == (48.0, 48.0, "exact")


def test_noise_records_as_the_noise_estimator_writes_them():
    common = {"stderr": 1.0, "settings": {"batch_size": 8}}
    f = frame(
        rec("noise_l1", 30.0, geometry="linf", **common),
        rec("noise_l2_sqrtd", 100.0, geometry="l2", **common),
        rec("snr_l1", 0.5, geometry="linf", **common),
        rec("snr_l2", 0.7, geometry="l2", **common),
    )
    table = bounds.noise_table(f)
    assert list(table["quantity"]) == ["noise_l1", "noise_l2_sqrtd", "snr_l1", "snr_l2"]
    assert table["ratio_value"].iloc[2:].isna().all()  # SNRs are not noise terms
    assert one(table, quantity="snr_l2")["optimizer"] == "SGD"
    assert one(table, quantity="noise_l1")["ratio_value"] == pytest.approx(0.3)


def test_headline_names_a_point_moved_to_the_sdp_end():
    """‖H‖₁,₁ = 100 < d·L₂ = 200 but the SDP certificate proves H∞ ≤ 80: the point is that end,
    and the headline says so instead of calling it the capped surrogate."""
    from smoothprobe.report.headline_text import headline_text, key_numbers

    f = frame(*spectrum(2.0, 0.01), l11(100.0, 95.0, 105.0), rec("linf_lower", 50.0, Bound.LOWER),
              rec("hinf_upper", 80.0, Bound.UPPER))  # fmt: skip
    numbers = bounds.headline_numbers(f)
    assert numbers["advantage"]["value"] == pytest.approx(200.0 / 80.0)
    text = headline_text(numbers)
    assert "so H∞'s point value is its upper end and the advantage's is its lower end, 2.50×" in (
        text
    )
    assert "capped at d·L₂) gives" not in text
    card = key_numbers(numbers)[0]["value"]
    assert card.startswith("2.50× (‖H‖₁,₁ surrogate, ") and "lowered to the upper end" in card
    plain = frame(
        *spectrum(2.0, 0.01), l11(100.0, 95.0, 105.0), rec("linf_lower", 50.0, Bound.LOWER)
    )
    card = key_numbers(bounds.headline_numbers(plain))[0]["value"]
    assert card == "2.00× (‖H‖₁,₁ surrogate, capped at d·L₂)"
