"""Every number the comparison prints lies inside its own proven range (issue 10).

A hypothesis property test draws a ground truth (L₂, H∞, ‖H‖₁,₁, H(Φ) per basis) and records of
every kind: the certified ones true to it, the statistical and probabilistic ones arbitrary
(possibly wrong, as a confidence interval sometimes is). For every table row and headline number
the comparison can produce: lower end ≤ point ≤ upper end, and every certified or exact end holds
for the truth, i.e. it was implied by the certified inputs only.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smoothprobe import compare
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.interval import Interval, Kind, percent
from smoothprobe.records import RunContext, make_record

BASES = ("identity", "hadamard:seed=0")
PARTITIONS = ("row", "tensor")
PROVEN = ("exact", "certified")
REL = 1e-9


def _rec(est: Estimate, basis: str, d: int, partition: str | None = None) -> dict:
    return make_record(
        est, RunContext(checkpoint="ck.pt", d=d, step=100, basis=basis), partition=partition
    )


@st.composite
def scenarios(draw):
    d = draw(st.integers(4, 400))
    l2 = draw(st.floats(0.1, 10.0))
    lam_min_abs = draw(st.floats(0.0, 1.0)) * l2
    truth = {"d": d, "dl2": d * l2, "basis": {}}
    records = []
    positive = st.floats(0.0, 1.0)
    bases = draw(st.sampled_from([BASES, BASES[:1], BASES[1:]]))
    for basis in bases:
        hinf = l2 + draw(positive) * (d * l2 - l2)
        l11 = hinf * (1 + draw(st.floats(0.0, 3.0)))  # may exceed d·L₂
        blocks = {p: l2 + draw(positive) * (d * l2 - l2) for p in PARTITIONS}
        truth["basis"][basis] = {"hinf": hinf, "blocks": blocks}
        # ℓ2: Ritz values below the truth (certified), residuals and flags arbitrary
        if draw(st.booleans()) or basis == bases[0]:
            theta = l2 * draw(st.floats(0.3, 1.0))
            theta_min = -lam_min_abs * draw(st.floats(0.0, 1.0))
            extra = {"residual": draw(st.floats(0.0, l2)), "converged": draw(st.booleans())}
            if draw(st.booleans()):
                extra |= {"prob_upper": theta * draw(st.floats(1.0, 2.0)), "failure_prob": 1e-3}
            records += [
                _rec(
                    Estimate("lambda_max", theta, Bound.LOWER, geometry="l2", extra=extra), basis, d
                ),
                _rec(
                    Estimate("lambda_min", theta_min, Bound.UPPER, geometry="l2", extra=extra),
                    basis,
                    d,
                ),
            ]
            if draw(st.booleans()):
                pu = l2 * draw(st.floats(0.5, 2.0))  # probabilistic: may be wrong
                records.append(
                    _rec(
                        Estimate("l2_norm", pu, Bound.PROB_UPPER, failure_prob=1e-3, geometry="l2"),
                        basis,
                        d,
                    )
                )
        # ℓ∞: certified lower bounds below H∞, ‖H‖₁,₁ exact or a (possibly wrong) CI
        records.append(
            _rec(
                Estimate(
                    "linf_lower", hinf * draw(st.floats(0.05, 1.0)), Bound.LOWER, geometry="linf"
                ),
                basis,
                d,
            )
        )
        if draw(st.booleans()):
            records.append(_rec(Estimate("l11_norm", l11, Bound.EXACT, geometry="linf"), basis, d))
        else:
            v = l11 * draw(st.floats(0.5, 1.5))
            w = draw(st.floats(0.01, 0.5)) * v
            conf = draw(st.sampled_from([0.9, 0.95, 0.998]))
            records.append(
                _rec(
                    Estimate(
                        "l11_norm", v, ci_low=v - w, ci_high=v + w, confidence=conf, geometry="linf"
                    ),
                    basis,
                    d,
                )
            )
        if draw(st.booleans()):  # the H∞ certificate's bracket
            records += [
                _rec(
                    Estimate(
                        "hinf_lower", hinf * draw(st.floats(0.5, 1.0)), Bound.LOWER, geometry="linf"
                    ),
                    basis,
                    d,
                ),
                _rec(
                    Estimate(
                        "hinf_upper",
                        hinf * draw(st.floats(0.8, 2.0)),
                        Bound.PROB_UPPER,
                        failure_prob=1e-3,
                        geometry="linf",
                    ),
                    basis,
                    d,
                ),
            ]
        for p, h in blocks.items():
            records.append(
                _rec(
                    Estimate(
                        "block_lower", h * draw(st.floats(0.05, 1.0)), Bound.LOWER, geometry="block"
                    ),
                    basis,
                    d,
                    p,
                )
            )
            u = h * (1 + draw(st.floats(0.0, 2.0)))
            if draw(st.booleans()):
                est = Estimate("block_upper", u, Bound.UPPER, geometry="block")
            else:  # sketched: an estimate below U(Φ), possibly below H(Φ) and the lower bound
                extra = {
                    "upper_whp": u * draw(st.floats(0.9, 3.0)),
                    "upper_whp_failure_probability": 1e-3,
                }
                est = Estimate(
                    "block_upper",
                    u * draw(st.floats(0.01, 1.0)),
                    Bound.ESTIMATE,
                    geometry="block",
                    extra=extra,
                )
            records.append(_rec(est, basis, d, p))
    return truth, pd.DataFrame(records)


def _check(iv: Interval, truth: float | None, where: str) -> None:
    if not math.isnan(iv.value):
        assert iv.low * (1 - REL) - REL <= iv.value <= iv.high * (1 + REL) + REL, where
    assert iv.low <= iv.high * (1 + REL) + REL, where
    if truth is None:
        return
    if iv.low_kind.value in PROVEN:
        assert iv.low <= truth * (1 + 1e-7) + 1e-12, f"{where}: certified low {iv.low} > {truth}"
    if iv.high_kind.value in PROVEN:
        assert iv.high >= truth * (1 - 1e-7) - 1e-12, f"{where}: certified high {iv.high} < {truth}"


def _constant(truth, basis, geometry, partition):
    if geometry == "l2":
        return truth["dl2"]
    b = truth["basis"][basis]
    return b["hinf"] if geometry == "linf" else b["blocks"][partition]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_row_and_headline_stays_inside_its_proven_bracket(scenario):
    truth, frame = scenario
    consts = compare.constants_table(frame)
    assert not consts.empty
    for _, row in consts.iterrows():
        h = _constant(truth, row["basis"], row["geometry"], row["partition"])
        _check(compare.interval_from_row(row), h, f"constant {row['constant']} {row['basis']}")
    for _, row in compare.rho_table(frame).iterrows():
        h = _constant(truth, row["basis"], row["geometry"], row["partition"])
        rho = h / truth["dl2"]
        _check(compare.interval_from_row(row, "rho_"), rho, f"rho {row['constant']}")
        _check(compare.interval_from_row(row, "advantage_"), 1 / rho, f"adv {row['constant']}")
        assert compare.interval_from_row(row, "rho_").high <= 1.0
    for _, row in compare.rotation_table(frame).iterrows():
        ho = _constant(truth, row["basis_original"], row["geometry"], row["partition"])
        hr = _constant(truth, row["basis_rotated"], row["geometry"], row["partition"])
        _check(compare.interval_from_row(row, "change_"), hr / ho, f"change {row['constant']}")
    numbers = compare.headline_numbers(frame)
    hinf = truth["basis"][numbers["basis"]]["hinf"]
    for key, t in (("advantage", truth["dl2"] / hinf), ("linf", hinf), ("dl2", truth["dl2"])):
        if numbers[key] is not None:
            _check(_from_dict(numbers[key]), t, f"headline {key}")
    if numbers["rotation_cost"] is not None:
        hr = truth["basis"][numbers["rotated_basis"]]["hinf"]
        _check(_from_dict(numbers["rotation_cost"]), hr / hinf, "headline rotation")


def _from_dict(d: dict) -> Interval:
    low = -math.inf if d["low"] is None else d["low"]
    high = math.inf if d["high"] is None else d["high"]
    value = math.nan if d["value"] is None else d["value"]
    return Interval(value, low, high, Kind(d["low_kind"]), Kind(d["high_kind"]))


# ------------------------------------------------------------------------ fixed, one per item


def test_sketched_block_upper_below_its_certified_lower_bound_is_not_the_point():
    """Old code printed the sketched U(Φ) (329,578) below its own certified lower end (329,883)."""
    d = 100
    recs = pd.DataFrame(
        [
            _rec(
                Estimate(
                    "lambda_max",
                    5.0,
                    Bound.LOWER,
                    geometry="l2",
                    extra={"residual": 0.0, "converged": True},
                ),
                "identity",
                d,
            ),
            _rec(
                Estimate(
                    "lambda_min",
                    -1.0,
                    Bound.UPPER,
                    geometry="l2",
                    extra={"residual": 0.0, "converged": True},
                ),
                "identity",
                d,
            ),
            _rec(
                Estimate("block_lower", 329_883.0 / 1000, Bound.LOWER, geometry="block"),
                "identity",
                d,
                "layer",
            ),
            _rec(
                Estimate(
                    "block_upper",
                    329_578.0 / 1000,
                    Bound.ESTIMATE,
                    geometry="block",
                    extra={"upper_whp": 400.0, "upper_whp_failure_probability": 1e-3},
                ),
                "identity",
                d,
                "layer",
            ),
        ]
    )
    row = compare.constants_table(recs).query("partition == 'layer'").iloc[0]
    iv = compare.interval_from_row(row)
    assert iv.low == pytest.approx(329.883) and iv.value >= iv.low
    assert "sketched estimate" in row["point"] and "upper-bound" not in row["point"]
    assert row["high_kind"] == "probabilistic" and row["high"] == pytest.approx(400.0)
    assert "probabilistic" in row["high_label"] and "99.9%" in row["high_label"]


def test_percent_never_rounds_a_level_below_one_up_to_100():
    assert percent(0.998) == "99.8%"
    assert percent(0.9995) == "99.95%"
    assert percent(0.95) == "95%"


def test_noise_table_does_not_divide_sqrt_d_sigma_by_itself():
    """Old code showed √d‖σ‖₂ ÷ √d‖σ‖₂ = 1.00 [0.868, 1.00]."""
    est = Estimate("noise_l2_sqrtd", 10.0, stderr=0.5, geometry="l2", settings={"batch_size": 8})
    l1 = Estimate("noise_l1", 4.0, stderr=0.2, geometry="linf", settings={"batch_size": 8})
    table = compare.noise_table(pd.DataFrame([_rec(est, "identity", 10), _rec(l1, "identity", 10)]))
    own = table[table["quantity"] == "noise_l2_sqrtd"].iloc[0]
    assert math.isnan(own["ratio_value"])
    other = table[table["quantity"] == "noise_l1"].iloc[0]
    assert other["ratio_value"] == pytest.approx(0.4)


def test_rotated_only_records_are_not_called_the_original_basis():
    """Issue 16.4: every record in hadamard:seed=0 must not read 'in the original basis'."""
    from smoothprobe.report.headline_text import headline_text

    d = 100
    conv = {"residual": 0.0, "converged": True}
    recs = pd.DataFrame(
        [
            _rec(
                Estimate("lambda_max", 2.0, Bound.LOWER, geometry="l2", extra=conv),
                "hadamard:seed=0",
                d,
            ),
            _rec(
                Estimate("lambda_min", -1.0, Bound.UPPER, geometry="l2", extra=conv),
                "hadamard:seed=0",
                d,
            ),
            _rec(Estimate("l11_norm", 150.0, Bound.EXACT, geometry="linf"), "hadamard:seed=0", d),
            _rec(Estimate("linf_lower", 100.0, Bound.LOWER, geometry="linf"), "hadamard:seed=0", d),
        ]
    )
    numbers = compare.headline_numbers(recs)
    text = headline_text(numbers)
    assert numbers["basis_is_identity"] is False
    assert "original basis" not in text
    assert "in basis `hadamard:seed=0`" in text
    assert "a rotated basis" not in text and "the identity basis" in text


def test_hinf_records_are_the_h_inf_bracket_when_present():
    d = 100
    conv = {"residual": 0.0, "converged": True}
    base = [
        _rec(Estimate("lambda_max", 2.0, Bound.LOWER, geometry="l2", extra=conv), "identity", d),
        _rec(Estimate("lambda_min", -1.0, Bound.UPPER, geometry="l2", extra=conv), "identity", d),
        _rec(Estimate("l11_norm", 150.0, Bound.EXACT, geometry="linf"), "identity", d),
        _rec(Estimate("linf_lower", 40.0, Bound.LOWER, geometry="linf"), "identity", d),
    ]
    without = compare.constants_table(pd.DataFrame(base)).query("geometry == 'linf'").iloc[0]
    assert (without["low"], without["high"]) == (40.0, 150.0)
    hinf = [
        _rec(Estimate("hinf_lower", 90.0, Bound.LOWER, geometry="linf"), "identity", d),
        _rec(
            Estimate("hinf_upper", 110.0, Bound.PROB_UPPER, failure_prob=1e-3, geometry="linf"),
            "identity",
            d,
        ),
    ]
    row = compare.constants_table(pd.DataFrame(base + hinf)).query("geometry == 'linf'").iloc[0]
    assert (row["low"], row["high"]) == (90.0, 110.0)
    assert (row["low_kind"], row["high_kind"]) == ("certified", "probabilistic")
    assert 90.0 <= row["value"] <= 110.0
    rho = compare.rho_table(pd.DataFrame(base + hinf)).query("geometry == 'linf'").iloc[0]
    assert rho["rho_low"] == pytest.approx(90.0 / 200.0) and rho["rho_high"] == pytest.approx(0.55)
    assert rho["rho_high_alpha"] == pytest.approx(1e-3)


def test_cli_table_says_what_a_sketched_bound_is_with_its_real_level():
    """Issue 16.6: `block_upper 779585 estimate [779585, 2.95678e+07] (100%)`."""
    from smoothprobe_cli.output import render_table

    sketched = _rec(
        Estimate(
            "block_upper",
            779585.0,
            Bound.ESTIMATE,
            ci_low=779585.0,
            ci_high=2.95678e7,
            confidence=0.998,
            geometry="block",
            extra={"upper_whp": 2.95678e7, "upper_whp_failure_probability": 1e-3},
        ),
        "identity",
        100,
        "tensor",
    )
    ci = _rec(Estimate("l11_norm", 5.0, ci_low=4.0, ci_high=6.0, confidence=0.998), "identity", 9)
    text = render_table([sketched, ci])
    assert "(100%)" not in text
    assert (
        "sketched estimate (≤ the exact U(Φ)); U(Φ) ≤ 2.95678e+07 with probability ≥ 99.9%" in text
    )
    assert "[4, 6] (99.8% CI)" in text
    prob = _rec(Estimate("lambda_max", 3.0, Bound.PROB_UPPER, failure_prob=1e-3), "identity", 9)
    assert "upper bound with probability ≥ 99.9%" in render_table([prob])
    unconverged = _rec(
        Estimate(
            "lambda_max",
            3.0,
            Bound.LOWER,
            geometry="l2",
            extra={"residual": 0.1, "converged": False},
        ),
        "identity",
        9,
    )
    assert "not converged: no upper bound" in render_table([unconverged])
