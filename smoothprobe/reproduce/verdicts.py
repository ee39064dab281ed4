"""The comparison tables and one verdict per claim of the seed paper, computed from the numbers.

``analyse(runs, records)`` is everything the report shows; the verdicts are recomputed from the
committed records by the tests. A verdict is ``reproduced``, ``not reproduced`` or
``inconclusive`` (the error bars — the range over seeds for steps, the bracket for constants —
straddle the threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smoothprobe.reproduce.compare import (
    chosen_lr,
    chosen_runs,
    constants_table,
    describe_ratios,
    lr_table,
    mean_final,
    paired_ratios,
    ratio_side,
    running_min,
    steps_to_target,
    trajectory_bracket,
)
from smoothprobe.reproduce.optimizers import FAMILY

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
BLOCKWISE = (("adam", "singleton"), ("adam_mini", "mini"), ("adam_tensor", "tensor"))
BLOCKWISE += (("adalayer", "layer"), ("adasgd", "one"))
INVARIANCE_TOL = 1e-3  # SGD rotated vs original: largest relative difference of the loss curves


def _geometry(model: str, opt: str, table) -> dict[str, float] | None:
    """The constant of an optimizer's own geometry along the trajectory it is read on."""
    spec = {s.name: s for s in FAMILY}[opt]
    if spec.partition == "one":
        return {"rho_lower": 1.0, "rho_upper": 1.0, "source": "d*L2 by definition"}
    traj, basis = ("adam_rot", "hadamard") if spec.basis == "hadamard" else ("adam", "identity")
    found = trajectory_bracket(
        table, model=model, trajectory=traj, basis=basis, partition=spec.partition
    )
    return None if found is None else {**found, "source": f"{traj} trajectory, {basis} basis"}


def _verdict_from_side(side: str, *, want: str) -> str:
    if side == "mixed":
        return INCONCLUSIVE
    return REPRODUCED if side == want else NOT_REPRODUCED


def _bracket_side(lower: float, upper: float, threshold: float) -> str:
    return "below" if upper < threshold else "above" if lower > threshold else "mixed"


def analyse_model(model: str, runs: Sequence[dict], table: Sequence[dict]) -> dict[str, Any]:
    """Tables 1–3 and the verdicts of one model."""
    lrs = chosen_lr(lr_table(runs))
    chosen = {opt: by_seed for (m, opt), by_seed in chosen_runs(runs, lrs).items() if m == model}
    sgd = chosen["sgd"]
    target = worst_final(sgd)
    predicted = []
    for spec in FAMILY:
        geo = _geometry(model, spec.name, table)
        rows = paired_ratios(chosen[spec.name], sgd, target)
        predicted.append(
            {
                "optimizer": spec.name,
                "label": spec.label,
                "lr": lrs[(model, spec.name)],
                "rho_lower": None if geo is None else geo["rho_lower"],
                "rho_upper": None if geo is None else geo["rho_upper"],
                "geometry_from": None if geo is None else geo["source"],
                "steps_vs_sgd": describe_ratios(rows),
                "observed_side": ratio_side(rows),
                "overlaps_bracket": _overlaps(rows, geo),
                "ratios": rows,
            }
        )
    verdicts = []

    def add(claim: str, verdict: str, evidence: str) -> None:
        verdicts.append({"model": model, "claim": claim, "verdict": verdict, "evidence": evidence})

    # C1: the ℓ∞ geometry is better than the ℓ2 one along Adam's trajectory (ρ < 1).
    adam_geo = _geometry(model, "adam", table)
    side = _bracket_side(adam_geo["rho_lower"], adam_geo["rho_upper"], 1.0)
    add(
        "C1 ℓ∞ smoothness beats ℓ2: H∞/(d·L₂) < 1 along Adam's trajectory",
        _verdict_from_side(side, want="below"),
        f"H∞/(d·L₂) ∈ [{adam_geo['rho_lower']:.3g}, {adam_geo['rho_upper']:.3g}]",
    )
    # C2: Adam is faster than the better-tuned of SGD and SGD with momentum.
    base = min(("sgd", "sgdm"), key=lambda o: mean_final(chosen[o]))  # better tuned
    base_target = worst_final(chosen[base])
    rows = paired_ratios(chosen["adam"], chosen[base], base_target)
    add(
        f"C2 Adam reaches the loss of tuned {base.upper()} in fewer steps",
        _verdict_from_side(ratio_side(rows), want="below"),
        f"steps Adam/{base.upper()} to loss {base_target:.4g}: {describe_ratios(rows)}",
    )
    # C3, C4: rotation raises H∞ and slows Adam.
    rot = _geometry(model, "adam_rot", table)
    lo, up = rot["lower"] / adam_geo["upper"], rot["upper"] / adam_geo["lower"]
    add(
        "C3 rotating the parameters raises H∞",
        _verdict_from_side(_bracket_side(lo, up, 1.0), want="above"),
        f"H∞ rotated/original ∈ [{lo:.3g}, {up:.3g}]",
    )
    s_lo, s_up = rot["l11_low"] / adam_geo["l11_high"], rot["l11_high"] / adam_geo["l11_low"]
    add(
        "C3s rotating the parameters raises the paper's surrogate ‖H‖₁,₁",
        _verdict_from_side(_bracket_side(s_lo, s_up, 1.0), want="above"),
        f"‖H‖₁,₁ rotated/original {rot['l11'] / adam_geo['l11']:.3g}, from the 95% intervals "
        f"[{s_lo:.3g}, {s_up:.3g}]",
    )
    rot_target = worst_final(chosen["adam"], chosen["adam_rot"])
    rot_rows = paired_ratios(chosen["adam_rot"], chosen["adam"], rot_target)
    add(
        "C4 rotating the parameters slows Adam",
        _verdict_from_side(ratio_side(rot_rows), want="above"),
        f"steps rotated/original to loss {rot_target:.4g}: {describe_ratios(rot_rows)}",
    )
    # C5: SGD is unaffected by the rotation (exact in exact arithmetic; float32 rounding can be
    # amplified by the dynamics, so the verdict compares the change of speed with the change a
    # different seed makes).
    sgd_rows, worst, spread = [], math.nan, math.nan
    if "sgd_rot" in chosen:
        rotated = chosen["sgd_rot"]
        sgd_rows = paired_ratios(rotated, sgd, worst_final(sgd, rotated))
        worst = max(
            abs(a - b) / max(abs(b), 1e-12)
            for s in sorted(set(rotated) & set(sgd))
            for a, b in zip(rotated[s]["loss"], sgd[s]["loss"], strict=True)
            if a is not None and b is not None
        )
        steps = [r["steps_b"] for r in sgd_rows if r["steps_b"] is not None]
        spread = (max(steps) - min(steps)) / (sum(steps) / len(steps)) if steps else math.nan
    changes = [abs(r["ratio"] - 1) for r in sgd_rows if r["kind"] == "exact"]
    if len(changes) != len(sgd_rows) or not changes:
        c5 = INCONCLUSIVE
    elif max(changes) <= spread:
        c5 = REPRODUCED
    elif min(changes) > spread:
        c5 = NOT_REPRODUCED
    else:
        c5 = INCONCLUSIVE
    add(
        "C5 SGD is unaffected by the rotation",
        c5,
        f"steps rotated/original {describe_ratios(sgd_rows)} vs seed-to-seed spread of SGD's "
        f"steps {spread:.3g}; largest relative loss difference over the run {worst:.2g}",
    )
    # C6: blockwise speed follows H(Φ).
    block_target = worst_final(*(chosen[o] for o, _ in BLOCKWISE))
    blockwise = []
    for opt, part in BLOCKWISE:
        geo = _geometry(model, opt, table)
        steps = []
        for run in chosen[opt].values():
            s = steps_to_target(run, block_target)
            steps.append(math.inf if s is None else s)
        blockwise.append(
            {
                "optimizer": opt,
                "partition": part,
                "rho_lower": None if geo is None else geo["rho_lower"],
                "rho_upper": None if geo is None else geo["rho_upper"],
                "steps_mean": sum(steps) / len(steps),
                "steps_min": min(steps),
                "steps_max": max(steps),
            }
        )
    _add_ranks(blockwise)
    concordant = discordant = 0
    for i, a in enumerate(blockwise):
        for b in blockwise[i + 1 :]:
            if a["rho_upper"] is None or b["rho_upper"] is None:
                continue
            if a["rho_upper"] < b["rho_lower"]:
                smaller, larger = a, b
            elif b["rho_upper"] < a["rho_lower"]:
                smaller, larger = b, a
            else:
                continue
            if smaller["steps_max"] < larger["steps_min"]:
                concordant += 1
            elif smaller["steps_min"] > larger["steps_max"]:
                discordant += 1
    verdict = (
        REPRODUCED
        if concordant and not discordant
        else NOT_REPRODUCED
        if discordant > concordant
        else INCONCLUSIVE
    )
    add(
        "C6 blockwise Adam: fewer steps where H(Φ) is smaller",
        verdict,
        f"decided pairs (disjoint H(Φ) brackets and step ranges): {concordant} agree, "
        f"{discordant} disagree, of {len(blockwise) * (len(blockwise) - 1) // 2}; "
        f"target loss {block_target:.4g}",
    )
    # C7: ρ(Φ) < 1 predicts beating SGD.
    agree = disagree = 0
    for row in predicted:
        if row["rho_upper"] is not None and row["rho_upper"] < 1 and row["optimizer"] != "sgd":
            agree += row["observed_side"] == "below"
            disagree += row["observed_side"] == "above"
    add(
        "C7 an optimizer whose geometry has ρ(Φ) < 1 beats SGD",
        REPRODUCED
        if agree and not disagree
        else NOT_REPRODUCED
        if disagree > agree
        else INCONCLUSIVE,
        f"of the optimizers with ρ(Φ) bracket below 1: {agree} faster than SGD on every seed, "
        f"{disagree} slower on every seed, the rest undecided (target: SGD's worst final "
        f"loss {target:.4g})",
    )
    rotation = [
        {
            "optimizer": "adam",
            "slowdown": describe_ratios(rot_rows),
            "constant": "H∞ (trajectory sup)",
            "ratio_lower": lo,
            "ratio_upper": up,
            "surrogate_ratio": rot["l11"] / adam_geo["l11"],
            "surrogate_lower": s_lo,
            "surrogate_upper": s_up,
        },
        {
            "optimizer": "sgd",
            "slowdown": describe_ratios(sgd_rows),
            "constant": "L₂ (same θ, both bases)",
            **_l2_ratio(table, model),
        },
    ]
    return {
        "model": model,
        "target_loss": target,
        "predicted": predicted,
        "rotation": rotation,
        "blockwise": blockwise,
        "verdicts": verdicts,
    }


def _overlaps(rows: Sequence[dict], geo: dict | None) -> str:
    """Whether the seeds' range of observed step ratios meets the ρ(Φ) bracket."""
    values = [r["ratio"] for r in rows if r["kind"] == "exact"]
    if geo is None or not values or len(values) != len(rows):
        return "n/a"
    meets = min(values) <= geo["rho_upper"] and max(values) >= geo["rho_lower"]
    return "yes" if meets else "faster" if max(values) < geo["rho_lower"] else "slower"


def worst_final(*groups: dict[int, dict]) -> float:
    """The largest final running-minimum loss over every run of the groups: all of them reach
    it, so steps to it are never censored within the groups."""
    return max(running_min(r["loss"])[-1] for g in groups for r in g.values())


def _add_ranks(rows: list[dict[str, Any]]) -> None:
    """Descriptive ranks: by the bracket's geometric midpoint and by mean steps (1 = smallest)."""
    mid = [
        math.sqrt(r["rho_lower"] * r["rho_upper"]) if r["rho_upper"] is not None else math.inf
        for r in rows
    ]
    for key, values in (("rank_h", mid), ("rank_steps", [r["steps_mean"] for r in rows])):
        order = sorted(range(len(rows)), key=lambda i: values[i])
        for rank, i in enumerate(order, 1):
            rows[i][key] = rank


def _l2_ratio(table: Sequence[dict], model: str) -> dict[str, float]:
    """Range over points measured in both bases of L₂(rotated)/L₂(original)."""
    by_point = {}
    for r in table:
        if r["model"] == model and r["partition"] == "one":
            by_point.setdefault((r["trajectory"], r["step"]), {})[r["basis"]] = r["l2"]
    ratios = [p["hadamard"] / p["identity"] for p in by_point.values() if len(p) == 2]
    return {
        "ratio_lower": min(ratios, default=math.nan),
        "ratio_upper": max(ratios, default=math.nan),
    }


def analyse(runs: Sequence[dict], records: Sequence[dict]) -> dict[str, Any]:
    """Everything the report shows: lr table, constants table, per-model tables and verdicts."""
    table = constants_table(records)
    models = sorted({r["model"] for r in runs}, key=lambda m: (m != "gpt", m))
    per_model = [analyse_model(m, runs, table) for m in models]
    return {
        "lr_table": lr_table(runs),
        "constants": table,
        "models": per_model,
        "verdicts": [v for m in per_model for v in m["verdicts"]],
    }
