"""The ℓ∞ suite's own work per probe: what a GPU run waits for on the host.

On a GPU an HVP of GPT-2-small takes ~0.25 s, so whatever the ℓ∞ estimators do per probe on the
host decides the phase's speed. Two measurements:

- drawing one Cauchy probe of d entries on the host and casting it to float32, both samplers
  alternating, medians: ``cauchy_`` (torch's, one thread) against the package's
  (``sampling.cauchy``: serial uniform draw, tangent on every thread);
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


def torch_cauchy(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """The sampler before: ``Tensor.cauchy_`` (one thread)."""
    return torch.empty(shape, dtype=torch.float64).cauchy_(generator=generator)


SAMPLERS = {"cauchy_": torch_cauchy, "uniform+tan": sampling.cauchy}


def suite_run(d: int) -> dict:
    """Seconds and HVPs of one ℓ∞ measurement on ``CheapOperator(d)``."""
    op = CheapOperator(d)
    t0 = time.perf_counter()
    measure_linf(op, chunk_size=8, memory_limit=8 * d * 256 + 1)  # the exact quantile path
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "hvps": op.cost.hvps, "ms_per_hvp": 1e3 * seconds / op.cost.hvps}


def draw_seconds(sampler, d: int, generator: torch.Generator) -> float:
    """Seconds to draw one probe of d Cauchy entries and cast it to float32."""
    t0 = time.perf_counter()
    sampler(1, d, generator=generator).to(torch.float32)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=float, default=124_475_904, help="probe length (draws)")
    parser.add_argument("--suite-d", type=float, default=2e6, help="d of the ℓ∞ suite run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    d, gen = int(args.d), torch.Generator().manual_seed(0)
    draws: dict[str, list[float]] = {name: [] for name in SAMPLERS}
    for _ in range(args.rounds):  # A, B, A, B, ...
        for name, sampler in SAMPLERS.items():
            draws[name].append(draw_seconds(sampler, d, gen))
    medians = {name: statistics.median(times) for name, times in draws.items()}
    suite = suite_run(int(args.suite_d))
    row = {
        "bench": "linf_overhead",
        "d": d,
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "rounds": args.rounds,
        "draw_s_per_probe": draws,
        "median_draw_s_per_probe": medians,
        "draw_speedup": medians["cauchy_"] / medians["uniform+tan"],
        "suite": {"d": int(args.suite_d), **suite},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
