"""H∞ = ‖H‖∞→1: HVPs and seconds to a 1.15 bracket, against today's sign ascent + ‖H‖₁,₁.

For each workload and basis, ``hinf_bracket`` (rank-4 Burer–Monteiro + dual certificate with a
Lanczos/Kuczyński–Woźniakowski eigenvalue bound at δ = 1e-6 + rounding/sign-ascent lower bound)
runs at each HVP budget in ``--budgets``; the table reports its bracket [lower, upper] and
upper/lower, and the first budget at which upper/lower ≤ 1.15 ("to 1.15").

The baseline at the same budget is today's bracket: the certified sign-ascent lower bound with
all of the budget spent on random restarts (30 steps each at most), and ‖H‖₁,₁ as the upper end
(exact at test size, from the dense Hessian; at bench size the library's default two-phase
estimate at 256 HVPs, a statistical estimate, not a bound, added to the baseline's HVPs).

Workloads (``smoothprobe.examples``):

- ``--size test`` (d ≈ 2–3k): the dense float64 Hessian (built once with d exact HVPs) wrapped
  in a ``DenseOperator``; the Hadamard basis is applied matrix-free (``RotatedOperator``); the
  table also lists d·L₂ and the exact ‖H‖₁,₁ of the rotated matrix.
- ``--size bench``: the GPT at bench size is the demo's 28,544-parameter model (same config);
  products are exact HVPs of the model (double backward, float32, one thread), nothing dense.

Usage::

    python bench/hinf.py                                   # test size, mlp cnn gpt, both bases
    python bench/hinf.py --size bench --workloads gpt --budgets 1024 2048
    python bench/hinf.py --json bench/results/hinf_test.json --cache-dir /tmp/hinf
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from smoothprobe.bases import build_basis
from smoothprobe.estimators.hinf_bracket import hinf_bracket
from smoothprobe.estimators.sign_ascent import sign_ascent
from smoothprobe.examples import build_example, exact_hessian
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.rotated_operator import RotatedOperator

TARGET = 1.15


def _rotated_dense(h: torch.Tensor, basis) -> torch.Tensor:
    return basis.from_params(basis.from_params(h).T.contiguous()).T.contiguous()


def _dense_hessian(name: str, cache_dir: str | None) -> torch.Tensor:
    """The test-size dense Hessian, symmetrised; cached as ``H_<name>.pt`` under ``cache_dir``."""
    path = Path(cache_dir) / f"H_{name}.pt" if cache_dir else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    h = exact_hessian(name)
    h = (h + h.T) / 2
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(h, path)
    return h


def _workload(name: str, size: str, basis_spec: str, cache_dir: str | None) -> tuple[object, dict]:
    """(operator factory, facts) for one workload in one basis."""
    if size == "test":
        h = _dense_hessian(name, cache_dir)
        layout_d = h.shape[0]
        problem = build_example(name, size=size)
        basis = build_basis(basis_spec, problem.layout, seed=0)
        dense = h if basis_spec == "identity" else _rotated_dense(h, basis)
        facts = {
            "d": layout_d,
            "d_l2": layout_d * float(torch.linalg.eigvalsh(h).abs().max()),
            "l11": float(dense.abs().sum()),
            "l11_kind": "exact",
        }

        def make():
            op = DenseOperator(h, layout=problem.layout)
            return op if basis_spec == "identity" else RotatedOperator(op, basis)

        return make, facts
    problem = build_example(name, size=size, dtype=torch.float32)
    basis = build_basis(basis_spec, problem.layout, seed=0)

    def make():
        op = problem.hvp_operator()
        return op if basis_spec == "identity" else RotatedOperator(op, basis)

    from smoothprobe.estimators.l11 import run_l11

    t0 = time.perf_counter()
    l11 = run_l11(make(), hvps=256, generator=0).estimate
    facts = {
        "d": problem.d,
        "d_l2": None,
        "l11": l11.value,
        "l11_kind": f"two-phase estimate, 95% CI [{l11.ci_low:.4g}, {l11.ci_high:.4g}]",
        "l11_hvps": l11.hvps,
        "l11_seconds": time.perf_counter() - t0,
    }
    return make, facts


def _baseline(make, budget: int, facts: dict) -> dict:
    """Today's bracket at ``budget`` HVPs: sign ascent (all restarts) and ‖H‖₁,₁."""
    spend = budget - facts.get("l11_hvps", 0)
    op = make()
    t0 = time.perf_counter()
    sa = sign_ascent(op, restarts=max(1, (spend - 1) // 30), max_iters=30, generator=0)
    return {
        "sa_lower": sa.value,
        "sa_hvps": sa.hvps + facts.get("l11_hvps", 0),
        "sa_seconds": time.perf_counter() - t0 + facts.get("l11_seconds", 0.0),
        "today_ratio": facts["l11"] / sa.value,
    }


def run(
    size: str, workloads: list[str], bases: list[str], budgets: list[int], cache_dir: str | None
) -> list[dict]:
    rows = []
    for name in workloads:
        for basis_spec in bases:
            make, facts = _workload(name, size, basis_spec, cache_dir)
            reached = None
            for budget in budgets:
                op = make()
                t0 = time.perf_counter()
                b = hinf_bracket(op, max_hvps=budget, generator=0)
                seconds = time.perf_counter() - t0
                row = {
                    "workload": name,
                    "size": size,
                    "basis": basis_spec,
                    "budget": budget,
                    **facts,
                    "lower": b.lower,
                    "upper": b.upper,
                    "ratio": b.ratio,
                    "bm_value": b.bm_value,
                    "hvps": b.hvps,
                    "phase_hvps": b.phase_hvps,
                    "lanczos_steps": b.eigen.steps,
                    "seconds": seconds,
                    "failure_prob": b.failure_prob,
                    **_baseline(make, budget, facts),
                }
                row["l11_over_upper"] = facts["l11"] / b.upper
                if reached is None and b.ratio <= TARGET:
                    reached = (b.hvps, seconds)
                row["to_target_hvps"], row["to_target_seconds"] = reached or (None, None)
                rows.append(row)
                print(
                    f"{name:4s} {basis_spec:9s} d={facts['d']:6d} budget={budget:5d} "
                    f"bracket=[{b.lower:.5g}, {b.upper:.5g}] ratio={b.ratio:.3f} "
                    f"(BM {b.bm_value:.5g}, {b.hvps} HVPs, {seconds:.1f}s) | today "
                    f"[{row['sa_lower']:.5g}, {facts['l11']:.5g}] ratio={row['today_ratio']:.2f}"
                    f" | l11/upper={row['l11_over_upper']:.2f}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("test", "bench"), default="test")
    parser.add_argument("--workloads", nargs="+", default=None)
    parser.add_argument("--bases", nargs="+", default=["identity", "hadamard"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[512, 768, 1024, 1536, 2048])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument("--cache-dir", help="keep the test-size dense Hessians here (H_<name>.pt)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workloads = args.workloads or (["mlp", "cnn", "gpt"] if args.size == "test" else ["gpt"])
    rows = run(args.size, workloads, args.bases, sorted(args.budgets), args.cache_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
