"""One training run: a model from its seeded initialisation, one optimizer, one learning rate.

θ = R φ with R the training basis (identity or a seeded randomized Hadamard): the optimizer
sees φ and the gradient Rᵀ∇L(θ), so Adam's coordinates are rotated while SGD's iterates θ_t are
unchanged up to rounding. Every run records the training loss (fixed sample, exact) every
``eval_every`` steps and keeps θ at the checkpoint steps (start, middle, end).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from smoothprobe.batches import Batch
from smoothprobe.errors import SmoothprobeError
from smoothprobe.reproduce.cache import Cache, content_key
from smoothprobe.reproduce.optimizers import BETAS, EPS, MOMENTUM, OptimizerSpec, make_optimizer
from smoothprobe.reproduce.tasks import Task

RUN_VERSION = 1
BASIS_SEED = 0  # seed of the randomized Hadamard basis (the same R for training and measuring)
DIVERGED_FACTOR = 10.0  # a loss above 10× the initial loss (or non-finite) stops the run


@dataclass(frozen=True)
class RunConfig:
    """What one run depends on besides the task and optimizer."""

    lr: float
    seed: int
    steps: int
    eval_every: int

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """Steps whose θ is kept: start, middle, end."""
        return (0, self.steps // 2, self.steps)

    @property
    def eval_steps(self) -> list[int]:
        steps = list(range(0, self.steps + 1, self.eval_every))
        return steps if steps[-1] == self.steps else [*steps, self.steps]


def run_key(task: Task, spec: OptimizerSpec, config: RunConfig) -> str:
    """The content hash of one run."""
    return content_key(
        {
            "version": RUN_VERSION,
            "task": task.key,
            "optimizer": asdict(spec),
            "config": asdict(config),
            "betas": BETAS,
            "eps": EPS,
            "momentum": MOMENTUM,
            "basis_seed": BASIS_SEED,
        }
    )


def training_problem(task: Task, model, *, dtype: torch.dtype):
    """The training-loss Problem (fixed sample) of ``model``."""
    from smoothprobe.problem import problem_from_module

    return problem_from_module(
        model, task.loss_fn, (task.loss_x, task.loss_y), batch_size=task.eval_batch, dtype=dtype
    )


def training_basis(name: str, layout):
    """None for ``identity``, else the seeded basis (the same R every run and measurement uses)."""
    if name == "identity":
        return None
    from smoothprobe.bases import build_basis

    return build_basis(name, layout, seed=BASIS_SEED)


def block_labels(spec: OptimizerSpec, task: Task, layout) -> torch.Tensor | None:
    """The block labels of a blockwise optimizer (None for Adam and SGD)."""
    if spec.kind != "block":
        return None
    from smoothprobe.partitions import build_partition

    name = task.mini_partition if spec.partition == "mini" else spec.partition
    return build_partition(name, layout, n_head=task.n_head).labels


def _batch(task: Task, seed: int, step: int, dtype: torch.dtype) -> Batch:
    x, y = task.next_batch(seed, step)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        x = x.to(dtype)
    return Batch(x, y, float(len(y)))


def train(
    task: Task, spec: OptimizerSpec, config: RunConfig, *, dtype: torch.dtype = torch.float32
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Trains one run (no cache).

    Returns:
        (summary, checkpoints): the JSON-ready summary (losses at ``eval_steps``, final loss,
        diverged flag, seconds) and θ at the checkpoint steps (``"step_N"`` → flat float64).
    """
    t0 = time.perf_counter()
    problem = training_problem(task, task.make_model(config.seed), dtype=dtype)
    basis = training_basis(spec.basis, problem.layout)
    theta = problem.theta.clone()
    phi = (theta if basis is None else basis.from_params(theta)).clone().requires_grad_(True)
    opt = make_optimizer(spec, phi, lr=config.lr, labels=block_labels(spec, task, problem.layout))
    eval_steps, losses, keep = set(config.eval_steps), [], {}
    initial, diverged = None, False
    for step in range(config.steps + 1):
        with torch.no_grad():
            theta = phi.detach() if basis is None else basis.to_params(phi.detach())
        if step in config.checkpoints:
            keep[f"step_{step}"] = theta.detach().to(torch.float64).clone()
        if step in eval_steps:
            try:
                loss = problem.loss(theta)
            except SmoothprobeError:
                loss = math.inf
            initial = loss if initial is None else initial
            losses.append(loss)
            if not math.isfinite(loss) or loss > DIVERGED_FACTOR * initial:
                diverged = True
                break
        if step == config.steps:
            break
        leaf = theta.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(
            problem.batch_loss(leaf, _batch(task, config.seed, step, dtype)), leaf
        )
        phi.grad = grad if basis is None else basis.from_params(grad).to(phi.dtype)
        opt.step()
    losses += [math.inf] * (len(config.eval_steps) - len(losses))
    summary = {
        "model": task.name,
        "optimizer": spec.name,
        "label": spec.label,
        "basis": spec.basis,
        "partition": spec.partition,
        "lr": config.lr,
        "seed": config.seed,
        "steps": config.steps,
        "eval_steps": config.eval_steps,
        "loss": [x if math.isfinite(x) else None for x in losses],
        "final_loss": losses[-1] if math.isfinite(losses[-1]) else None,
        "diverged": diverged,
        "d": problem.d,
        "seconds": time.perf_counter() - t0,
    }
    return summary, keep


def cached_run(
    cache: Cache, task: Task, spec: OptimizerSpec, config: RunConfig
) -> tuple[dict[str, Any], bool]:
    """The run's summary from the cache, or trained and cached now.

    Returns:
        (summary with ``key``, whether it came from the cache).
    """
    key = run_key(task, spec, config)
    found = cache.load("runs", key)
    if found is not None and cache.load_tensors("runs", key) is not None:
        return found, True
    summary, keep = train(task, spec, config)
    summary["key"] = key
    cache.save_tensors("runs", key, keep)
    cache.save("runs", key, summary)
    return summary, False
