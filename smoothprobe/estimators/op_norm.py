"""H_op = max over ‖x‖_op ≤ 1, ‖y‖_op ≤ 1 of yᵀHx, the spectral (Muon) constant (MATH.md §8).

Two estimators bracket H_op in a :class:`~smoothprobe.spectral_geometry.SpectralGeometry`:

**Lower bound** ``op_lower_bound`` (certified, ``Bound.LOWER``): polar ascent, the analogue of
sign ascent. Given x, the best y is y_l = polar((Hx)_l)/s_l (sign on the ℓ∞ rest when mixed) with
value ‖Hx‖_* = Σ_l ‖(Hx)_l‖_nuc/s_l (+ ‖(Hx)_rest‖₁); by symmetry of H the next x is the same map
of Hy, so ‖Hx_t‖_* never decreases. One HVP per step and restart (restarts batched). The reported
value is yᵀ(Hx) at an explicit feasible pair, re-evaluated as xᵀ(Hy) with one more HVP, and the
smaller kept. The search is local: more restarts can only raise it.

**Upper bound** ``op_upper_bound``: with c_b ≥ ‖x_b‖₂ on the unit ball (√r_l/s_l for a matrix,
√d_b for an ℓ∞ tensor), yᵀHx = Σ y_bᵀH_bb'x_b' ≤ Σ_{b,b'} c_b c_b' ‖H_bb'‖₂. The block norms come
from the blockwise machinery (``estimators.blockwise.block_upper_bound`` on one block per tensor):
exact block columns (certified, ``Bound.UPPER``) when the budget allows, else sketched (a lower
estimate of each norm, so the sum is ``Bound.ESTIMATE``). The matrix part alone runs on the
restricted operator H_MM (no HVP spent on the rest's columns).

The other upper bound, H_op ≤ R·L₂, needs L₂'s upper end and is formed by ``suites.spectral``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.blockwise import block_upper_bound
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.linear_operator import Operator
from smoothprobe.restricted_operator import RestrictedOperator
from smoothprobe.spectral_geometry import SpectralGeometry


def _check(operator: Operator, geometry: SpectralGeometry) -> None:
    if geometry.d != operator.d:
        raise SmoothprobeError(
            f"the spectral geometry has d={geometry.d:,} but the operator has "
            f"d={operator.d:,}; build it from the operator's layout"
        )


@dataclass(frozen=True, eq=False)
class OpLowerResult:
    """Certified lower bound on H_op by polar ascent.

    Attributes:
        value: min(yᵀ(Hx), xᵀ(Hy)) at the best feasible pair found.
        x: (d,) the best point of the unit ball.
        restart_values: (r,) best ‖Hx‖_* of every restart.
        iterations: ascent steps taken.
        converged: every restart improved by less than ``tol`` (relative) in its last step.
        asymmetry: relative gap between the two evaluations of the best pair.
        geometry: the geometry's ``describe()``.
        hvps, gradients, seconds, seed: cost and seed.
        settings: options used.
    """

    value: float
    x: torch.Tensor
    restart_values: torch.Tensor
    iterations: int
    converged: bool
    asymmetry: float
    geometry: dict[str, Any]
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def estimates(self) -> list[Estimate]:
        """[``op_lower``] (``Bound.LOWER``, geometry ``spectral``)."""
        r = self.restart_values
        return [
            Estimate(
                quantity="op_lower",
                value=self.value,
                bound=Bound.LOWER,
                hvps=self.hvps,
                gradients=self.gradients,
                seconds=self.seconds,
                seed=self.seed,
                method="polar-ascent",
                geometry="spectral",
                settings={**self.geometry, **self.settings},
                extra={
                    "iterations": self.iterations,
                    "converged": self.converged,
                    "asymmetry": self.asymmetry,
                    "restart_values": r.tolist() if r.numel() <= 64 else None,
                    "restart_median": float(r.median()),
                },
            )
        ]


def op_lower_bound(
    operator: Operator,
    geometry: SpectralGeometry,
    *,
    restarts: int = 8,
    iterations: int = 100,
    tol: float = 1e-7,
    init: torch.Tensor | None = None,
    check: bool = True,
    generator: torch.Generator | int | None = 0,
) -> OpLowerResult:
    """Certified lower bound on H_op by polar ascent from several starts (one HVP per step each).

    Args:
        operator: H on all d coordinates (anything ``suites.l2.as_operator`` accepts).
        geometry: the spectral geometry (matrix part alone or mixed).
        restarts: random starts (Gaussian, mapped to the unit sphere by the maximiser).
        iterations: maximum ascent steps.
        tol: stop when no restart improves by more than ``tol`` relative.
        init: optional extra starts (k, d) or (d,).
        check: re-evaluate the best pair as xᵀ(Hy) (one more HVP) and keep the smaller.
        generator: torch.Generator or int seed.

    Returns:
        The result (``.estimates()`` gives ``op_lower``).

    Raises:
        SmoothprobeError: d mismatch, no start, bad options.
    """
    from smoothprobe.suites.l2 import as_operator

    operator = as_operator(operator)
    _check(operator, geometry)
    if restarts < 0 or iterations < 1:
        raise SmoothprobeError("op lower bound needs restarts ≥ 0 and iterations ≥ 1")
    gen, seed = resolve_generator(generator)
    t0, (h0, g0) = time.perf_counter(), operator.cost.snapshot()
    starts = [torch.randn(restarts, operator.d, generator=gen, dtype=torch.float64)]
    if init is not None:
        starts.append(init.reshape(-1, operator.d).to(torch.float64).cpu())
    z = torch.cat(starts)
    if z.shape[0] == 0:
        raise SmoothprobeError("op lower bound needs restarts ≥ 1 or an init vector")
    x, _ = geometry.maximizer(z.to(operator.device))
    best = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    top, best_x, best_y = -math.inf, x[0], x[0]
    prev, converged, steps = None, False, 0
    for step in range(iterations):
        hx = operator.matvec(x.to(operator.dtype)).to(torch.float64)
        y, vals = geometry.maximizer(hx)
        vals = vals.cpu()
        steps = step + 1
        best = torch.maximum(best, vals)
        j = int(torch.argmax(vals))
        if float(vals[j]) > top:
            top, best_x, best_y = float(vals[j]), x[j].clone(), y[j].clone()
        if prev is not None and bool(((vals - prev) <= tol * vals.abs()).all()):
            converged = True
            break
        prev, x = vals, y
    value, asymmetry = top, 0.0
    if check:
        hy = operator.matvec(best_y.reshape(1, -1).to(operator.dtype))[0].to(torch.float64)
        backward = float((best_x * hy).sum())
        asymmetry = abs(value - backward) / max(abs(value), abs(backward), 1e-300)
        value = min(value, backward)
    h1, g1 = operator.cost.snapshot()
    return OpLowerResult(
        value=value,
        x=best_x.cpu(),
        restart_values=best,
        iterations=steps,
        converged=converged,
        asymmetry=asymmetry,
        geometry=geometry.describe(),
        hvps=h1 - h0,
        gradients=g1 - g0,
        seconds=time.perf_counter() - t0,
        seed=seed,
        settings={"restarts": restarts, "iterations": iterations, "tol": tol, "check": check},
    )


@dataclass(frozen=True, eq=False)
class OpUpperResult:
    """Σ c_b c_b' ‖H_bb'‖₂ over one block per tensor.

    Attributes:
        value: the bound for the geometry asked for.
        matrix_value: the same sum over matrix pairs only (the matrix part's bound).
        certified: every block norm exact (``value`` is then a certified upper bound).
        method: the blockwise method used (``exact`` or ``sketch``).
        block_names: tensor names of the blocks.
        weights: (B,) c_b.
        norms: (B, B) ‖H_bb'‖₂ (exact, or lower estimates when sketched).
        geometry: the geometry's ``describe()``.
        hvps, gradients, seconds, seed: cost and seed.
        settings: options used.
    """

    value: float
    matrix_value: float
    certified: bool
    method: str
    block_names: tuple[str, ...]
    weights: torch.Tensor
    norms: torch.Tensor
    geometry: dict[str, Any]
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def contributions(self) -> torch.Tensor:
        """(B, B) c_b c_b' ‖H_bb'‖₂ (sums to ``value``)."""
        return self.weights[:, None] * self.norms * self.weights[None, :]

    def estimates(self) -> list[Estimate]:
        """[``op_upper``]: ``Bound.UPPER`` when every block norm is exact, else an estimate."""
        what = (
            "sum c_b c_b' ||H_bb'||_2 (c = sqrt(r)/s on matrices, sqrt(d_b) on l_inf tensors), "
            + (
                "every block exact: certified upper bound on H_op"
                if self.certified
                else "wide blocks' norms underestimated by a sketch: an estimate, not a bound"
            )
        )
        extra: dict[str, Any] = {"certified": self.certified, "what": what}
        if len(self.block_names) <= 64:
            extra["contributions"] = self.contributions().tolist()
            extra["block_names"] = list(self.block_names)
        return [
            Estimate(
                quantity="op_upper",
                value=self.value,
                bound=Bound.UPPER if self.certified else Bound.ESTIMATE,
                hvps=self.hvps,
                gradients=self.gradients,
                seconds=self.seconds,
                seed=self.seed,
                method=f"block-columns:{self.method}",
                geometry="spectral",
                settings={**self.geometry, **self.settings},
                extra=extra,
            )
        ]


def op_upper_bound(
    operator: Operator,
    geometry: SpectralGeometry,
    *,
    method: str = "auto",
    max_hvps: int | None = None,
    sketch: int = 4,
    iterations: int = 2,
    chunk_size: int = 64,
    generator: torch.Generator | int | None = 0,
) -> OpUpperResult:
    """Upper bound Σ c_b c_b' ‖H_bb'‖₂ on H_op (exact block norms when affordable).

    Args:
        operator: H on all d coordinates.
        geometry: the spectral geometry; the matrix part alone runs on H_MM only.
        method: ``auto``, ``exact`` or ``sketch`` (as ``block_upper_bound``; ``row-frobenius``
            keeps no block norms and is refused).
        max_hvps: budget for ``auto`` (None: the blockwise default).
        sketch, iterations: probes and power steps per sketched block column.
        chunk_size: probes per ``matvec``.
        generator: torch.Generator or int seed.

    Returns:
        The result (``.estimates()`` gives ``op_upper``).

    Raises:
        SmoothprobeError: d mismatch, ``row-frobenius``, or a budget too small to keep block norms.
    """
    from smoothprobe.suites.l2 import as_operator

    operator = as_operator(operator)
    _check(operator, geometry)
    if method == "row-frobenius":
        raise SmoothprobeError(
            "the spectral upper bound needs block norms: use auto, exact or sketch"
        )
    gen, seed = resolve_generator(generator)
    t0 = time.perf_counter()
    target = (
        operator
        if geometry.mixed
        else RestrictedOperator(operator, [b.name for b in geometry.blocks])
    )
    partition = geometry.tensor_partition(target.layout)
    upper = block_upper_bound(
        target,
        partition,
        method=method,
        max_hvps=max_hvps,
        sketch=sketch,
        iterations=iterations,
        generator=gen,
        chunk_size=chunk_size,
    )
    if upper.norms is None:
        raise SmoothprobeError(
            f"the HVP budget ({max_hvps}) only affords the row-Frobenius bound, which keeps no "
            "block norms; raise max_hvps or choose method='sketch'"
        )
    weights = geometry.block_weights(partition)
    norms = upper.norms.cpu()
    contrib = weights[:, None] * norms * weights[None, :]
    names = {b.name for b in geometry.blocks}
    is_matrix = torch.tensor([n in names for n in partition.block_names])
    matrix_value = float(contrib[is_matrix][:, is_matrix].sum())
    return OpUpperResult(
        value=float(contrib.sum()),
        matrix_value=matrix_value,
        certified=upper.certified,
        method=upper.method,
        block_names=tuple(str(n) for n in partition.block_names),
        weights=weights,
        norms=norms,
        geometry=geometry.describe(),
        hvps=upper.hvps,
        gradients=upper.gradients,
        seconds=time.perf_counter() - t0,
        seed=seed,
        settings={"method": upper.method, "max_hvps": max_hvps, "sketch": sketch},
    )
