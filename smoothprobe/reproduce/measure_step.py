"""Measures one checkpoint of a run with the library's suites, in one basis; cached by content.

Per point: L₂ (``measure_l2``), the ℓ∞ suite (``measure_linf``: ‖H‖₁,₁ with its interval — the seed
paper's surrogate — a certified lower bound on H∞, and ``hinf_lower``/``hinf_upper`` when the
suite provides them), H(Φ) per partition (``measure_blockwise``: certified lower bound and U(Φ)),
and the gradient noise at the training batch size (``gradient_noise``). No estimator is
re-implemented here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from smoothprobe.reproduce.cache import Cache, content_key
from smoothprobe.reproduce.runs import BASIS_SEED, training_basis, training_problem
from smoothprobe.reproduce.tasks import Task

MEASURE_VERSION = 1


@dataclass(frozen=True)
class MeasureBudget:
    """HVP budgets of one measurement point."""

    lanczos_tol: float = 1e-5
    lanczos_hvps: int = 120
    l11_hvps: int = 192
    ascent_restarts: int = 4
    ascent_iters: int = 20
    max_row_hvps: int = 16
    block_restarts: int = 4
    block_iters: int = 30
    block_upper_hvps: int = 400
    noise: bool = True
    hinf_hvps: int = 0  # H∞ bracket of the ℓ∞ suite (0: off; its default is 2048)


QUICK_BUDGET = MeasureBudget(
    lanczos_tol=1e-3,
    lanczos_hvps=24,
    l11_hvps=16,
    ascent_restarts=2,
    ascent_iters=4,
    max_row_hvps=4,
    block_restarts=2,
    block_iters=4,
    block_upper_hvps=40,
)


def _budget_key(budget: MeasureBudget) -> dict:
    """The budget as hashed (an unused H∞ bracket leaves the keys of earlier entries valid)."""
    out = asdict(budget)
    if not out["hinf_hvps"]:
        del out["hinf_hvps"]
    return out


@dataclass(frozen=True)
class MeasurePoint:
    """Which θ and how: run key, step, basis and partitions."""

    run_key: str
    optimizer: str
    step: int
    basis: str
    partitions: tuple[str, ...]

    def key(self, task: Task, budget: MeasureBudget) -> str:
        return content_key(
            {
                "version": MEASURE_VERSION,
                "task": task.key,
                "point": {k: v for k, v in asdict(self).items() if k != "optimizer"},
                "budget": _budget_key(budget),
                "basis_seed": BASIS_SEED,
            }
        )


def measure_point(
    task: Task, theta: torch.Tensor, point: MeasurePoint, budget: MeasureBudget, *, seed: int = 0
) -> list[dict[str, Any]]:
    """Records (``smoothprobe.records`` format) of one point; ``extra`` names the run and step."""
    from smoothprobe.estimate import Bound, Estimate
    from smoothprobe.estimators.noise import gradient_noise
    from smoothprobe.partitions import build_partition
    from smoothprobe.records import RunContext, make_record
    from smoothprobe.rotated_operator import RotatedOperator
    from smoothprobe.suites.blockwise import measure_blockwise
    from smoothprobe.suites.l2 import measure_l2
    from smoothprobe.suites.linf import measure_linf

    t0 = time.perf_counter()
    problem = training_problem(task, task.make_model(0), dtype=torch.float64)
    problem.theta = theta.to(torch.float64).clone()
    basis = training_basis(point.basis, problem.layout)
    base = problem.hvp_operator()
    operator = base if basis is None else RotatedOperator(base, basis)
    gen = torch.Generator().manual_seed(seed)
    estimates = [Estimate("loss", problem.loss(), Bound.EXACT, seed=seed)]
    l2 = measure_l2(
        operator, tol=budget.lanczos_tol, max_hvps=budget.lanczos_hvps, generator=gen
    ).estimates()
    estimates += l2
    l2_norm = next(e for e in l2 if e.quantity == "l2_norm")
    linf = measure_linf(
        operator,
        max_hvps=budget.l11_hvps,
        restarts=budget.ascent_restarts,
        ascent_iters=budget.ascent_iters,
        max_row_hvps=budget.max_row_hvps,
        hinf_hvps=budget.hinf_hvps,
        generator=gen,
        l2_norm=abs(float(l2_norm.value)),
    )
    estimates += linf.estimates()
    blockwise = []
    for spec in point.partitions:
        name = task.mini_partition if spec == "mini" else spec
        partition = build_partition(name, problem.layout, n_head=task.n_head)
        found = measure_blockwise(
            operator,
            partition,
            max_hvps=budget.block_restarts * budget.block_iters + budget.block_upper_hvps,
            restarts=budget.block_restarts,
            iterations=budget.block_iters,
            generator=gen,
            l2_norm=l2_norm,
        ).estimates()
        blockwise += [(spec, e) for e in found]
    if budget.noise:
        noise = gradient_noise(problem, batch_size=task.batch_size, generator=gen, basis=basis)
        estimates += noise.estimates()
    context = RunContext(
        checkpoint=f"{task.name}/{point.optimizer}/step{point.step}",
        d=problem.d,
        step=point.step,
        dtype="float64",
        basis=point.basis if basis is None else basis.name,
        num_examples=int(problem.num_examples),
        batch_size=task.batch_size,
        extra={
            "model": task.name,
            "trajectory": point.optimizer,
            "run_key": point.run_key,
            "measure_basis": point.basis,
            "measure_seconds": time.perf_counter() - t0,
        },
    )
    records = [make_record(e, context) for e in estimates]
    records += [make_record(e, context, partition=spec) for spec, e in blockwise]
    return records


def cached_point(
    cache: Cache,
    task: Task,
    point: MeasurePoint,
    budget: MeasureBudget,
    theta: torch.Tensor,
) -> tuple[list[dict[str, Any]], bool]:
    """The point's records from the cache, or measured and cached now (second item: cached)."""
    key = point.key(task, budget)
    found = cache.load("measure", key)
    if found is not None:  # the start point is shared by every trajectory: relabel it
        for record in found:
            record["extra"] = {**record["extra"], "trajectory": point.optimizer}
            record["checkpoint"] = f"{task.name}/{point.optimizer}/step{point.step}"
        return found, True
    records = measure_point(task, theta, point, budget)
    cache.save("measure", key, records)
    return records, False
