"""Speed of the randomized Hadamard basis: one R x and one Rᵀ g at growing d (float32, CPU).

Usage:
    python bench/hadamard_speed.py [--sizes 100000 1000000 1048576 10000000] [--probes 1]

Prints seconds per application (best of 3) and seconds / (d·log₂ d) to show the O(d log d)
scaling; a power-of-two d needs one transform, other d three (overlapping windows). Timings are
only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from smoothprobe.bases import HadamardBasis


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 1 << 20, 10_000_000]
    )
    ap.add_argument("--probes", type=int, default=1)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.probes} probe(s)")
    print("| d | windows | R x (s) | Rᵀ g (s) | ns / (d log₂ d) | max ‖RᵀRx − x‖∞ |")
    print("|---:|---:|---:|---:|---:|---:|")
    for d in args.sizes:
        basis = HadamardBasis(d, seed=0)
        x = torch.randn(args.probes, d, generator=torch.Generator().manual_seed(0))
        fwd = best_of(lambda b=basis, v=x: b.to_params(v))
        y = basis.to_params(x)
        inv = best_of(lambda b=basis, v=y: b.from_params(v))
        err = float((basis.from_params(y) - x).abs().max())
        per = 1e9 * fwd / (args.probes * d * math.log2(d))
        print(
            f"| {d:,} | {len(basis.map.windows)} | {fwd:.3f} | {inv:.3f} | {per:.2f} | {err:.1e} |"
        )


if __name__ == "__main__":
    main()
