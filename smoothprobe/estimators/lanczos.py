"""Extreme eigenvalues of H by Lanczos with full re-orthogonalization (MATH.md §4).

After m steps from a unit start vector, the orthonormal basis Q_m = [q_1 … q_m] and the
tridiagonal T_m = tridiag(β, α, β) satisfy the Lanczos relation

    H Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ.

For a Ritz pair (θ_i, y_i = Q_m s_i) of T_m the residual is therefore available without another
HVP: r_i = ‖H y_i − θ_i y_i‖ = β_m |s_{m,i}| (``s_{m,i}`` the last entry of s_i). For symmetric H:

- residual bound (Weyl/Kato, Krylov–Bogoliubov): some eigenvalue λ of H satisfies
  |λ − θ_i| ≤ r_i. The reported residual is an a-posteriori error bar.
- Kato–Temple: if (a, b) ∋ θ_i contains exactly one eigenvalue λ, then
  θ_i − r_i²/(b − θ_i) ≤ λ ≤ θ_i + r_i²/(θ_i − a), so |λ − θ_i| ≤ r_i²/gap_i. The gap is not
  known; it is estimated from the neighbouring Ritz values (θ_{i±1} ∓ r_{i±1}), which makes
  ``error_*`` a (usually very tight) estimate rather than a bound.
- Cauchy interlacing: θ_max ≤ λ_max and θ_min ≥ λ_min, i.e. the Ritz extremes are certified
  lower/upper bounds (up to rounding) whatever the number of steps.

These bounds speak about *an* eigenvalue near θ_i. A Krylov space can only miss λ_max when the
start vector is (nearly) orthogonal to its eigenvector; a random start makes that a probability
zero event, a user start (e.g. the gradient) can do it, so after a breakdown from a user start
the iteration continues with a fresh random direction.

Everything except the HVP runs in float64 on the operator's device: the basis (m × d float64,
so the memory is 8·m·d bytes), the recurrence, the re-orthogonalization (two classical
Gram–Schmidt passes against the whole basis per step) and the m × m tridiagonal eigenproblem,
which is solved after every step (cheap next to one HVP) so the iteration stops at the first
step where every wanted Ritz pair meets the tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import gaussian, resolve_generator
from smoothprobe.linear_operator import Operator

WHICH = ("both", "largest", "smallest")
CRITERIA = ("residual", "gap")
FLOOR_EPS_FACTOR = 100.0  # residuals below FLOOR_EPS_FACTOR·eps(dtype)·‖T‖ are rounding noise


@dataclass(frozen=True)
class KrylovBasis:
    """The Lanczos basis and tridiagonal of a run, kept for deflation (``keep_basis=True``).

    Attributes:
        basis: (m, d) float64 orthonormal rows q_1 … q_m.
        alpha: (m,) diagonal of T_m.
        beta: (m − 1,) off-diagonal of T_m (0 where the run restarted).
        residual: (d,) β_m q_{m+1}, orthogonal to the basis.
    """

    basis: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    residual: torch.Tensor

    def images(self) -> torch.Tensor:
        """Returns H q_j for every basis row from the three-term recurrence (no HVP).

        H q_j = β_{j−1} q_{j−1} + α_j q_j + β_j q_{j+1}, with β_m q_{m+1} the residual; exact up to
        rounding because the basis was fully re-orthogonalized.
        """
        q = self.basis
        hq = self.alpha[:, None] * q
        hq[1:] += self.beta[:, None] * q[:-1]
        hq[:-1] += self.beta[:, None] * q[1:]
        hq[-1] += self.residual
        return hq


@dataclass(frozen=True)
class SpectrumResult:
    """Extreme eigenvalue estimates of a symmetric operator (Lanczos or power iteration).

    Attributes:
        lambda_max: largest Ritz value θ_max (≤ λ_max up to rounding).
        lambda_min: smallest Ritz value θ_min (≥ λ_min up to rounding).
        l2_norm: max(|θ_max|, |θ_min|) (≤ ‖H‖₂ up to rounding).
        residual_max, residual_min: ‖H y − θ y‖ of the corresponding Ritz vectors; some
            eigenvalue lies within this distance (the nearest one, unless the Krylov space
            missed it).
        error_max, error_min: Kato–Temple estimate min(r, r²/gap) of the eigenvalue error.
        converged_max, converged_min: whether that end met the stopping rule.
        top_values: the top-k largest Ritz values, descending.
        top_residuals, top_errors: their residuals and error estimates.
        ritz_values, ritz_residuals: all final Ritz values (ascending) and their residuals.
        iterations: Krylov dimension reached (power iteration: number of iterations).
        hvps: HVPs used (measured on ``operator.cost``).
        converged: every wanted eigenpair met the stopping rule.
        stop_reason: ``"converged"``, ``"budget"`` (max_hvps spent), ``"invariant"`` (an
            invariant subspace was found: the Ritz values are exact eigenvalues) or
            ``"exhausted"`` (the Krylov space is all of R^d).
        d: dimension.
        seconds: wall time.
        seed: seed of the generator the start vector came from.
        method: ``"lanczos"`` or ``"power_iteration"``.
        settings: options the estimator ran with.
        history: per-iteration ``lambda_max``, ``residual_max``, ``lambda_min``,
            ``residual_min`` (tuples), for convergence plots and benchmarks.
        krylov: the basis and tridiagonal when asked for (``keep_basis=True``), else None.
    """

    lambda_max: float
    lambda_min: float
    l2_norm: float
    residual_max: float
    residual_min: float
    error_max: float
    error_min: float
    converged_max: bool
    converged_min: bool
    top_values: tuple[float, ...]
    top_residuals: tuple[float, ...]
    top_errors: tuple[float, ...]
    ritz_values: tuple[float, ...]
    ritz_residuals: tuple[float, ...]
    iterations: int
    hvps: int
    converged: bool
    stop_reason: str
    d: int
    seconds: float
    seed: int | None
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    history: dict[str, tuple[float, ...]] = field(default_factory=dict)
    krylov: KrylovBasis | None = field(default=None, repr=False, compare=False)

    @property
    def residual_l2(self) -> float:
        """Residual of the end that attains ``l2_norm``."""
        return self.residual_max if self.lambda_max >= -self.lambda_min else self.residual_min

    def to_estimates(self) -> list[Estimate]:
        """Returns the standard ℓ2 quantities ``lambda_max``, ``lambda_min``, ``l2_norm``, ``d_l2``.

        ``value`` is the Ritz value, a certified lower bound for λ_max, ‖H‖₂ and d·‖H‖₂ and an
        upper bound for λ_min (Cauchy interlacing). ``ci_low``/``ci_high`` is the residual
        interval [θ, θ + r] (resp. [θ − r, θ]), which contains the eigenvalue unless the
        Krylov space missed it; ``confidence`` is None because it is not a statistical
        interval. ``extra`` holds the residual, the Kato–Temple error estimate, whether the
        stopping rule was met, the iteration count and the top-k Ritz values. The four
        estimates share one run: ``hvps`` and ``seconds`` are that run's, not additive.
        """
        shared = {
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "converged_all": self.converged,
            "top_values": list(self.top_values),
            "top_residuals": list(self.top_residuals),
            "top_errors": list(self.top_errors),
            "shared_run": True,
        }
        l2_is_max = self.lambda_max >= -self.lambda_min
        rows = [
            (
                "lambda_max",
                self.lambda_max,
                Bound.LOWER,
                self.residual_max,
                self.error_max,
                self.converged_max,
            ),
            (
                "lambda_min",
                self.lambda_min,
                Bound.UPPER,
                self.residual_min,
                self.error_min,
                self.converged_min,
            ),
            (
                "l2_norm",
                self.l2_norm,
                Bound.LOWER,
                self.residual_l2,
                self.error_max if l2_is_max else self.error_min,
                self.converged_max if l2_is_max else self.converged_min,
            ),
            (
                "d_l2",
                self.d * self.l2_norm,
                Bound.LOWER,
                self.d * self.residual_l2,
                self.d * (self.error_max if l2_is_max else self.error_min),
                self.converged_max if l2_is_max else self.converged_min,
            ),
        ]
        out = []
        for name, value, bound, residual, error, ok in rows:
            upper = bound is Bound.UPPER
            low, high = (value - residual, value) if upper else (value, value + residual)
            out.append(
                Estimate(
                    quantity=name,
                    value=float(value),
                    bound=bound,
                    ci_low=float(low),
                    ci_high=float(high),
                    hvps=self.hvps,
                    seconds=self.seconds,
                    seed=self.seed,
                    method=self.method,
                    geometry="l2",
                    settings=dict(self.settings),
                    extra={
                        **shared,
                        "residual": float(residual),
                        "error_estimate": float(error),
                        "converged": bool(ok),
                    },
                )
            )
        return out


def mixed_start(
    direction: torch.Tensor, *, generator: torch.Generator | int | None = 0
) -> torch.Tensor:
    """Returns u/‖u‖ + z/‖z‖ for a direction u (e.g. the gradient) and a Gaussian z.

    A network's gradient leans towards the top Hessian eigenvectors, so Lanczos started from it
    reaches λ_max in fewer steps (2 fewer HVPs on the example models); the equal-weight random
    part keeps every eigenvector's share at least that of a random start, so nothing is missed
    with more than the usual (zero) probability. A zero or non-finite direction gives z/‖z‖.

    Args:
        direction: (d,) tensor.
        generator: generator or int seed for z.

    Returns:
        (d,) float64 tensor on the direction's device (not normalized).
    """
    generator, _ = resolve_generator(generator)
    u = direction.detach().reshape(-1).to(torch.float64)
    z = gaussian(u.numel(), generator=generator, device=u.device)
    norm = float(u.norm())
    if not np.isfinite(norm) or norm == 0.0:
        return z / z.norm()
    return u / norm + z / z.norm()


def start_vector(
    operator: Operator, start: torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    """Returns the unit float64 start vector on the operator's device.

    Args:
        operator: the operator (for d and device).
        start: a user direction (e.g. the gradient) or None for a standard normal draw.
        generator: source of the random draw.

    Raises:
        SmoothprobeError: wrong shape, zero or non-finite start.
    """
    if start is None:
        v = gaussian(operator.d, generator=generator, device=operator.device)
    else:
        v = start.detach().reshape(-1).to(device=operator.device, dtype=torch.float64)
        if v.numel() != operator.d:
            raise SmoothprobeError(
                f"start vector has {v.numel()} entries, the operator has d={operator.d}"
            )
    norm = float(v.norm())
    if not np.isfinite(norm) or norm == 0.0:
        raise SmoothprobeError(
            "start vector is zero or not finite; pass start=None for a random one"
        )
    return v / norm


def orthogonalize(basis: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Removes from w its components along the rows of ``basis`` (two Gram–Schmidt passes).

    Args:
        basis: (m, d) orthonormal rows.
        w: (d,) vector.

    Returns:
        (w minus its projection, the total projection coefficients (m,)).
    """
    c1 = basis @ w
    w = w - c1 @ basis
    c2 = basis @ w
    return w - c2 @ basis, c1 + c2


def ritz_pairs(
    alpha: list[float], beta: list[float], beta_last: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposes T_m and returns Ritz values, residuals and first components.

    Args:
        alpha: the m diagonal entries of T_m.
        beta: the m − 1 off-diagonal entries.
        beta_last: β_m = ‖w_m‖, the norm of the next (unnormalized) Lanczos vector.

    Returns:
        (θ ascending (m,), residuals β_m |s_{m,i}| (m,), first components s_{1,i} (m,)).
    """
    if len(alpha) == 1:
        return np.array(alpha), np.array([abs(beta_last)]), np.array([1.0])
    theta, s = eigh_tridiagonal(np.asarray(alpha), np.asarray(beta))
    return theta, abs(beta_last) * np.abs(s[-1, :]), s[0, :]


def kato_temple_errors(theta: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Estimates |λ − θ_i| by min(r_i, r_i²/gap_i), the gap taken from neighbouring Ritz values.

    The eigenvalue next above θ_i is estimated from below by θ_{i+1} − r_{i+1}, the one below
    from above by θ_{i−1} + r_{i−1}; the top (bottom) Ritz value has no eigenvalue above (below)
    to worry about. A single Ritz value has no neighbour at all: its estimate is r.

    Args:
        theta: Ritz values, ascending.
        residuals: their residuals.

    Returns:
        Error estimates, same shape.
    """
    if len(theta) == 1:  # no neighbour: the gap is unknown
        return residuals.copy()
    inf = np.full(1, np.inf)
    above = np.concatenate([theta[1:] - residuals[1:], inf]) - theta
    below = theta - np.concatenate([-inf, theta[:-1] + residuals[:-1]])
    gap = np.minimum(above, below)
    with np.errstate(divide="ignore", invalid="ignore"):
        temple = np.where(gap > residuals, residuals**2 / np.where(gap > 0, gap, 1.0), np.inf)
    return np.minimum(residuals, temple)


def wanted_indices(m: int, *, which: str, top_k: int) -> list[int]:
    """Indices (into ascending Ritz values) of the eigenpairs the stopping rule watches."""
    wanted = set()
    if which in ("both", "largest"):
        wanted.update(range(max(0, m - top_k), m))
    if which in ("both", "smallest"):
        wanted.add(0)
    return sorted(wanted)


def meets_tolerance(
    theta: np.ndarray,
    residuals: np.ndarray,
    errors: np.ndarray,
    *,
    tol: float,
    floor: float,
    criterion: str,
) -> np.ndarray:
    """Per Ritz pair: r ≤ tol·|θ| (``"residual"``) or error ≤ tol·|θ| (``"gap"``), or r ≤ floor."""
    measure = residuals if criterion == "residual" else errors
    return (measure <= tol * np.abs(theta)) | (residuals <= floor)


def validate_options(
    operator: Operator, *, tol: float, max_hvps: int, top_k: int, which: str, criterion: str
) -> None:
    """Raises SmoothprobeError for out-of-range options (shared by Lanczos and power iteration)."""
    if not tol > 0:
        raise SmoothprobeError(f"tol must be > 0, got {tol}")
    if max_hvps < 1:
        raise SmoothprobeError(f"max_hvps must be ≥ 1, got {max_hvps}")
    if not 1 <= top_k <= operator.d:
        raise SmoothprobeError(f"top_k must be between 1 and d={operator.d}, got {top_k}")
    if which not in WHICH:
        raise SmoothprobeError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if criterion not in CRITERIA:
        raise SmoothprobeError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")


def lanczos(
    operator: Operator,
    *,
    tol: float = 1e-6,
    max_hvps: int = 300,
    top_k: int = 1,
    which: str = "both",
    criterion: str = "residual",
    generator: torch.Generator | int | None = 0,
    start: torch.Tensor | None = None,
    keep_basis: bool = False,
) -> SpectrumResult:
    """Extreme eigenvalues of a symmetric operator by Lanczos with full re-orthogonalization.

    Stops after the first step at which every wanted Ritz pair (the top-k largest when
    ``which`` is ``"both"``/``"largest"``, the smallest when ``"both"``/``"smallest"``) has
    r ≤ tol·|θ| (``criterion="residual"``; the eigenvalue error is then ≤ tol·|θ|) or
    Kato–Temple error estimate min(r, r²/gap) ≤ tol·|θ| (``criterion="gap"``: the eigenvalue
    error shrinks like r², so this stops a few steps earlier, within 0–2 steps of the first step
    whose Ritz value is within tol in tests), or when ``max_hvps`` HVPs are spent. Residuals
    below 100·eps(operator dtype)·‖T‖ count as converged (rounding noise). One HVP per step.

    Args:
        operator: symmetric operator (``DenseOperator`` for a matrix).
        tol: relative tolerance.
        max_hvps: HVP budget (at most d steps are taken).
        top_k: number of largest eigenvalues to report and converge.
        which: ``"both"``, ``"largest"`` or ``"smallest"`` end(s) to converge.
        criterion: ``"residual"`` or ``"gap"`` (see above).
        generator: generator or int seed for the random start vector.
        start: optional start direction, e.g. the gradient (any scale).
        keep_basis: return the Krylov basis in ``result.krylov`` (m·d float64), e.g. to deflate
            the trace and Frobenius estimators (``trace.deflated_probes``).

    Returns:
        The result; ``to_estimates()`` turns it into Estimates.

    Raises:
        SmoothprobeError: invalid options or start vector.

    Example:
        >>> import torch
        >>> from smoothprobe.linear_operator import DenseOperator
        >>> r = lanczos(DenseOperator(torch.diag(torch.arange(1.0, 51.0, dtype=torch.float64))),
        ...             tol=1e-10)
        >>> round(r.lambda_max, 8), round(r.lambda_min, 8), r.converged
        (50.0, 1.0, True)
    """
    validate_options(
        operator, tol=tol, max_hvps=max_hvps, top_k=top_k, which=which, criterion=criterion
    )
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    eps = torch.finfo(operator.dtype).eps if operator.dtype.is_floating_point else 1e-16
    max_steps = min(max_hvps, operator.d)
    need = min(operator.d, top_k + (1 if which == "both" else 0))

    basis = torch.empty(max_steps, operator.d, dtype=torch.float64, device=operator.device)
    basis[0] = start_vector(operator, start, generator)
    alpha: list[float] = []
    beta: list[float] = []
    history: dict[str, list[float]] = {
        k: [] for k in ("lambda_max", "residual_max", "lambda_min", "residual_min")
    }
    stop_reason = "budget"
    for j in range(max_steps):
        w = operator.matvec(basis[j].to(operator.dtype)).to(torch.float64)
        w, coeffs = orthogonalize(basis[: j + 1], w)
        alpha.append(float(coeffs[j]))
        beta_last = float(w.norm())
        theta, res, _ = ritz_pairs(alpha, beta, beta_last)
        scale = max(float(np.abs(theta).max()), beta_last)
        res = np.maximum(res, eps * scale)  # no residual is certain below rounding (s_m underflows)
        floor = FLOOR_EPS_FACTOR * eps * scale
        errs = kato_temple_errors(theta, res)
        for key, value in (
            ("lambda_max", theta[-1]),
            ("residual_max", res[-1]),
            ("lambda_min", theta[0]),
            ("residual_min", res[0]),
        ):
            history[key].append(float(value))
        ok = meets_tolerance(theta, res, errs, tol=tol, floor=floor, criterion=criterion)
        invariant = beta_last <= floor
        if invariant and start is not None and j + 1 < max_steps:
            # a user start may span an invariant subspace that misses λ_max: continue elsewhere
            w, norm = fresh_direction(basis[: j + 1], operator, generator)
            if norm > 0.0:
                basis[j + 1] = w
                beta.append(0.0)  # T splits: the new block is decoupled from the old one
                continue
        wanted = wanted_indices(j + 1, which=which, top_k=top_k)
        if all(ok[wanted]) and (j + 1 >= need or invariant):
            stop_reason = "converged"
            break
        if invariant:
            stop_reason = "invariant"
            break
        if j + 1 == max_steps:
            stop_reason = "exhausted" if max_steps == operator.d else "budget"
            break
        basis[j + 1] = w / beta_last
        beta.append(beta_last)

    return summarize(
        theta,
        res,
        errs,
        ok,
        which=which,
        top_k=top_k,
        iterations=len(alpha),
        hvps=operator.cost.hvps - hvps0,
        stop_reason=stop_reason,
        d=operator.d,
        seconds=time.perf_counter() - t0,
        seed=seed,
        method="lanczos",
        history=history,
        krylov=KrylovBasis(
            basis=basis[: len(alpha)],
            alpha=torch.tensor(alpha, dtype=torch.float64, device=operator.device),
            beta=torch.tensor(beta[: len(alpha) - 1], dtype=torch.float64, device=operator.device),
            residual=w,
        )
        if keep_basis
        else None,
        settings={
            "tol": tol,
            "max_hvps": max_hvps,
            "top_k": top_k,
            "which": which,
            "criterion": criterion,
            "start": "random" if start is None else "user",
        },
    )


def fresh_direction(
    basis: torch.Tensor, operator: Operator, generator: torch.Generator, *, tries: int = 5
) -> tuple[torch.Tensor, float]:
    """A random unit vector orthogonal to ``basis`` (norm 0.0 when none is found).

    Args:
        basis: (m, d) orthonormal rows, m < d.
        operator: the operator (for d and device).
        generator: source of the random draws.
        tries: draws before giving up (a draw lies in the span with probability 0).

    Returns:
        (unit vector, norm of its orthogonal part before normalization).
    """
    for _ in range(tries):
        v = gaussian(operator.d, generator=generator, device=operator.device)
        v, _ = orthogonalize(basis, v / v.norm())
        norm = float(v.norm())
        if norm > 1e-8:
            return v / norm, norm
    return v, 0.0


def summarize(
    theta: np.ndarray,
    res: np.ndarray,
    errs: np.ndarray,
    ok: np.ndarray,
    *,
    which: str,
    top_k: int,
    iterations: int,
    hvps: int,
    stop_reason: str,
    d: int,
    seconds: float,
    seed: int | None,
    method: str,
    history: dict[str, list[float]],
    settings: dict[str, Any],
    krylov: KrylovBasis | None = None,
) -> SpectrumResult:
    """Builds a SpectrumResult from the final Ritz values (ascending) and their diagnostics."""
    top = list(range(len(theta) - 1, max(-1, len(theta) - 1 - top_k), -1))
    want_max = which in ("both", "largest")
    want_min = which in ("both", "smallest")
    converged_max, converged_min = bool(ok[-1]), bool(ok[0])
    if want_max:
        converged_max = bool(all(ok[top]))
    converged = (converged_max or not want_max) and (converged_min or not want_min)
    if stop_reason in ("invariant", "exhausted"):
        converged = converged_max = converged_min = True
    return SpectrumResult(
        lambda_max=float(theta[-1]),
        lambda_min=float(theta[0]),
        l2_norm=float(max(theta[-1], -theta[0])),
        residual_max=float(res[-1]),
        residual_min=float(res[0]),
        error_max=float(errs[-1]),
        error_min=float(errs[0]),
        converged_max=converged_max,
        converged_min=converged_min,
        top_values=tuple(float(theta[i]) for i in top),
        top_residuals=tuple(float(res[i]) for i in top),
        top_errors=tuple(float(errs[i]) for i in top),
        ritz_values=tuple(float(t) for t in theta),
        ritz_residuals=tuple(float(r) for r in res),
        iterations=iterations,
        hvps=hvps,
        converged=converged,
        stop_reason=stop_reason,
        d=d,
        seconds=seconds,
        seed=seed,
        method=method,
        settings=settings,
        history={k: tuple(v) for k, v in history.items()},
        krylov=krylov,
    )
