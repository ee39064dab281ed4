"""Certified lower bound on blockwise smoothness H(Φ) by alternating ascent (MATH.md §2, §4).

Given x, the best y is y_b = √d_b (Hx)_b/‖(Hx)_b‖₂ with value ‖Hx‖_Φ* = Σ_b √d_b ‖(Hx)_b‖₂; by
symmetry of H the next x is the same map of Hy, so x_{t+1} = N(Hx_t) and ‖Hx_t‖_Φ* never
decreases. Every reported value is yᵀHx at an explicit feasible pair (``Bound.LOWER``); see
``blockwise`` for the whole picture.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.blockwise_columns import _check
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint, resumed, saved
from smoothprobe.estimators.sampling import check_int, gaussian, resolve_generator
from smoothprobe.linear_operator import Operator, apply_in_chunks, as_operator
from smoothprobe.partitions import Partition

LOWER_LOOP = "lower"  # block_lower_bound's name in a loop checkpoint


def dual_norm(vectors: torch.Tensor, partition: Partition) -> torch.Tensor:
    """‖g‖_Φ* = Σ_b √d_b ‖g_b‖₂ for each row of (k, d) (float64, (k,))."""
    root = partition.sizes.to(device=vectors.device, dtype=torch.float64).sqrt()
    return (partition.block_norms(vectors) * root).sum(-1)


def project_to_sphere(vectors: torch.Tensor, partition: Partition) -> torch.Tensor:
    """x_b = √d_b v_b/‖v_b‖₂ per block (0 where v_b = 0): the Φ-ball point maximising ⟨v, x⟩."""
    norms = partition.block_norms(vectors)
    root = partition.sizes.to(device=vectors.device, dtype=torch.float64).sqrt()
    scale = torch.where(
        norms > 0, root / norms.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(norms)
    )
    labels = partition.labels_on(vectors.device)
    dtype = torch.promote_types(vectors.dtype, torch.float32)  # float64 stays float64
    out = vectors.to(dtype) * scale.to(dtype)[:, labels]
    single = partition.sizes.to(vectors.device)[labels] == 1
    out[:, single] = torch.sign(vectors[:, single]).to(dtype)  # exact ±1 (sign ascent)
    return out.to(vectors.dtype)


@dataclass(frozen=True, eq=False)
class BlockLowerResult:
    """Certified lower bound on H(Φ) by alternating ascent.

    Attributes:
        value: best yᵀHx found (x = ``x``, y = the Φ-sphere point of Hx); with the check, the
            smaller of yᵀ(Hx) and xᵀ(Hy).
        x: (d,) the maximising point of the Φ-ball.
        restart_values: (r,) best value of every restart.
        iterations: ascent steps taken (HVPs per restart).
        converged: every restart improved by less than ``tol`` (relative) in its last step.
        partition: partition name.
        hvps, gradients, seconds, seed: cost and seed.
        asymmetry: relative gap between the two evaluations of the best pair.
        settings: options used.
    """

    value: float
    x: torch.Tensor
    restart_values: torch.Tensor
    iterations: int
    converged: bool
    partition: str
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    asymmetry: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def estimates(self) -> list[Estimate]:
        """``[self.estimate()]``."""
        return [self.estimate()]

    def estimate(self, *, settings: dict | None = None) -> Estimate:
        """The ``block_lower`` Estimate (Bound.LOWER)."""
        r = self.restart_values
        extra = {
            "iterations": self.iterations,
            "converged": self.converged,
            "restarts": r.numel(),
            "restart_median": float(r.median()),
            "asymmetry": self.asymmetry,
        }
        if r.numel() <= 64:
            extra["restart_values"] = r.tolist()
        return Estimate(
            quantity="block_lower",
            value=self.value,
            bound=Bound.LOWER,
            hvps=self.hvps,
            gradients=self.gradients,
            seconds=self.seconds,
            seed=self.seed,
            method="alternating-ascent",
            geometry="block",
            settings={"partition": self.partition, **self.settings, **(settings or {})},
            extra=extra,
        )


def block_lower_bound(
    operator: Operator,
    partition: Partition,
    *,
    restarts: int = 8,
    iterations: int = 100,
    tol: float = 1e-7,
    max_hvps: int | None = None,
    init: torch.Tensor | None = None,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 64,
    check: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    checkpoint: LoopCheckpoint | None = None,
) -> BlockLowerResult:
    """Certified lower bound on H(Φ) by alternating ascent, restarts batched.

    Args:
        operator: H.
        partition: Φ.
        restarts: random starting points (Gaussian, projected to the Φ-sphere).
        iterations: maximum ascent steps (one HVP per restart each).
        tol: stop when no restart improves by more than ``tol`` relative.
        max_hvps: HVP budget (None: starts × iterations + 1); the ascent stops before a step
            that would exceed it (the final check's HVP is reserved).
        init: optional extra starting vectors (k, d) or (d,), projected to the Φ-sphere.
        generator: torch.Generator or seed (None: seed 0).
        chunk_size: probes per ``matvec`` call.
        check: re-evaluate the best pair as xᵀ(Hy) with one more HVP and report the smaller.
        callback: called with (step, values (r,)) after every step.
        checkpoint: saves the ascent (iterates, best pair, values) between steps and resumes it
            (loop ``"lower"``, ``loop_checkpoint``).

    Returns:
        A BlockLowerResult (``.estimates()`` gives the ``block_lower`` Estimate).

    Raises:
        SmoothprobeError: d mismatch, no starting point, or a budget below one step.
    """
    operator = as_operator(operator)
    _check(operator, partition)
    check_int("chunk_size", chunk_size, minimum=1)
    gen, seed = resolve_generator(generator)
    start, (h0, g0) = time.perf_counter(), operator.cost.snapshot()
    starts = []
    if restarts > 0:
        starts.append(
            gaussian(
                restarts, operator.d, generator=gen, dtype=operator.dtype, device=operator.device
            )
        )
    if init is not None:
        starts.append(init.reshape(-1, operator.d).to(device=operator.device, dtype=operator.dtype))
    if not starts or sum(s.shape[0] for s in starts) == 0:
        raise SmoothprobeError("block lower bound needs restarts ≥ 1 or an init vector")
    x = project_to_sphere(torch.cat(starts), partition)
    budget = x.shape[0] * max(1, iterations) + int(check) if max_hvps is None else max_hvps
    if budget < x.shape[0] + int(check):
        raise SmoothprobeError(
            f"max_hvps={max_hvps} is below one ascent step of the {x.shape[0]} starts"
            f"{' plus the final check' if check else ''}; raise it or use fewer restarts"
        )
    best = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    top, best_x, best_hx = -math.inf, x[0].clone(), x[0].clone()
    prev, converged, steps = None, False, 0
    found = resumed(checkpoint, LOWER_LOOP)
    if found is not None and found["x"].shape != x.shape:
        found = None  # another number of starts: start over
    if found is not None:
        like = {"device": x.device, "dtype": x.dtype}
        x, best_x, best_hx = (found[k].to(**like) for k in ("x", "best_x", "best_hx"))
        best, top, prev, steps = found["best"], found["top"], found["prev"], found["steps"]
        converged = found["converged"]
        operator.cost.hvps += x.shape[0] * steps
    for step in range(steps, max(1, iterations)):
        if converged:  # resumed after the last step
            break
        if h0 + x.shape[0] * (step + 1) + int(check) > h0 + budget:
            break
        hx = apply_in_chunks(operator, x, chunk_size=chunk_size, dtype=None)
        vals = dual_norm(hx, partition).cpu()  # = yᵀHx for y = project_to_sphere(Hx)
        steps = step + 1
        best = torch.maximum(best, vals)
        j = int(torch.argmax(vals))
        if float(vals[j]) > top:
            top, best_x, best_hx = float(vals[j]), x[j].clone(), hx[j].to(x.dtype).clone()
        if callback is not None:
            callback(step, vals)
        if prev is not None and bool(((vals - prev) <= tol * vals.abs()).all()):
            converged = True
        else:
            prev = vals
            x = project_to_sphere(hx.to(operator.dtype), partition)
        last = converged or step + 1 == max(1, iterations)
        state = {
            "position": steps * x.shape[0],  # HVPs done
            "steps": steps,
            "converged": converged,
            "x": x,
            "best": best,
            "top": top,
            "prev": prev,
            "best_x": best_x,
            "best_hx": best_hx,
        }
        saved(checkpoint, LOWER_LOOP, lambda state=state: state, done=last)
        if converged:
            break
    value, asymmetry = top, 0.0
    if check:
        # Re-evaluate the best pair the other way round, xᵀ(Hy) with one more HVP, and keep the
        # smaller: an operator symmetric only up to round-off cannot inflate the bound.
        y = project_to_sphere(best_hx.reshape(1, -1), partition)
        backward = float((best_x.to(torch.float64) * operator.matvec(y)[0].to(torch.float64)).sum())
        asymmetry = abs(value - backward) / max(abs(value), abs(backward), 1e-300)
        value = min(value, backward)
    h1, g1 = operator.cost.snapshot()
    return BlockLowerResult(
        value=value,
        x=best_x.detach(),
        restart_values=best,
        iterations=steps,
        converged=converged,
        partition=partition.name,
        hvps=h1 - h0,
        gradients=g1 - g0,
        seconds=time.perf_counter() - start,
        seed=seed,
        asymmetry=asymmetry,
        settings={
            "restarts": restarts,
            "iterations": iterations,
            "tol": tol,
            "max_hvps": max_hvps,
            "check": check,
            "init": 0 if init is None else int(init.reshape(-1, operator.d).shape[0]),
        },
    )
