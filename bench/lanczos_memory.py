"""Bounded-memory Lanczos against full re-orthogonalization on the example models.

For each example (dense float64 Hessian as truth) and each basis setting, the HVPs to converge
(tol 1e-8, random start, seed 0) and the relative errors of λ_max and λ_min:

    python bench/lanczos_memory.py [mlp cnn gpt]   # appends to bench/results/lanczos_memory.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from smoothprobe.estimators.lanczos import lanczos
from smoothprobe.examples import build_example, exact_hessian

SETTINGS = [
    ("full float64 (reference)", None, torch.float64, 1e-8),
    ("full float32", None, torch.float32, 1e-6),
    ("16 rows float64", 16, torch.float64, 1e-8),
    ("8 rows float64", 8, torch.float64, 1e-8),
    ("8 rows float32", 8, torch.float32, 1e-6),
]


def main(models: list[str]) -> None:
    out = Path(__file__).parent / "results" / "lanczos_memory.csv"
    rows = []
    for name in models:
        problem = build_example(name, dtype=torch.float64)
        h = exact_hessian(name)
        eigs = torch.linalg.eigvalsh((h + h.T) / 2)
        for label, rows_kept, dtype, tol in SETTINGS:
            op = problem.hvp_operator()
            r = lanczos(op, tol=tol, max_hvps=400, generator=0, max_basis=rows_kept,
                        basis_dtype=dtype)  # fmt: skip
            rows.append({
                "model": name, "d": problem.d, "basis": label, "tol": tol, "hvps": r.hvps,
                "restarts": r.restarts, "converged": r.converged,
                "rel_err_lambda_max": abs(r.lambda_max - float(eigs[-1])) / abs(float(eigs[-1])),
                "rel_err_lambda_min": abs(r.lambda_min - float(eigs[0])) / abs(float(eigs[0])),
                "basis_bytes": r.basis_bytes,
            })  # fmt: skip
            print(rows[-1], flush=True)
            new = not out.exists()
            with out.open("a", newline="") as fh:  # row by row: a long run can be read meanwhile
                writer = csv.DictWriter(fh, fieldnames=list(rows[-1]))
                if new:
                    writer.writeheader()
                writer.writerow(rows[-1])


if __name__ == "__main__":
    main(sys.argv[1:] or ["mlp", "cnn", "gpt"])
