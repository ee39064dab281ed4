"""The ℓ∞ suite's own work per probe: what a GPU run waits for on the host.

On a GPU an HVP of GPT-2-small takes ~0.25 s, so whatever the ℓ∞ estimators do per probe on the
host decides the phase's speed. Two measurements:

- drawing a block of k Cauchy probes of d entries on the host in float32, seconds per probe,
  both ways alternating, medians: before (``Tensor.cauchy_``, one thread, into a fresh float64
  block, then cast) and now (``sampling.cauchy_into``: serial uniform draw, tangent on every
  thread, row by row into the block the sketch keeps);
- ``measure_linf`` at its defaults (256-HVP (1,1)-norm estimate, 8 sign-ascent restarts, blocks
  of 8) on an operator whose product costs almost nothing, H = diag(a) + u·uᵀ: its seconds per
  HVP are the estimators' own (all on the host here).

    python bench/linf_overhead.py                  # d = 124,475,904 (GPT-2-small)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from smoothprobe.estimators import sampling
from smoothprobe.layout import ParameterLayout
from smoothprobe.linear_operator import CostCounter
from smoothprobe.suites.linf import measure_linf

RESULTS = Path(__file__).parent / "results" / "linf_overhead.jsonl"


class CheapOperator:
    """H = diag(a) + u·uᵀ in float32: an O(k·d) product."""

    def __init__(self, d: int):
        gen = torch.Generator().manual_seed(0)
        self.a = torch.randn(d, generator=gen)
        self.u = torch.randn(d, generator=gen) / d**0.5
        self.d, self.dtype, self.device = d, torch.float32, torch.device("cpu")
        self.layout = ParameterLayout.from_shapes([("theta", (d,))])
        self.cost = CostCounter()

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        single = vectors.ndim == 1
        block = vectors.reshape(1, -1) if single else vectors
        self.cost.hvps += block.shape[0]
        out = block * self.a + (block @ self.u)[:, None] * self.u
        return out.reshape(-1) if single else out


def before(block: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """How probes were drawn before: ``Tensor.cauchy_`` (one thread) into a fresh float64
    block, then cast to a fresh compute-dtype block."""
    fresh = torch.empty(block.shape, dtype=torch.float64).cauchy_(generator=generator)
    return fresh.to(block.dtype)


def now(block: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """How they are drawn now: ``sampling.cauchy_into`` the block the sketch keeps."""
    return sampling.cauchy_into(block, generator=generator)


SAMPLERS = {"cauchy_ fresh": before, "cauchy_into kept": now}


def suite_run(d: int) -> dict:
    """Seconds and HVPs of one ℓ∞ measurement on ``CheapOperator(d)``."""
    op = CheapOperator(d)
    t0 = time.perf_counter()
    measure_linf(op, chunk_size=8, memory_limit=8 * d * 256 + 1)  # the exact quantile path
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "hvps": op.cost.hvps, "ms_per_hvp": 1e3 * seconds / op.cost.hvps}


def draw_seconds(sampler, block: torch.Tensor, generator: torch.Generator) -> float:
    """Seconds to draw one block of Cauchy probes in float32."""
    t0 = time.perf_counter()
    sampler(block, generator)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=float, default=124_475_904, help="probe length (draws)")
    parser.add_argument("--suite-d", type=float, default=2e6, help="d of the ℓ∞ suite run")
    parser.add_argument("--k", type=int, default=4, help="probes per block (the CPU run's)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    d, gen = int(args.d), torch.Generator().manual_seed(0)
    block = torch.empty(args.k, d, dtype=torch.float32)
    draws: dict[str, list[float]] = {name: [] for name in SAMPLERS}
    for _ in range(args.rounds):  # A, B, A, B, ...
        for name, sampler in SAMPLERS.items():
            draws[name].append(draw_seconds(sampler, block, gen) / args.k)
    medians = {name: statistics.median(times) for name, times in draws.items()}
    suite = suite_run(int(args.suite_d))
    row = {
        "bench": "linf_overhead",
        "d": d,
        "k": args.k,
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "rounds": args.rounds,
        "draw_s_per_probe": draws,
        "median_draw_s_per_probe": medians,
        "draw_speedup": medians["cauchy_ fresh"] / medians["cauchy_into kept"],
        "suite": {"d": int(args.suite_d), **suite},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
