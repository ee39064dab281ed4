"""‖H‖₁,₁: relative error vs HVP budget of every method, against the seed paper's estimator.

For each example workload (``smoothprobe.examples``: mlp, cnn with BatchNorm, tiny GPT; bench
size d ≈ 26–29k, or ``--size test`` d ≈ 2–3k) the exact Hessian is built once, column block by
column block through the model's exact HVP (d HVPs, float64), giving the exact column norms
‖H e_j‖₁ (float64, summed for the truth) and a float32 copy of H on disk
(``--cache-dir``, 2.7–3.3 GB per workload at bench size; reused on reruns). Every estimate then
runs the library's ``estimate_l11`` unchanged on that matrix (a ``DenseOperator`` subclass that
answers unit-vector blocks by row lookup, a plain float32 product otherwise), for budgets
32…1024 HVPs and ``--seeds`` seeds, methods ``cauchy-median``, ``cauchy-iqr``, ``cauchy-geomean``,
``uniform``, ``stratified``, ``two-phase`` (the default) and the seed paper's setting: 50 Cauchy
probes, half-IQR (``seed-paper``). Cauchy methods with the same seed draw the same probes, so
their HVP blocks are computed once and reused across the three scale estimators (a cache keyed by
the probe block's bytes); each method still runs end to end.

Reported per (workload, method, budget): RMS relative error over seeds (the ``s.d. over seeds``
of the issue: the estimators are unbiased or nearly so), coverage of the nominal 95% interval,
mean HVPs. Writes ``l11_budget_runs.csv`` (every run), ``l11_budget.csv`` (summary) and
``l11_budget.png`` under ``--out`` and prints a table.

Usage::

    python bench/l11_budget.py                          # bench size, 10 seeds, all workloads
    python bench/l11_budget.py --size test --seeds 20   # d ≈ 2–3k, quick
    python bench/l11_budget.py --workloads gpt --budgets 64 256 1024
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from smoothprobe.estimators.l11 import MIN_TWO_PHASE, estimate_l11
from smoothprobe.examples import build_example
from smoothprobe.linear_operator import DenseOperator

METHODS = ("cauchy-median", "cauchy-iqr", "cauchy-geomean", "uniform", "stratified", "two-phase")
BUDGETS = (32, 64, 128, 256, 512, 1024)
SEED_PAPER = {"method": "cauchy-iqr", "hvps": 50}


class BenchOperator(DenseOperator):
    """A float32 dense Hessian: unit vectors answered by row lookup, repeated blocks cached."""

    def __init__(self, matrix: torch.Tensor, layout):
        super().__init__(matrix, layout=layout)
        self.cache: dict[str, torch.Tensor] = {}

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        block = vectors.reshape(1, -1) if vectors.ndim == 1 else vectors
        self.cost.hvps += block.shape[0]
        nonzero = block != 0
        if bool((nonzero.sum(dim=1) == 1).all()):
            cols = nonzero.float().argmax(dim=1)
            if bool((block[torch.arange(block.shape[0]), cols] == 1).all()):
                out = self.matrix[cols]  # H e_j = row j (H symmetric)
                return out.reshape(-1) if vectors.ndim == 1 else out
        key = hashlib.sha1(block.to(torch.float32).numpy().tobytes()).hexdigest()
        if key not in self.cache:
            self.cache[key] = block.to(self.dtype) @ self.matrix
        out = self.cache[key]
        return out.reshape(-1) if vectors.ndim == 1 else out


def exact_hessian_f32(name: str, size: str, cache: Path, chunk: int) -> tuple[np.ndarray, float]:
    """(H as a float32 memmap, exact ‖H‖₁,₁ from float64 columns), built once and cached."""
    problem = build_example(name, size=size)
    d = problem.d
    path = cache / f"{name}_{size}_hessian_f32.npy"
    norms_path = cache / f"{name}_{size}_column_l1.npy"
    if path.exists() and norms_path.exists():
        return np.load(path, mmap_mode="r"), float(np.load(norms_path).sum())
    cache.mkdir(parents=True, exist_ok=True)
    op = problem.hvp_operator()
    tmp = path.with_suffix(".partial.npy")
    dense = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(d, d))
    norms = np.empty(d)
    t0 = time.perf_counter()
    for start in range(0, d, chunk):
        stop = min(d, start + chunk)
        eye = torch.zeros(stop - start, d, dtype=op.dtype)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1
        cols = op.matvec(eye).to(torch.float64)
        norms[start:stop] = cols.abs().sum(dim=1).numpy()
        dense[start:stop] = cols.to(torch.float32).numpy()
        if start // chunk % 50 == 0:
            print(f"  {name}: columns {stop}/{d} ({time.perf_counter() - t0:.0f} s)", flush=True)
    dense.flush()
    del dense
    tmp.rename(path)
    np.save(norms_path, norms)
    return np.load(path, mmap_mode="r"), float(norms.sum())


def run_workload(name: str, args) -> list[dict]:
    problem = build_example(name, size=args.size)
    dense, truth = exact_hessian_f32(name, args.size, args.cache_dir, args.column_chunk)
    op = BenchOperator(torch.from_numpy(np.array(dense)), problem.layout)  # into RAM
    del dense
    # one group per budget: methods of a group with the same seed share their probe blocks
    groups = [
        [(m, b, m) for m in args.methods if not (m == "two-phase" and b < MIN_TWO_PHASE)]
        for b in args.budgets
    ]
    groups.append([(SEED_PAPER["method"], SEED_PAPER["hvps"], "seed-paper")])
    rows = []
    for seed in range(args.seeds):
        for group in groups:
            op.cache.clear()
            for method, budget, label in group:
                before = op.cost.hvps
                t0 = time.perf_counter()
                est = estimate_l11(op, method=method, max_hvps=budget, generator=seed).estimate
                rows.append(
                    {
                        "workload": name,
                        "d": op.d,
                        "method": label,
                        "budget": budget,
                        "seed": seed,
                        "value": est.value,
                        "truth": truth,
                        "rel_err": est.value / truth - 1,
                        "stderr": est.stderr,
                        "ci_low": est.ci_low,
                        "ci_high": est.ci_high,
                        "covered": est.ci_low is not None and est.ci_low <= truth <= est.ci_high,
                        "hvps": op.cost.hvps - before,
                        "seconds": time.perf_counter() - t0,
                    }
                )
        op.cache.clear()
        print(f"  {name}: seed {seed + 1}/{args.seeds} done", flush=True)
    return rows


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    g = runs.groupby(["workload", "d", "method", "budget"])
    return g.agg(
        rms_rel_err=("rel_err", lambda x: float(np.sqrt(np.mean(np.square(x))))),
        sd_rel_err=("rel_err", "std"),
        bias=("rel_err", "mean"),
        coverage=("covered", "mean"),
        hvps=("hvps", "mean"),
        seeds=("seed", "count"),
    ).reset_index()


def print_table(summary: pd.DataFrame) -> None:
    for name, part in summary.groupby("workload"):
        table = part.pivot(index="method", columns="budget", values="rms_rel_err") * 100
        cover = part.pivot(index="method", columns="budget", values="coverage") * 100
        print(
            f"\n{name} (d = {int(part['d'].iloc[0])}): RMS relative error, % "
            f"({int(part['seeds'].max())} seeds)"
        )
        print(table.round(2).to_string(na_rep="-"))
        print("coverage of the nominal 95% interval, %")
        print(cover.round(0).to_string(na_rep="-"))


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(summary["workload"].unique())
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = summary[summary["workload"] == name]
        for method, curve in part.groupby("method"):
            curve = curve.sort_values("budget")
            if method == "seed-paper":
                ax.scatter(
                    curve["budget"],
                    curve["rms_rel_err"] * 100,
                    marker="*",
                    s=150,
                    color="k",
                    zorder=5,
                    label="seed paper (50 probes, IQR)",
                )
            else:
                style = "-o" if method == "two-phase" else "--."
                ax.plot(curve["budget"], curve["rms_rel_err"] * 100, style, label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("HVP budget")
        ax.set_ylabel("RMS relative error of ‖H‖₁,₁ (%)")
        ax.set_title(f"{name} (d = {int(part['d'].iloc[0])})")
        ax.axhline(2, color="grey", lw=0.5)
        ax.grid(True, which="both", lw=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="bench", choices=["test", "bench"])
    parser.add_argument("--workloads", nargs="+", default=["mlp", "cnn", "gpt"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--column-chunk", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=Path("bench/results/tmp"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in args.workloads:
        print(f"{name} ({args.size}):", flush=True)
        runs.extend(run_workload(name, args))
        frame = pd.DataFrame(runs)  # written after every workload: partial results survive
        frame.to_csv(args.out / f"l11_budget_runs_{args.size}.csv", index=False)
        summary = summarize(frame)
        summary.to_csv(args.out / f"l11_budget_{args.size}.csv", index=False)
        plot(summary, args.out / f"l11_budget_{args.size}.png")
    print_table(summary)


if __name__ == "__main__":
    main()
