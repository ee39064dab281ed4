"""The reproduction's figures (matplotlib, Agg): loss curves, lr sweeps, predicted vs observed,
rotation and constants along the trajectories."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from smoothprobe.reproduce.compare import chosen_lr, chosen_runs, lr_table, running_min
from smoothprobe.reproduce.optimizers import BY_NAME, FAMILY

COLORS = dict(
    zip(
        [s.name for s in FAMILY] + ["sgd_rot"],
        [
            "#1f77b4",
            "#d62728",
            "#2ca02c",
            "#9467bd",
            "#8c564b",
            "#e377c2",
            "#7f7f7f",
            "#bcbd22",
            "#17becf",
        ],
        strict=True,
    )
)


def _fig(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def curves(model: str, runs: Sequence[dict]):
    """Training loss (running minimum) of every optimizer at its chosen lr: mean and seed range."""
    fig = _fig(7.5, 4.2)
    ax = fig.subplots()
    chosen = chosen_runs(runs, chosen_lr(lr_table(runs)))
    for (m, opt), by_seed in chosen.items():
        if m != model:
            continue
        steps = next(iter(by_seed.values()))["eval_steps"]
        ys = [running_min(r["loss"]) for r in by_seed.values()]
        cols = list(zip(*ys, strict=True))
        mean = [sum(c) / len(c) for c in cols]
        ax.plot(
            steps,
            mean,
            color=COLORS[opt],
            label=f"{BY_NAME[opt].label}",
            ls="--" if opt == "sgd_rot" else "-",
        )
        ax.fill_between(
            steps,
            [min(c) for c in cols],
            [max(c) for c in cols],
            color=COLORS[opt],
            alpha=0.15,
            lw=0,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (running min)")
    ax.set_title(f"{model}: training loss at the chosen learning rates (band: seed range)")
    ax.legend(fontsize=7, ncols=2)
    return fig


def lr_sweep(model: str, table: Sequence[dict]):
    """Mean final loss against learning rate; the chosen rate circled."""
    fig = _fig(9.0, 3.8)
    ax = fig.subplots()
    by_opt: dict[str, list[dict]] = defaultdict(list)
    for row in table:
        if row["model"] == model:
            by_opt[row["optimizer"]].append(row)
    for opt, rows in by_opt.items():
        rows.sort(key=lambda r: r["lr"])
        ok = [r for r in rows if math.isfinite(r["mean_final_loss"])]
        ax.plot(
            [r["lr"] for r in ok],
            [r["mean_final_loss"] for r in ok],
            "o-",
            ms=3,
            color=COLORS[opt],
            label=BY_NAME[opt].label,
        )
        best = next(r for r in rows if r["chosen"])
        ax.plot(best["lr"], best["mean_final_loss"], "o", ms=9, mfc="none", color=COLORS[opt])
        for r in rows:
            if not math.isfinite(r["mean_final_loss"]):
                ax.annotate(
                    "diverged",
                    (r["lr"], 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    color=COLORS[opt],
                    ha="center",
                    va="top",
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    all_lrs = [r["lr"] for rows in by_opt.values() for r in rows]
    if all_lrs:
        ax.set_xlim(min(all_lrs) / 1.5, max(all_lrs) * 1.5)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("mean final training loss")
    ax.set_title(f"{model}: learning-rate grids (circle: chosen)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def predicted_vs_observed(result: dict[str, Any]):
    """x: ρ(Φ) bracket of the optimizer's own geometry; y: steps relative to SGD (seed range)."""
    fig = _fig(9.0, 4.6)
    ax = fig.subplots()
    for row in result["predicted"]:
        if row["rho_upper"] is None:
            continue
        vals = [r["ratio"] for r in row["ratios"] if math.isfinite(r["ratio"])]
        if not vals:
            continue
        lo, hi = row["rho_lower"], row["rho_upper"]
        x = math.sqrt(lo * hi)
        y = sum(vals) / len(vals)
        ax.errorbar(
            x,
            y,
            xerr=[[x - lo], [hi - x]],
            yerr=[[y - min(vals)], [max(vals) - y]],
            fmt="o",
            color=COLORS[row["optimizer"]],
            capsize=3,
            label=row["label"],
        )
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.axvline(1.0, color="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lo, hi = min(x0, y0), max(x1, y1)
    ax.plot([lo, hi], [lo, hi], color="#999", lw=0.8, ls="--", label="bound's ratio (y = x)")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("ρ(Φ) = H(Φ)/(d·L₂) of the optimizer's geometry (bracket)")
    ax.set_ylabel("steps to SGD's final loss, relative to SGD")
    ax.set_title(f"{result['model']}: predicted vs observed (error bars: bracket, seed range)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def rotation(result: dict[str, Any]):
    """Observed slowdown under rotation next to the constant's rotated/original ratio."""
    fig = _fig(6.5, 3.6)
    ax = fig.subplots()
    labels = []
    for i, row in enumerate(result["rotation"]):
        opt = row["optimizer"]
        text = row["slowdown"]
        try:
            mean = float(text.split()[0])
            lo, hi = (float(t) for t in text.split("[")[1].split("]")[0].split(","))
            ax.errorbar(
                i - 0.12,
                mean,
                yerr=[[mean - lo], [hi - mean]],
                fmt="s",
                color="#333",
                capsize=4,
                label="observed slowdown" if i == 0 else None,
            )
        except (ValueError, IndexError):
            pass
        a, b = row["ratio_lower"], row["ratio_upper"]
        if math.isfinite(a) and math.isfinite(b):
            ax.plot([i + 0.12] * 2, [a, b], "_", color="#d62728", ms=14, mew=2)
            ax.vlines(
                i + 0.12,
                a,
                b,
                color="#d62728",
                lw=6,
                alpha=0.6,
                label="constant rotated/original (bracket)" if i == 0 else None,
            )
        labels.append(f"{opt}: {row['constant']}")
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("rotated / original")
    ax.set_title(f"{result['model']}: rotation (Hadamard basis)")
    ax.legend(fontsize=7)
    return fig


def constants(model: str, table: Sequence[dict]):
    """ρ brackets along the trajectories: (left) every partition along Adam's, identity basis;
    (right) H∞ in both bases along the three measured trajectories."""
    fig = _fig(10.0, 4.2)
    left, right = fig.subplots(1, 2, sharey=True)
    rows = [r for r in table if r["model"] == model and r["partition"] != "one"]
    panels = (
        (
            left,
            lambda r: r["trajectory"] == "adam" and r["basis"] == "identity",
            "partition",
            "Adam's trajectory, identity basis",
        ),
        (right, lambda r: r["partition"] == "singleton", None, "H∞ (singleton blocks)"),
    )
    for ax, keep, by, title in panels:
        chosen = [r for r in rows if keep(r)]
        keys = sorted({(r["partition"],) if by else (r["trajectory"], r["basis"]) for r in chosen})
        for j, key in enumerate(keys):
            pts = sorted(
                (
                    r
                    for r in chosen
                    if ((r["partition"],) if by else (r["trajectory"], r["basis"])) == key
                ),
                key=lambda r: r["step"],
            )
            shift = (j - len(keys) / 2) * 0.01 * max(1, pts[-1]["step"])
            xs = [r["step"] + shift for r in pts]
            mid = [math.sqrt(r["rho_lower"] * r["rho_upper"]) for r in pts]
            err = [
                [m - r["rho_lower"] for m, r in zip(mid, pts, strict=True)],
                [r["rho_upper"] - m for m, r in zip(mid, pts, strict=True)],
            ]
            ax.errorbar(xs, mid, yerr=err, fmt="o-", ms=3, capsize=2, lw=0.8, label=" · ".join(key))
        ax.axhline(1.0, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    left.set_ylabel("ρ(Φ) = H(Φ)/(d·L₂) bracket")
    fig.suptitle(f"{model}: constants at start, middle and end (bracket: lower to upper)")
    return fig
