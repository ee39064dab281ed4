"""Extreme eigenvalues by power iteration: the baseline Lanczos is compared against.

Power iteration on H converges to the eigenvalue of largest magnitude λ_dom at the rate
|λ_2/λ_1| per HVP (Lanczos: roughly its square root). The other end of the spectrum comes from a
second run on the shifted operator H − λ_dom·I, whose dominant eigenvalue is λ_other − λ_dom.
Each iterate v gives θ = vᵀHv and the residual r = ‖Hv − θv‖ from the same HVP, so the stopping
rule (r ≤ tol·|θ|) and the error bar are those of ``lanczos``. Same interface and result type as
``lanczos``, but only ``top_k=1``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.lanczos import SpectrumResult, start_vector, validate_options
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.linear_operator import Operator


def _power_run(
    operator: Operator,
    v: torch.Tensor,
    *,
    shift: float,
    tol: float,
    max_hvps: int,
    history: dict[str, list[float]],
) -> tuple[float, float, bool]:
    """Power iteration on H − shift·I from unit v (float64).

    Returns:
        (θ = Rayleigh quotient of H at the last iterate, its residual, whether r ≤ tol·|θ|).
    """
    eps = torch.finfo(operator.dtype).eps
    theta, residual = float("nan"), float("inf")
    for _ in range(max_hvps):
        hv = operator.matvec(v.to(operator.dtype)).to(torch.float64)
        theta = float(v @ hv)
        residual = float((hv - theta * v).norm())
        history["theta"].append(theta)
        history["residual"].append(residual)
        floor = 100.0 * eps * max(abs(theta), float(hv.norm()))
        if residual <= max(tol * abs(theta), floor):
            return theta, residual, True
        w = hv - shift * v
        norm = float(w.norm())
        if norm == 0.0:  # v is an eigenvector of eigenvalue `shift`
            return theta, residual, True
        v = w / norm
    return theta, residual, False


def power_iteration(
    operator: Operator,
    *,
    tol: float = 1e-6,
    max_hvps: int = 1000,
    top_k: int = 1,
    which: str = "both",
    criterion: str = "residual",
    generator: torch.Generator | int | None = 0,
    start: torch.Tensor | None = None,
) -> SpectrumResult:
    """λ_max and λ_min by (shifted) power iteration; the baseline for ``lanczos``.

    The first run finds the dominant eigenvalue λ_dom; when another end is wanted (λ_max when
    λ_dom < 0, λ_min when λ_dom > 0) a second run on H − λ_dom·I finds it with the rest of the
    budget. An end that was not computed is reported as the extreme Rayleigh quotient seen (a
    valid but loose bound) with residual inf and ``converged_*=False``.

    Args:
        operator: symmetric operator (or a matrix, anything ``as_operator`` accepts).
        tol: stop a run when ‖Hv − θv‖ ≤ tol·|θ|.
        max_hvps: total HVP budget of both runs.
        top_k: must be 1 (use ``lanczos`` for more).
        which: ``"both"``, ``"largest"`` or ``"smallest"``.
        criterion: accepted for interface parity; power iteration always uses the residual.
        generator: generator or int seed for the random start vector.
        start: optional start direction.

    Returns:
        A ``SpectrumResult`` (``iterations`` = ``hvps``; ``.estimates()`` for records). It has
        no probabilistic upper end (``prob_bounds`` is None): power iteration's Rayleigh
        quotients carry no Krylov guarantee.

    Raises:
        SmoothprobeError: invalid options, or ``top_k > 1``.
    """
    from smoothprobe.suites.l2 import as_operator

    operator = as_operator(operator)
    validate_options(
        operator, tol=tol, max_hvps=max_hvps, top_k=top_k, which=which, criterion=criterion
    )
    if top_k != 1:
        raise SmoothprobeError(
            "power_iteration computes one eigenvalue per end (top_k=1); use lanczos for top_k > 1"
        )
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    v0 = start_vector(operator, start, generator)
    history: dict[str, list[float]] = {"theta": [], "residual": []}
    dom, r_dom, ok_dom = _power_run(
        operator, v0, shift=0.0, tol=tol, max_hvps=max_hvps, history=history
    )
    ends = {"max": (dom, r_dom, ok_dom)} if dom >= 0 else {"min": (dom, r_dom, ok_dom)}
    other = "min" if dom >= 0 else "max"
    budget = max_hvps - (operator.cost.hvps - hvps0)
    if which in ("both", "largest" if other == "max" else "smallest") and budget > 0:
        ends[other] = _power_run(operator, v0, shift=dom, tol=tol, max_hvps=budget, history=history)
    seen = np.asarray(history["theta"])
    lam_max, r_max, ok_max = ends.get("max", (float(seen.max()), float("inf"), False))
    lam_min, r_min, ok_min = ends.get("min", (float(seen.min()), float("inf"), False))
    want_max, want_min = which in ("both", "largest"), which in ("both", "smallest")
    converged = (ok_max or not want_max) and (ok_min or not want_min)
    return SpectrumResult(
        lambda_max=lam_max,
        lambda_min=lam_min,
        l2_norm=max(lam_max, -lam_min),
        residual_max=r_max,
        residual_min=r_min,
        error_max=r_max,
        error_min=r_min,
        converged_max=ok_max,
        converged_min=ok_min,
        top_values=(lam_max,),
        top_residuals=(r_max,),
        top_errors=(r_max,),
        ritz_values=(lam_min, lam_max),
        ritz_residuals=(r_min, r_max),
        iterations=operator.cost.hvps - hvps0,
        hvps=operator.cost.hvps - hvps0,
        converged=converged,
        stop_reason="converged" if converged else "budget",
        d=operator.d,
        seconds=time.perf_counter() - t0,
        seed=seed,
        method="power_iteration",
        settings={
            "tol": tol,
            "max_hvps": max_hvps,
            "top_k": top_k,
            "which": which,
            "criterion": "residual",
            "start": "random" if start is None else "user",
        },
        history={k: tuple(v) for k, v in history.items()},
    )
