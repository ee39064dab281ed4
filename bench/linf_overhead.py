"""The ℓ∞ suite's own work per HVP: what a GPU run waits for on the host.

On a GPU an HVP of GPT-2-small takes ~0.25 s, so whatever the ℓ∞ estimators do per probe on the
host (drawing probes, casting, accumulating) decides the phase's speed. This runs
``measure_linf`` at its defaults (256-HVP (1,1)-norm estimate, 8 sign-ascent restarts, blocks of
8) on an operator whose product costs almost nothing, H = diag(a) + u·uᵀ, so the seconds per
HVP are the estimators' own. The Cauchy sampler is measured both ways, alternating, medians:
``cauchy_`` (torch's, serial) against the package's (serial uniform draw, parallel tangent).

    python bench/linf_overhead.py --d 4e6 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from smoothprobe.estimators import cauchy as cauchy_module
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


def one_run(d: int, sampler) -> dict:
    """Seconds and HVPs of one ℓ∞ measurement with this Cauchy sampler."""
    cauchy_module.cauchy = sampler
    op = CheapOperator(d)
    t0 = time.perf_counter()
    measure_linf(op, chunk_size=8, memory_limit=8 * d * 256 + 1)  # the exact quantile path
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "hvps": op.cost.hvps, "ms_per_hvp": 1e3 * seconds / op.cost.hvps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=float, default=4e6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    d = int(args.d)
    runs: dict[str, list[dict]] = {name: [] for name in SAMPLERS}
    for _ in range(args.rounds):  # A, B, A, B, ...
        for name, sampler in SAMPLERS.items():
            runs[name].append(one_run(d, sampler))
            print(name, json.dumps(runs[name][-1]), flush=True)
    medians = {n: statistics.median(r["ms_per_hvp"] for r in rs) for n, rs in runs.items()}
    row = {
        "bench": "linf_overhead",
        "d": d,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "median_ms_per_hvp": medians,
        "ratio": medians["cauchy_"] / medians["uniform+tan"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
