"""From run summaries and measurement records to the comparison tables (pure functions).

Conventions (stated in the report):
- the training loss of a run is the exact mean loss on the task's fixed training sample;
  *steps to a target* is the first step where the running minimum of that curve reaches the
  target, interpolated linearly between evaluations; a run that never reaches it is *censored*;
- ratios of steps are paired by seed (same initialisation and data order);
- a constant along a trajectory is the bracket [max lower, max upper] over its measured
  checkpoints (start, middle, end): the theory's supremum over the trajectory, at three points.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

Run = dict[str, Any]
Record = dict[str, Any]


# ---- runs ---------------------------------------------------------------------------------


def final(run: Run) -> float:
    """Final training loss (inf when diverged)."""
    value = run.get("final_loss")
    return math.inf if value is None or run.get("diverged") else float(value)


def lr_table(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Mean final loss per (model, optimizer, lr) over seeds, with the chosen lr marked.

    The chosen lr minimises the mean final training loss (ties: the smaller lr); ``at_edge`` says
    it is the smallest or largest value of the grid (the grid may not contain the optimum).
    """
    groups: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.get("grid", True):
            groups[(run["model"], run["optimizer"])][float(run["lr"])].append(final(run))
    rows = []
    for (model, opt), by_lr in groups.items():
        means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
        best = min(sorted(means), key=lambda lr: means[lr])
        grid = sorted(means)
        for lr in grid:
            rows.append(
                {
                    "model": model,
                    "optimizer": opt,
                    "lr": lr,
                    "mean_final_loss": means[lr],
                    "seeds": len(by_lr[lr]),
                    "chosen": lr == best,
                    "at_edge": lr == best and best in (grid[0], grid[-1]),
                }
            )
    return rows


def chosen_lr(table: Sequence[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(r["model"], r["optimizer"]): r["lr"] for r in table if r["chosen"]}


def chosen_runs(runs: Sequence[Run], lrs: dict[tuple[str, str], float]) -> dict:
    """(model, optimizer) → {seed: run} at the chosen lr (SGD rotated: at SGD's lr)."""
    out: dict[tuple[str, str], dict[int, Run]] = defaultdict(dict)
    for run in runs:
        key = (run["model"], run["optimizer"])
        lr = lrs.get(key, lrs.get((run["model"], "sgd")) if run["optimizer"] == "sgd_rot" else None)
        if lr is not None and float(run["lr"]) == lr:
            out[key][int(run["seed"])] = run
    return dict(out)


def running_min(values: Sequence[float | None]) -> list[float]:
    out, best = [], math.inf
    for v in values:
        best = min(best, math.inf if v is None else float(v))
        out.append(best)
    return out


def steps_to_target(run: Run, target: float) -> float | None:
    """First step where the running-minimum loss reaches ``target`` (None: censored)."""
    steps, losses = run["eval_steps"], running_min(run["loss"])
    for i, (step, loss) in enumerate(zip(steps, losses, strict=True)):
        if loss <= target:
            if i == 0:
                return float(step)
            s0, l0 = steps[i - 1], losses[i - 1]
            frac = (l0 - target) / (l0 - loss) if l0 > loss and math.isfinite(l0) else 1.0
            return s0 + frac * (step - s0)
    return None


def mean_final(runs_by_seed: dict[int, Run]) -> float:
    """Mean over seeds of the final running-minimum loss."""
    values = [running_min(r["loss"])[-1] for r in runs_by_seed.values()]
    return sum(values) / len(values)


def paired_ratios(a: dict[int, Run], b: dict[int, Run], target: float) -> list[dict[str, Any]]:
    """Per seed, steps_a / steps_b to ``target``; censored runs give one-sided ratios.

    Returns:
        Rows with seed, steps_a, steps_b, ratio and ``kind``: ``exact``, ``lower`` (a censored:
        the ratio is at least the value) or ``upper`` (b censored), or ``unknown`` (both).
    """
    rows = []
    for seed in sorted(set(a) & set(b)):
        sa, sb = steps_to_target(a[seed], target), steps_to_target(b[seed], target)
        budget = float(a[seed]["steps"])
        kind = "exact"
        if sa is None and sb is None:
            ratio, kind = math.nan, "unknown"
        elif sa is None:
            ratio, kind = budget / max(sb, 1.0), "lower"
        elif sb is None:
            ratio, kind = max(sa, 1.0) / budget, "upper"
        else:
            ratio = max(sa, 1.0) / max(sb, 1.0)
        rows.append({"seed": seed, "steps_a": sa, "steps_b": sb, "ratio": ratio, "kind": kind})
    return rows


def ratio_side(rows: Sequence[dict[str, Any]], *, threshold: float = 1.0) -> str:
    """``below``/``above`` when every seed's ratio is certainly below/above ``threshold``."""
    below = all(r["kind"] in ("exact", "upper") and r["ratio"] < threshold for r in rows)
    above = all(r["kind"] in ("exact", "lower") and r["ratio"] > threshold for r in rows)
    return "below" if rows and below else "above" if rows and above else "mixed"


def describe_ratios(rows: Sequence[dict[str, Any]]) -> str:
    """``0.62 [0.55, 0.70]`` (mean [min, max] over seeds; ``>``/``<`` marks censored seeds)."""
    if not rows:
        return "n/a"
    values = [r["ratio"] for r in rows if math.isfinite(r["ratio"])]
    if not values:
        return "not reached"
    mark = {"lower": ">", "upper": "<", "exact": "", "unknown": "?"}
    marks = "".join(sorted({mark[r["kind"]] for r in rows} - {""}))
    text = f"{sum(values) / len(values):.3g} [{min(values):.3g}, {max(values):.3g}]"
    return f"{text} (censored: {marks})" if marks else text


# ---- measurements --------------------------------------------------------------------------

Bracket = tuple[float, float]


def _by_point(records: Sequence[Record]) -> dict[tuple, dict[tuple[str, str], Record]]:
    points: dict[tuple, dict[tuple[str, str], Record]] = defaultdict(dict)
    for r in records:
        extra = r.get("extra") or {}
        key = (
            extra.get("model"),
            extra.get("trajectory"),
            r.get("step"),
            extra.get("measure_basis"),
        )
        points[key][(r["quantity"], r.get("partition") or "")] = r
    return points


def _upper_end(record: Record | None) -> float:
    if record is None:
        return math.inf
    high = record.get("ci_high")
    return float(high) if high is not None else float(record["value"])


def _lower_end(record: Record | None) -> float:
    if record is None:
        return math.nan
    low = record.get("ci_low")
    return float(low) if low is not None else float(record["value"])


def point_constants(point: dict[tuple[str, str], Record]) -> dict[str, Any]:
    """Constants at one point: L₂, d·L₂ and the brackets of H∞ and every measured H(Φ).

    H∞: lower = the certified ``linf_lower`` (or ``hinf_lower`` when the suite gives it), upper
    = ``hinf_upper`` when given, else min(upper end of the ‖H‖₁,₁ interval, d·L₂ upper end).
    H(Φ): [block_lower, min(U(Φ), d·L₂ upper end)] (H(Φ) ≤ d·L₂ for every Φ).
    """
    get = lambda q, p="": point.get((q, p))  # noqa: E731
    l2 = next((r for (q, _), r in point.items() if q == "l2_norm"), None)
    d = int(l2["d"])
    dl2, dl2_up = d * float(l2["value"]), d * _upper_end(l2)
    l11 = next((r for (q, _), r in point.items() if q == "l11_norm"), None)
    lower = next((r for (q, _), r in point.items() if q == "linf_lower"), None)
    h_lo = next((r for (q, _), r in point.items() if q == "hinf_lower"), None)
    h_up = next((r for (q, _), r in point.items() if q == "hinf_upper"), None)
    hinf_lower = max(float(lower["value"]), float(h_lo["value"]) if h_lo else -math.inf)
    hinf_upper = float(h_up["value"]) if h_up else min(_upper_end(l11), dl2_up)
    blocks = {"singleton": (hinf_lower, hinf_upper), "one": (dl2, dl2_up)}
    for (q, part), r in point.items():
        if q == "block_lower":
            upper = get("block_upper", part)
            blocks[part] = (float(r["value"]), min(_upper_end(upper), dl2_up))
    noise = {q: float(r["value"]) for (q, _), r in point.items() if q.startswith("noise_")}
    loss = next((r for (q, _), r in point.items() if q == "loss"), None)
    return {
        "d": d,
        "l2": float(l2["value"]),
        "d_l2": dl2,
        "d_l2_upper": dl2_up,
        "l11": float(l11["value"]) if l11 else math.nan,
        "l11_low": _lower_end(l11),
        "l11_high": _upper_end(l11),
        "hinf_source": "hinf suite" if h_up else "linf_lower, min(l11 CI upper, d*L2)",
        "blocks": blocks,
        "noise": noise,
        "loss": float(loss["value"]) if loss else math.nan,
    }


def constants_table(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per (model, trajectory, step, basis, partition): bracket and ρ bracket."""
    rows = []
    for (model, traj, step, basis), point in sorted(_by_point(records).items(), key=str):
        c = point_constants(point)
        for part, (lo, up) in c["blocks"].items():
            rows.append(
                {
                    "model": model,
                    "trajectory": traj,
                    "step": step,
                    "basis": basis,
                    "partition": part,
                    "loss": c["loss"],
                    "l2": c["l2"],
                    "d_l2": c["d_l2"],
                    "l11_surrogate": c["l11"] if part == "singleton" else None,
                    "l11_low": c["l11_low"] if part == "singleton" else None,
                    "l11_high": c["l11_high"] if part == "singleton" else None,
                    "lower": lo,
                    "upper": up,
                    "rho_lower": lo / c["d_l2"],
                    "rho_upper": up / c["d_l2"],
                    "noise_l1": c["noise"].get("noise_l1"),
                    "noise_l2_sqrtd": c["noise"].get("noise_l2_sqrtd"),
                }
            )
    return rows


def trajectory_bracket(
    table: Sequence[dict[str, Any]], *, model: str, trajectory: str, basis: str, partition: str
) -> dict[str, float] | None:
    """[max lower, max upper] over the trajectory's checkpoints, raw and normalised by d·L₂."""
    rows = [
        r
        for r in table
        if (r["model"], r["trajectory"], r["basis"], r["partition"])
        == (model, trajectory, basis, partition)
    ]
    if not rows:
        return None
    surrogate = [r for r in rows if r.get("l11_surrogate") is not None]
    return {
        "l11": max((r["l11_surrogate"] for r in surrogate), default=math.nan),
        "l11_low": max((r["l11_low"] for r in surrogate), default=math.nan),
        "l11_high": max((r["l11_high"] for r in surrogate), default=math.nan),
        "lower": max(r["lower"] for r in rows),
        "upper": max(r["upper"] for r in rows),
        "rho_lower": max(r["rho_lower"] for r in rows),
        "rho_upper": max(r["rho_upper"] for r in rows),
        "points": len(rows),
    }
