"""Cost of one exact HVP per probe, relative to one gradient, in the same process.

For each example model (bench size, float32 by default) and block size k, times
``HessianOperator.matvec`` on k probes and a plain full-sample gradient, alternating the two,
and prints median(HVP time / k) / median(gradient time). Also compares retained gradient graphs
(all batches kept alive) with rebuilding them at every call, for a Lanczos-like sequence of
single-probe products.

Usage:
    python bench/hvp_cost.py [--reps 7] [--dtype float32] [--threads 2]

Run it on a quiet machine: another busy process distorts every ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from smoothprobe.examples import build_example


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="bench", choices=["test", "bench"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.dtype}, medians of "
        f"{args.reps} alternating repeats"
    )
    print(f"{'model':<6} {'d':>7} {'k':>4} {'HVP/probe ÷ gradient':>22}")
    for name in ("mlp", "cnn", "gpt"):
        problem = build_example(name, size=args.size, dtype=dtype)
        op = problem.hvp_operator(retain_graphs=True)
        gen = torch.Generator().manual_seed(0)
        for k in (1, 8, 32):
            V = torch.randn(k, problem.d, generator=gen, dtype=dtype)
            op.matvec(V)  # warm-up
            problem.gradient()
            ratios = []
            for _ in range(args.reps):
                g = timed(problem.gradient)
                h = timed(lambda: op.matvec(V)) / k  # noqa: B023
                ratios.append(h / g)
            print(f"{name:<6} {problem.d:>7,} {k:>4} {statistics.median(ratios):>22.2f}")
        # retained graphs vs rebuilt graphs: 10 sequential single-probe products (Lanczos-like)
        v = torch.randn(problem.d, generator=gen, dtype=dtype)
        kept = problem.hvp_operator(retain_graphs=True)
        rebuilt = problem.hvp_operator(retain_graphs=False)
        ratios = []
        for _ in range(args.reps):
            a = timed(lambda: [kept.matvec(v) for _ in range(10)])  # noqa: B023
            b = timed(lambda: [rebuilt.matvec(v) for _ in range(10)])  # noqa: B023
            ratios.append(b / a)
        print(
            f"{name:<6} {problem.d:>7,}    rebuilt ÷ retained graphs (10 single HVPs): "
            f"{statistics.median(ratios):.2f}; graph memory {kept.graph_bytes / 2**20:.1f} MiB "
            f"per batch × {len(problem.batches)} batches"
        )


if __name__ == "__main__":
    main()
