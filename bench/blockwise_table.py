"""H(Φ) of a small example model for the Adam family's partitions, in the identity and Hadamard
bases, as a Markdown table (issue 5's README table).

Usage:
    python bench/blockwise_table.py                       # tiny GPT (d = 2,676), seed 0
    python bench/blockwise_table.py --example mlp --bases identity hadamard block-haar:64
    python bench/blockwise_table.py --hessian-cache /tmp/gpt_h.pt   # reuse the dense Hessian

The dense Hessian (d HVPs by double backward) is built once; every bound then runs on it exactly:
U(Φ) with every block norm exact (a certified upper bound), the certified lower bound by
alternating ascent, L₂ by ``eigvalsh``; ρ(Φ) = H(Φ)/(d·L₂) is bracketed by [lower, U]/(d·L₂).
In a mixing basis (Hadamard) the partitions label the same flat positions of the rotated
coordinates (see smoothprobe/rotated_operator.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from smoothprobe.bases import build_basis
from smoothprobe.examples import build_example, gpt_config
from smoothprobe.linear_operator import DenseOperator, dense_matrix
from smoothprobe.partitions import build_partition
from smoothprobe.rotated_operator import RotatedOperator
from smoothprobe.suites.blockwise import measure_blockwise

OPTIMIZER = {
    "singleton": "Adam",
    "row": "Adam-mini (neuron)",
    "head": "Adam-mini (head)",
    "tensor": "per tensor",
    "layer": "Adalayer",
    "one": "AdaSGD",
}


def dense_hessian(example: str, size: str, seed: int, cache: Path | None):
    """The example Problem and its exact dense Hessian (float64), cached on disk if asked."""
    problem = build_example(example, size=size, seed=seed)
    if cache is not None and cache.exists():
        return problem, torch.load(cache, weights_only=True)
    h = dense_matrix(problem.hvp_operator(), chunk=128)
    h = (h + h.T) / 2  # exact up to rounding; symmetrize the last ulp
    if cache is not None:
        torch.save(h, cache)
    return problem, h


def rows_for(
    h: torch.Tensor, layout, *, basis_spec: str, seed: int, specs, n_head, restarts, iterations, l2
) -> list[dict]:
    d = h.shape[0]
    base = DenseOperator(h, layout=layout)
    basis = build_basis(basis_spec, layout, seed=seed)
    hr = h if basis_spec == "identity" else dense_matrix(RotatedOperator(base, basis))
    op = DenseOperator(hr, layout=layout)
    rows = []
    for spec in specs:
        part = build_partition(spec, layout, n_head=n_head)
        upper, lower, _ = measure_blockwise(
            op, part, restarts=restarts, iterations=iterations, upper_method="exact", l2_norm=l2
        ).estimates()
        rows.append(
            {
                "basis": basis.name,
                "partition": spec,
                "optimizer": OPTIMIZER[spec],
                "blocks": part.num_blocks,
                "lower": lower.value,
                "upper": upper.value,
                "rho_low": lower.value / (d * l2),
                "rho_up": min(upper.value, d * l2) / (d * l2),  # H(Φ) ≤ d·L₂ always
                "l11": float(hr.abs().sum()),
            }
        )
    return rows


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.4g}"


def markdown(rows: list[dict]) -> str:
    head = (
        "| basis | Φ | optimizer | blocks | H(Φ) ≥ (certified) | U(Φ) ≥ H(Φ) (certified) "
        "| ρ(Φ) ∈ |\n|---|---|---|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['basis']} | {r['partition']} | {r['optimizer']} | {r['blocks']:,} | "
            f"{_num(r['lower'])} | {_num(r['upper'])} | "
            f"[{r['rho_low']:.3f}, {r['rho_up']:.3f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="gpt", choices=["gpt", "mlp", "cnn"])
    ap.add_argument("--size", default="test", choices=["test", "bench"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bases", nargs="+", default=["identity", "hadamard"])
    ap.add_argument("--restarts", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--hessian-cache", type=Path, default=None)
    args = ap.parse_args()

    start = time.perf_counter()
    problem, h = dense_hessian(args.example, args.size, args.seed, args.hessian_cache)
    built = time.perf_counter() - start
    d = problem.d
    l2 = float(torch.linalg.eigvalsh(h).abs().max())
    n_head = gpt_config(args.size).n_head if args.example == "gpt" else None
    specs = ["singleton", "row"] + (["head"] if n_head else []) + ["tensor", "layer", "one"]
    rows = []
    for b in args.bases:
        rows += rows_for(
            h,
            problem.layout,
            basis_spec=b,
            seed=args.seed,
            specs=specs,
            n_head=n_head,
            restarts=args.restarts,
            iterations=args.iterations,
            l2=l2,
        )
    print(
        f"**{args.example} ({args.size}), d = {d:,}**: L₂ = ‖H‖₂ = {l2:.6g}, "
        f"d·L₂ = {d * l2:,.6g}; ‖H‖₁,₁ = {float(h.abs().sum()):,.6g} (identity)"
        + "".join(
            f", {r['l11']:,.6g} ({r['basis']})"
            for r in rows
            if r["partition"] == "singleton" and r["basis"] != "identity"
        )
        + ".\n"
    )
    print(markdown(rows))
    print(
        f"\nρ(Φ) = H(Φ)/(d·L₂), bracketed by [certified lower, min(U(Φ), d·L₂)]/(d·L₂) "
        f"(H(Φ) ≤ d·L₂ for every Φ); L₂ by eigvalsh of the exact dense Hessian (float64). "
        f"Dense Hessian {built:.0f} s, total {time.perf_counter() - start:.0f} s "
        f"(seed {args.seed})."
    )


if __name__ == "__main__":
    main()
