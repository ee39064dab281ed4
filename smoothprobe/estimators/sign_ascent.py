"""Certified lower bound on H∞ = ‖H‖∞→1 = max_{u,v∈{±1}^d} uᵀHv by alternating sign ascent.

For symmetric H and any x with ‖x‖∞ ≤ 1, ‖Hx‖₁ = sign(Hx)ᵀ(Hx) ≤ H∞, so every exact HVP of a
vector in the ∞-ball certifies a lower bound. Sign ascent iterates u ← sign(Hu) (the best v for a
given u is sign(Hu), and by symmetry the best u for that v is sign(Hv)); the value ‖Hu_t‖₁ never
decreases, and a restart stops when it stops increasing (a fixed point or a 2-cycle) or after
``max_iters`` steps. Restarts (random signs, plus optional caller-given starts such as unit
vectors e_j of the largest rows) run as one (R, d) block through ``matvec``. The best pair (u, v)
is re-evaluated with one more HVP as uᵀ(Hv); the reported bound is min(vᵀ(Hu), uᵀ(Hv)), so an
operator that is symmetric only up to round-off cannot inflate it. NP-hard to maximize in
general: the bound is certified, not tight (MATH.md §2: ‖H‖₂ ≤ H∞ ≤ min(‖H‖₁,₁, d‖H‖₂)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import check_int, rademacher, resolve_generator, unit_block
from smoothprobe.linear_operator import apply_in_chunks, as_operator


@dataclass(frozen=True)
class SignAscentResult:
    """Outcome of sign ascent.

    Attributes:
        value: certified lower bound on ‖H‖∞→1 (min of the two evaluations of the best pair).
        u, v: (d,) best pair, float64: u an iterate in the ∞-ball (±1, or a unit-vector start),
            v = sign(Hu) ∈ {±1}^d.
        restart_values: best ‖Hu‖₁ reached by each restart.
        iterations: ascent steps of the longest restart.
        hvps: HVPs used (ascent plus the final check).
        asymmetry: |vᵀ(Hu) − uᵀ(Hv)| / max(|·|) for the best pair (0 when not checked).
        d: dimension.
        seconds, seed, settings: wall time, generator seed and options.
    """

    value: float
    u: torch.Tensor
    v: torch.Tensor
    restart_values: tuple[float, ...]
    iterations: int
    hvps: int
    asymmetry: float
    d: int
    seconds: float
    seed: int
    settings: dict

    def estimate(self) -> Estimate:
        """The ``"linf_lower"`` Estimate (Bound.LOWER): a certified lower bound on H∞."""
        return Estimate(
            quantity="linf_lower",
            value=self.value,
            bound=Bound.LOWER,
            hvps=self.hvps,
            seconds=self.seconds,
            seed=self.seed,
            method="sign-ascent",
            geometry="linf",
            settings=dict(self.settings),
            extra={
                "restart_values": list(self.restart_values),
                "iterations": self.iterations,
                "asymmetry": self.asymmetry,
                "d": self.d,
            },
        )

    def estimates(self) -> list[Estimate]:
        """``[self.estimate()]``."""
        return [self.estimate()]


def _signs(values: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, so the result is a vertex of the ∞-ball."""
    return torch.where(values < 0, -1.0, 1.0).to(values.dtype)


def _starting_block(
    operator,
    generator: torch.Generator,
    restarts: int,
    column_starts: torch.Tensor | None,
    starts: torch.Tensor | None,
) -> torch.Tensor:
    d = operator.d
    parts = []
    if restarts:
        parts.append(
            rademacher(
                restarts, d, generator=generator, dtype=operator.dtype, device=operator.device
            )
        )
    if column_starts is not None and column_starts.numel():
        parts.append(unit_block(column_starts.reshape(-1).long(), operator))
    if starts is not None:
        starts = starts.reshape(-1, d).to(dtype=operator.dtype, device=operator.device)
        if float(starts.abs().max()) > 1:
            raise SmoothprobeError("sign-ascent starts must lie in the ∞-ball (|entries| <= 1)")
        parts.append(starts)
    if not parts:
        raise SmoothprobeError("sign ascent needs at least one restart or start vector")
    return torch.cat(parts)


def sign_ascent(
    operator,
    *,
    restarts: int = 8,
    max_iters: int = 30,
    max_hvps: int | None = None,
    generator: torch.Generator | int | None = None,
    column_starts: torch.Tensor | None = None,
    starts: torch.Tensor | None = None,
    chunk_size: int = 32,
    check: bool = True,
) -> SignAscentResult:
    """Runs batched alternating sign ascent on max uᵀHv: a certified lower bound on H∞.

    Args:
        operator: an Operator or anything ``as_operator`` accepts.
        restarts: random ±1 starting vectors.
        max_iters: ascent steps (HVPs) per restart at most.
        max_hvps: HVP budget (None: (starts)·max_iters + 1); the ascent stops before a step
            that would exceed it (the final check's HVP is reserved).
        generator: torch.Generator or int seed (default seed 0); the global RNG is untouched.
        column_starts: optional indices j whose unit vectors e_j are extra starts (e.g. the
            largest rows: the first step certifies ‖He_j‖₁ = r_j).
        starts: optional (m, d) extra starts with entries in [−1, 1].
        chunk_size: vectors per ``matvec`` call.
        check: re-evaluate the best pair as uᵀ(Hv) with one more HVP.

    Returns:
        The result; ``value`` is a certified lower bound on ‖H‖∞→1 (given exact HVPs);
        ``.estimates()`` gives the ``"linf_lower"`` Estimate.

    Raises:
        SmoothprobeError: for invalid options, or a budget below one step of every start.

    Example:
        >>> import torch
        >>> H = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64)
        >>> sign_ascent(H, generator=0).value  # max uᵀHv = 6 at u = v = (1, −1)
        6.0
    """
    operator = as_operator(operator)
    check_int("restarts", restarts, minimum=0)
    check_int("max_iters", max_iters, minimum=1)
    check_int("chunk_size", chunk_size, minimum=1)
    generator, seed = resolve_generator(generator)
    t0 = time.perf_counter()
    hvps0 = operator.cost.hvps
    block = _starting_block(operator, generator, restarts, column_starts, starts)
    r = block.shape[0]
    budget = r * max_iters + int(check) if max_hvps is None else max_hvps
    if budget < r + int(check):
        raise SmoothprobeError(
            f"max_hvps={max_hvps} is below one step of the {r} starts"
            f"{' plus the final check' if check else ''}; raise it or use fewer restarts"
        )
    spent = 0
    best = torch.full((r,), -1.0, dtype=torch.float64)
    best_value, best_u, best_v = -1.0, block[0], block[0]
    active = torch.arange(r)
    iterations = 0
    for _ in range(max_iters):
        if spent + block.shape[0] + int(check) > budget:
            break
        spent += block.shape[0]
        images = apply_in_chunks(operator, block, chunk_size=chunk_size, dtype=None)
        values = torch.stack([row.to(torch.float64).abs().sum() for row in images]).cpu()  # by row
        iterations += 1
        top = int(values.argmax())
        if float(values[top]) > best_value:
            best_value = float(values[top])
            best_u, best_v = block[top].clone(), _signs(images[top])
        improved = values > best[active] * (1 + 1e-12)
        best[active] = torch.maximum(best[active], values)
        keep = improved.to(block.device)
        block, active = _signs(images)[keep], active[improved]
        if not active.numel():
            break
    value, asymmetry = best_value, 0.0
    if check:
        # Re-certify the best pair the other way round: xᵀ(Hv) with x the iterate (a vertex of
        # the ∞-ball, or a unit-vector start) and v = sign(Hx); equal to vᵀ(Hx) for symmetric H.
        backward = float(best_u.to(torch.float64) @ operator.matvec(best_v).to(torch.float64))
        asymmetry = abs(best_value - backward) / max(abs(best_value), abs(backward), 1e-300)
        value = min(best_value, backward)
    return SignAscentResult(
        value,
        best_u.to(torch.float64).cpu(),
        best_v.to(torch.float64).cpu(),
        tuple(float(x) for x in best),
        iterations,
        operator.cost.hvps - hvps0,
        asymmetry,
        operator.d,
        time.perf_counter() - t0,
        seed,
        {
            "restarts": restarts,
            "max_iters": max_iters,
            "max_hvps": max_hvps,
            "column_starts": 0 if column_starts is None else int(column_starts.numel()),
            "chunk_size": chunk_size,
        },
    )
