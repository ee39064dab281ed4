"""Writes the reproduction report: records, CSV tables, figures, report.md and index.html.

Every file is written atomically; numbers in the text come from ``analyse`` (never by hand).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smoothprobe.atomic import atomic_write, atomic_write_text
from smoothprobe.records import records_to_jsonl
from smoothprobe.reproduce import figures
from smoothprobe.reproduce.optimizers import BETAS, EPS, MOMENTUM

Table = tuple[list[str], list[list[Any]]]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "∞" if value > 0 else "n/a"
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c) for c in columns])
    return buf.getvalue()


def _md_table(head: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(head: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _bracket(lo: Any, hi: Any) -> str:
    if lo is None or hi is None:
        return "not measured"
    return f"[{lo:.3g}, {hi:.3g}]"


def _surrogate(row: dict[str, Any]) -> str:
    if "surrogate_ratio" not in row:
        return "(rotation invariant)"
    return (
        f"{row['surrogate_ratio']:.3g} {_bracket(row['surrogate_lower'], row['surrogate_upper'])}"
    )


def sections(analysis: dict[str, Any], info: dict[str, Any]) -> list[tuple[str, list]]:
    """(heading, items); items are ``("p", text)``, ``("table", (head, body))``, ``("img", path)``.

    Every number comes from ``analysis`` / ``info``.
    """
    cfg = info["config"]
    out: list[tuple[str, list]] = []
    verdict_rows = [
        [v["model"], v["claim"], v["verdict"], v["evidence"]] for v in analysis["verdicts"]
    ]
    out.append(
        (
            "Verdicts (computed from the records)",
            [
                (
                    "p",
                    "Each verdict is computed by smoothprobe.reproduce.verdicts from the numbers "
                    "below: reproduced / not reproduced when the whole error bar (range over "
                    "seeds for steps, certified or statistical bracket for constants) lies on "
                    "one side of the threshold, inconclusive otherwise.",
                ),
                ("table", (["model", "claim", "verdict", "evidence"], verdict_rows)),
            ],
        )
    )
    load = info.get("load_average_start"), info.get("load_average_end")
    setup = [
        (
            "p",
            f"{'QUICK test setting. ' if cfg['quick'] else ''}{cfg['steps']} steps per run, "
            f"{cfg['seeds']} seeds (seed = initialisation and data order, shared by every "
            "optimizer), "
            f"training loss evaluated every {cfg['eval_every']} steps on a fixed training sample. "
            f"Adam family: β₁ = {BETAS[0]}, β₂ = {BETAS[1]}, ε = {EPS:g}; SGD momentum {MOMENTUM}. "
            "Rotated runs train φ with θ = Rφ, R the seeded randomized Hadamard basis "
            "(smoothprobe.bases, seed 0), the same R the measurements use.",
        ),
        (
            "p",
            "Learning rates: the grid value with the lowest mean final training loss over seeds "
            f"(grids: {cfg['grids']}); 'at edge' flags a choice at the end of its grid.",
        ),
        (
            "p",
            f"Machine: {info.get('cpu_count')} CPUs shared with other jobs; load average "
            f"(1, 5, 15 min) at start {load[0]}, at end {load[1]}; per model: "
            + "; ".join(
                f"{m} (d = {v.get('d')}): training {v['train_compute_seconds']} s and measuring "
                f"{v['measure_compute_seconds']} s of compute (this invocation: "
                f"{v['train_seconds']} s and {v['measure_seconds']} s, less when cached)"
                for m, v in info["models"].items()
            ),
        ),
        (
            "p",
            "Constants per checkpoint (start, middle, end of the seed-0 runs of Adam, SGD with "
            "momentum and rotated Adam): L₂ by Lanczos (Ritz value; upper end Ritz + residual); "
            "H∞ bracket = [certified sign-ascent lower bound, min(upper end of the 95% interval "
            "of the paper's surrogate ‖H‖₁,₁, d·L₂ upper end)] (hinf_lower/hinf_upper of the ℓ∞ "
            "suite when it provides them); H(Φ) = [certified ascent lower bound, "
            "min(U(Φ), d·L₂)]; gradient "
            "noise ‖σ‖₁ and √d‖σ‖₂ at the training batch size. A trajectory's constant is "
            "[max lower, max upper] over its checkpoints. Budgets: "
            f"{cfg['budget']}.",
        ),
    ]
    for m, v in info["models"].items():
        setup.append(("p", f"{m}: {v['describe']}."))
    out.append(("Setup", setup))
    for res in analysis["models"]:
        m = res["model"]
        items: list = [("img", f"figures/{m}_curves.png"), ("img", f"figures/{m}_lr.png")]
        pred = [
            [
                r["label"],
                r["lr"],
                _bracket(r["rho_lower"], r["rho_upper"]),
                r["geometry_from"],
                r["steps_vs_sgd"],
                r["observed_side"],
                r["overlaps_bracket"],
            ]
            for r in res["predicted"]
        ]
        items += [
            (
                "p",
                "(1) Predicted vs observed. Target: the worst final training loss over SGD's "
                f"seeds "
                f"{res['target_loss']:.4g}. The bound predicts steps relative to SGD of ρ(Φ) = "
                "H(Φ)/(d·L₂) for the optimizer's own geometry; observed: mean [min, max] over "
                "seeds "
                "(censored: the run did not reach the target; > means at least).",
            ),
            (
                "table",
                (
                    [
                        "optimizer",
                        "lr",
                        "ρ(Φ) bracket",
                        "constant read on",
                        "steps / SGD's",
                        "vs 1",
                        "observed vs bracket",
                    ],
                    pred,
                ),
            ),
            ("img", f"figures/{m}_predicted.png"),
        ]
        rot = [
            [
                r["optimizer"],
                r["slowdown"],
                r["constant"],
                _bracket(r["ratio_lower"], r["ratio_upper"]),
                _surrogate(r),
            ]
            for r in res["rotation"]
        ]
        items += [
            (
                "p",
                "(2) Rotation: observed slowdown (steps rotated/original to the worst final loss "
                "of both, which every run reaches) "
                "next to the measured constant's rotated/original ratio.",
            ),
            (
                "table",
                (
                    [
                        "optimizer",
                        "slowdown rotated/original",
                        "constant",
                        "ratio bracket",
                        "paper's surrogate ‖H‖₁,₁ ratio [95% ends]",
                    ],
                    rot,
                ),
            ),
            ("img", f"figures/{m}_rotation.png"),
        ]
        blk = [
            [
                r["optimizer"],
                r["partition"],
                _bracket(r["rho_lower"], r["rho_upper"]),
                r["steps_mean"],
                r["steps_min"],
                r["steps_max"],
                r["rank_h"],
                r["rank_steps"],
            ]
            for r in res["blockwise"]
        ]
        items += [
            (
                "p",
                "(3) Blockwise: H(Φ)/(d·L₂) per partition (Adam's trajectory) against steps to "
                "the worst final loss over every seed of the five (so every run reaches it).",
            ),
            (
                "table",
                (
                    ["optimizer", "partition", "ρ(Φ) bracket", "steps mean", "min", "max"]
                    + ["rank by H(Φ)", "rank by steps"],
                    blk,
                ),
            ),
            ("img", f"figures/{m}_constants.png"),
        ]
        out.append((f"Model {m}", items))
    lr_rows = [
        [
            r["model"],
            r["optimizer"],
            r["lr"],
            r["mean_final_loss"],
            r["seeds"],
            "chosen" + (" (at edge)" if r["at_edge"] else "") if r["chosen"] else "",
        ]
        for r in analysis["lr_table"]
    ]
    out.append(
        (
            "Learning-rate grids",
            [("table", (["model", "optimizer", "lr", "mean final loss", "seeds", ""], lr_rows))],
        )
    )
    const_rows = [
        [
            r["model"],
            r["trajectory"],
            r["step"],
            r["basis"],
            r["partition"],
            r["loss"],
            r["l2"],
            r["lower"],
            r["upper"],
            r["l11_surrogate"],
            r["noise_l1"],
            r["noise_l2_sqrtd"],
        ]
        for r in analysis["constants"]
    ]
    out.append(
        (
            "All measured constants",
            [
                (
                    "table",
                    (
                        [
                            "model",
                            "trajectory",
                            "step",
                            "basis",
                            "partition",
                            "loss",
                            "L₂",
                            "lower",
                            "upper",
                            "‖H‖₁,₁ (surrogate)",
                            "‖σ‖₁",
                            "√d‖σ‖₂",
                        ],
                        const_rows,
                    ),
                )
            ],
        )
    )
    return out


def render_markdown(title: str, secs: list[tuple[str, list]]) -> str:
    parts = [f"# {title}\n"]
    for heading, items in secs:
        parts.append(f"## {heading}\n")
        for kind, value in items:
            if kind == "p":
                parts.append(value + "\n")
            elif kind == "table":
                parts.append(_md_table(*value) + "\n")
            else:
                parts.append(f"![{value}]({value})\n")
    return "\n".join(parts)


def render_html(title: str, secs: list[tuple[str, list]]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, items in secs:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, value in items:
            if kind == "p":
                body.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                body.append(_html_table(*value))
            else:
                body.append(f'<img src="{html.escape(value)}" alt="{html.escape(value)}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px}th{background:#f3f3f3}"
        "img{max-width:100%;display:block;margin:1em 0}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))


def write_report(
    out: Path,
    *,
    runs: Sequence[dict],
    records: Sequence[dict],
    analysis: dict[str, Any],
    info: dict[str, Any],
) -> None:
    """Writes records/, tables/, figures/, verdicts.json, run_info.json, report.md, index.html."""
    for sub in ("records", "tables", "figures"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "records" / "runs.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in runs)
    )
    atomic_write_text(out / "records" / "measurements.jsonl", records_to_jsonl(records))
    tables = {
        "lr_grid": (
            analysis["lr_table"],
            ["model", "optimizer", "lr", "mean_final_loss", "seeds", "chosen", "at_edge"],
        ),
        "constants": (
            analysis["constants"],
            list(analysis["constants"][0]) if analysis["constants"] else [],
        ),
        "verdicts": (analysis["verdicts"], ["model", "claim", "verdict", "evidence"]),
    }
    for res in analysis["models"]:
        m = res["model"]
        tables[f"{m}_predicted_vs_observed"] = (
            res["predicted"],
            [
                "optimizer",
                "lr",
                "rho_lower",
                "rho_upper",
                "geometry_from",
                "steps_vs_sgd",
                "observed_side",
                "overlaps_bracket",
            ],
        )
        tables[f"{m}_rotation"] = (
            res["rotation"],
            ["optimizer", "slowdown", "constant", "ratio_lower", "ratio_upper"]
            + ["surrogate_ratio", "surrogate_lower", "surrogate_upper"],
        )
        tables[f"{m}_blockwise"] = (res["blockwise"], list(res["blockwise"][0]))
        for name, fig in (
            ("curves", figures.curves(m, runs)),
            ("lr", figures.lr_sweep(m, analysis["lr_table"])),
            ("predicted", figures.predicted_vs_observed(res)),
            ("rotation", figures.rotation(res)),
            ("constants", figures.constants(m, analysis["constants"])),
        ):
            _save(fig, out / "figures" / f"{m}_{name}.png")
    for name, (rows, cols) in tables.items():
        atomic_write_text(out / "tables" / f"{name}.csv", _csv(rows, cols))
    atomic_write_text(out / "verdicts.json", json.dumps(analysis["verdicts"], indent=1) + "\n")
    atomic_write_text(out / "run_info.json", json.dumps(info, indent=1, default=str) + "\n")
    title = "Does the theory predict training? smoothprobe reproduce"
    secs = sections(analysis, info)
    atomic_write_text(out / "report.md", render_markdown(title, secs))
    atomic_write_text(out / "index.html", render_html(title, secs))
