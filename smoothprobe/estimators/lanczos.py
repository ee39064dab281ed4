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

Everything except the HVP runs in float64 on the operator's device: the recurrence, the
re-orthogonalization (two classical Gram–Schmidt passes against the whole basis per step, over
column chunks) and the m × m projected eigenproblem, which is solved after every step (cheap next
to one HVP) so the iteration stops at the first step where every wanted Ritz pair meets the
tolerance. The basis itself is the memory: ``max_basis`` rows × d in ``basis_dtype``
(``krylov_store``). When it is full, a thick restart keeps the Ritz vectors of both ends
(about half the rows): T becomes diag(θ_kept) coupled to the next vector by β_m s_{m,i}, the
relation H Q = Q T + w e_mᵀ still holds with T = QᵀHQ (arrow plus tridiagonal) and the residual
formula is unchanged. The probabilistic upper ends are in ``spectrum_result``.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.krylov_bound import lanczos_upper_bounds
from smoothprobe.estimators.krylov_store import BasisStore
from smoothprobe.estimators.lanczos_checkpoint import LanczosCheckpoint
from smoothprobe.estimators.ritz import (
    kato_temple_errors,
    meets_tolerance,
    ritz_pairs,
    wanted_indices,
)
from smoothprobe.estimators.sampling import gaussian, resolve_generator
from smoothprobe.estimators.spectrum_result import KrylovBasis, SpectrumResult, summarize
from smoothprobe.linear_operator import Operator

__all__ = [
    "KrylovBasis",
    "SpectrumResult",
    "kato_temple_errors",
    "lanczos",
    "mixed_start",
    "ritz_pairs",
    "start_vector",
]

WHICH = ("both", "largest", "smallest")
CRITERIA = ("residual", "gap")
FLOOR_EPS_FACTOR = 100.0  # residuals below FLOOR_EPS_FACTOR·eps(dtype)·‖T‖ are rounding noise


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


def restart_keep(theta: np.ndarray, *, which: str, top_k: int, capacity: int) -> np.ndarray:
    """Indices of the Ritz vectors a thick restart keeps: about half the basis, by end.

    The largest ``n_top`` (at least ``top_k``) and the smallest ``n_bottom`` Ritz values are
    kept (one end only for ``which="largest"``/``"smallest"``), leaving room for ≥ 2 new steps.
    """
    m = len(theta)
    keep = min(m - 1, max(top_k + 1, capacity // 2), capacity - 2)
    if which == "largest":
        n_top, n_bottom = keep, 0
    elif which == "smallest":
        n_top, n_bottom = 0, keep
    else:
        n_top = max(top_k, keep - keep // 2)
        n_bottom = max(1, keep - n_top)
    chosen = set(range(n_bottom)) | set(range(m - n_top, m))
    return np.array(sorted(chosen), dtype=int)


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
    max_basis: int | None = None,
    basis_dtype: torch.dtype = torch.float64,
    failure_prob: float = 1e-3,
    checkpoint: LanczosCheckpoint | None = None,
) -> SpectrumResult:
    """Extreme eigenvalues of a symmetric operator by Lanczos with full re-orthogonalization.

    Stops after the first step at which every wanted Ritz pair (the top-k largest when
    ``which`` is ``"both"``/``"largest"``, the smallest when ``"both"``/``"smallest"``) has
    r ≤ tol·|θ| (``criterion="residual"``) or Kato–Temple error estimate min(r, r²/gap) ≤
    tol·|θ| (``criterion="gap"``), or when ``max_hvps`` HVPs are spent. Residuals below
    100·eps(operator dtype)·‖T‖ count as converged (rounding noise). One HVP per step.

    Memory: the basis holds at most ``max_basis`` rows of d entries in ``basis_dtype``
    (default: one per step, float64 — plain Lanczos). When the basis is full, a thick restart
    (Wu & Simon) keeps about half of it as Ritz vectors of both ends and continues; θ_max only
    grows and θ_min only falls across restarts, so the certified ends stay certified.

    Upper ends: from a random start (``start=None``) the result carries Kuczyński–Woźniakowski
    bounds (``prob_bounds``) that hold with probability ≥ 1 − ``failure_prob``, computed from
    the tridiagonal of the first basis-full of steps; the probability is split over every step
    the run could have stopped at (a union bound), so the data-dependent stopping rule is
    covered. A user start gets none (θ + r is only a diagnostic, see ``spectrum_result``).

    Args:
        operator: symmetric operator (or a matrix, anything ``as_operator`` accepts).
        tol: relative tolerance.
        max_hvps: HVP budget (at most d steps are taken).
        top_k: number of largest eigenvalues to report and converge.
        which: ``"both"``, ``"largest"`` or ``"smallest"`` end(s) to converge.
        criterion: ``"residual"`` or ``"gap"`` (see above).
        generator: generator or int seed for the random start vector.
        start: optional start direction, e.g. the gradient (any scale); voids the
            probabilistic upper ends.
        keep_basis: return the Krylov basis in ``result.krylov`` (m·d float64), e.g. to deflate
            the trace and Frobenius estimators (``trace.deflated_probes``).
        max_basis: rows the basis may hold (None: ``max_hvps``); at least ``top_k + 3``.
        basis_dtype: ``torch.float64`` or ``torch.float32`` (half the memory; Ritz values agree
            with float64 storage to ~1e-7 relative).
        failure_prob: δ of the probabilistic upper ends.
        checkpoint: saves the state as the run goes and resumes from a matching saved state
            (``lanczos_checkpoint``); the result is the uninterrupted run's.

    Returns:
        The result; ``.estimates()`` turns it into Estimates.

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
    from smoothprobe.suites.l2 import as_operator

    operator = as_operator(operator)
    validate_options(
        operator, tol=tol, max_hvps=max_hvps, top_k=top_k, which=which, criterion=criterion
    )
    validate_memory_options(max_basis, basis_dtype, failure_prob, top_k=top_k)
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    eps = torch.finfo(operator.dtype).eps if operator.dtype.is_floating_point else 1e-16
    max_steps = min(max_hvps, operator.d)
    need = min(operator.d, top_k + (1 if which == "both" else 0))
    capacity = min(max_steps, max_basis or max_steps)

    options = {
        "tol": tol, "max_hvps": max_hvps, "top_k": top_k, "which": which,
        "criterion": criterion, "start": "random" if start is None else "user",
        "capacity": capacity, "basis_dtype": str(basis_dtype), "d": operator.d, "seed": seed,
    }  # fmt: skip
    store = BasisStore(capacity, operator.d, dtype=basis_dtype, device=operator.device)
    saved = None if checkpoint is None else checkpoint.load(options, store.rows)
    proj = np.zeros((capacity, capacity))
    if saved is None:
        q = store.append(start_vector(operator, start, generator))
        alpha: list[float] = []  # tridiagonal of the first basis-full, for the KW bound
        beta: list[float] = []
        first_beta_last = 0.0
        history: dict[str, list[float]] = {
            k: [] for k in ("lambda_max", "residual_max", "lambda_min", "residual_min")
        }
        steps, restarts, done_hvps, done_seconds = 0, 0, 0, 0.0
    else:
        m = saved["rows"]["shape"][0]
        store.size = m
        q = store.rows[m - 1]
        proj[:] = saved["proj"].numpy()
        alpha, beta = list(saved["alpha"]), list(saved["beta"])
        first_beta_last, history = saved["first_beta_last"], saved["history"]
        steps, restarts = saved["steps"], saved["restarts"]
        done_hvps, done_seconds = saved["hvps"], saved["seconds"]
        generator.set_state(saved["generator"])
    stop_reason = "budget"
    while True:
        if checkpoint is not None and checkpoint.due():
            state = {
                "proj": torch.from_numpy(proj),
                "alpha": alpha, "beta": beta, "first_beta_last": first_beta_last,
                "history": history, "steps": steps, "restarts": restarts,
                "generator": generator.get_state(),
                "hvps": done_hvps + operator.cost.hvps - hvps0,
                "seconds": done_seconds + time.perf_counter() - t0,
            }  # fmt: skip
            checkpoint.save(state, store.rows[: store.size], options)
        m = store.size
        w = operator.matvec(q.to(operator.dtype)).to(torch.float64)
        steps += 1
        w, coeffs = store.orthogonalize(w)
        proj[:m, m - 1] = proj[m - 1, :m] = coeffs.cpu().numpy()
        beta_last = float(w.norm())
        if restarts == 0:
            alpha.append(float(proj[m - 1, m - 1]))
            first_beta_last = beta_last
        theta, vectors = np.linalg.eigh(proj[:m, :m])
        res = beta_last * np.abs(vectors[m - 1, :])
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
        if invariant and start is not None and steps < max_steps and m < capacity:
            # a user start may span an invariant subspace that misses λ_max: continue elsewhere
            w, norm = fresh_direction(store, operator, generator)
            if norm > 0.0:
                q = store.append(w)
                if restarts == 0:
                    beta.append(0.0)  # T splits: the new block is decoupled from the old one
                continue
        wanted = wanted_indices(m, which=which, top_k=top_k)
        if all(ok[wanted]) and (m >= need or invariant):
            stop_reason = "converged"
            break
        if invariant:
            stop_reason = "invariant"
            break
        if steps == max_steps:
            stop_reason = "exhausted" if max_steps == operator.d and restarts == 0 else "budget"
            break
        if m == capacity:  # thick restart: keep Ritz vectors of both ends, continue from w
            keep = restart_keep(theta, which=which, top_k=top_k, capacity=capacity)
            store.rotate(vectors[:, keep])
            proj[:] = 0.0
            proj[np.arange(len(keep)), np.arange(len(keep))] = theta[keep]
            restarts += 1
        elif restarts == 0:
            beta.append(beta_last)
        q = store.append(w.div_(beta_last))

    prob = None
    if start is None:
        # δ split over every step the first basis-full could have stopped at (union bound)
        prob = lanczos_upper_bounds(
            alpha, beta[: len(alpha) - 1], first_beta_last, d=operator.d,
            failure_prob=failure_prob / capacity,
        )  # fmt: skip
        margin = 100 * torch.finfo(basis_dtype).eps * float(np.abs(theta).max())
        prob = replace(
            prob,
            lambda_max_upper=prob.lambda_max_upper + margin,
            lambda_min_lower=prob.lambda_min_lower - margin,
            norm_upper=prob.norm_upper + margin,
            failure_prob=failure_prob,
        )
    m = store.size
    krylov = None
    if keep_basis:
        krylov = KrylovBasis(
            basis=store.matrix(),
            projection=torch.tensor(proj[:m, :m], dtype=torch.float64, device=operator.device),
            residual=w,
        )
    return summarize(
        theta,
        res,
        errs,
        ok,
        which=which,
        top_k=top_k,
        stop_reason=stop_reason,
        iterations=steps,
        hvps=done_hvps + operator.cost.hvps - hvps0,
        d=operator.d,
        seconds=done_seconds + time.perf_counter() - t0,
        seed=seed,
        method="lanczos",
        history=history,
        krylov=krylov,
        prob_bounds=prob,
        restarts=restarts,
        basis_bytes=store.nbytes,
        settings={
            "tol": tol,
            "max_hvps": max_hvps,
            "top_k": top_k,
            "which": which,
            "criterion": criterion,
            "start": "random" if start is None else "user",
            "max_basis": capacity,
            "basis_dtype": str(basis_dtype).removeprefix("torch."),
            "failure_prob": failure_prob,
        },
    )


def validate_memory_options(
    max_basis: int | None, basis_dtype: torch.dtype, failure_prob: float, *, top_k: int
) -> None:
    """Raises SmoothprobeError for a basis that cannot restart, a bad dtype or probability."""
    if max_basis is not None and max_basis < top_k + 3:
        raise SmoothprobeError(
            f"max_basis must be at least top_k + 3 = {top_k + 3} rows, got {max_basis}"
        )
    if basis_dtype not in (torch.float64, torch.float32):
        raise SmoothprobeError(
            f"basis_dtype must be torch.float64 or torch.float32, got {basis_dtype}"
        )
    if not 0 < failure_prob < 1:
        raise SmoothprobeError(f"failure_prob must lie in (0, 1), got {failure_prob}")


def fresh_direction(
    store: BasisStore, operator: Operator, generator: torch.Generator, *, tries: int = 5
) -> tuple[torch.Tensor, float]:
    """A random unit vector orthogonal to the stored basis (norm 0.0 when none is found).

    Returns:
        (unit vector, norm of its orthogonal part before normalization).
    """
    for _ in range(tries):
        v = gaussian(operator.d, generator=generator, device=operator.device)
        v, _ = store.orthogonalize(v / v.norm())
        norm = float(v.norm())
        if norm > 1e-8:
            return v / norm, norm
    return v, 0.0
