"""A bracket on H∞ = ‖H‖∞→1 from the Grothendieck (SDP) relaxation, matrix-free (MATH.md §7).

H∞ = max_{x,y∈{±1}^d} xᵀHy is NP-hard; the surrogate ‖H‖₁,₁ overstates it (1.6–2.2× on the
examples). This estimator brackets it instead:

1. **Burer–Monteiro factor** of rank r (default 4) of the SDP over V = [X; Y] with unit rows,
   maximising tr(XᵀHY) by the mixing method (``burer_monteiro.mixing_method``, r HVPs per half
   step), stopped when a full iteration changes the objective by less than ``tol`` (relative).
2. **Upper bound** (the dual certificate): u_i = ⟨(AV)_i, V_i⟩ with A = [[0, H], [H, 0]], and
   H∞ ≤ ½Σu + d·λ⁺ with λ⁺ ≥ λ_max(A − Diag(u)) (``hinf_certificate``): an exact eigenvalue for
   small d (``Bound.UPPER``), else Lanczos with the Kuczyński–Woźniakowski bound
   (``Bound.PROB_UPPER``, failure probability ``failure_prob``).
3. **Lower bound**: hyperplane roundings x = sign(Xᵀg), y = sign(Yᵀg) (g Gaussian) plus random
   ±1 restarts, polished by sign ascent (``sign_ascent``); the best value is re-checked with one
   more exact product (certified).

HVP budget ``max_hvps``: the mixing method gets at most a quarter, the sign-ascent polish at most
a quarter (its per-start iterations are capped to fit), and the eigenvalue bound the rest: an
exact eigenvalue (d HVPs) when ``eigen="auto"`` and d ≤ min(EXACT_MAX_D, what is left), else
Lanczos with ⌊left / 2⌋ steps (two HVPs per step; memory (steps + 1)·2d float64).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.burer_monteiro import mixing_method
from smoothprobe.estimators.hinf_certificate import (
    EigenBound,
    exact_lambda_max,
    lanczos_lambda_max,
)
from smoothprobe.estimators.sampling import check_int, resolve_generator
from smoothprobe.estimators.sign_ascent import sign_ascent

EigenMethod = Literal["auto", "exact", "lanczos"]
EXACT_MAX_D = 1024  # "auto" materialises H (d HVPs, a 2d × 2d eigenproblem) up to this d
MIN_LANCZOS_STEPS = 16


@dataclass(frozen=True)
class HinfBracket:
    """lower ≤ H∞ ≤ upper (the upper end with probability ≥ 1 − failure_prob).

    Attributes:
        lower: certified lower bound (sign ascent from roundings and random starts).
        upper: upper bound ½Σu + d·λ⁺.
        failure_prob: probability that ``upper`` is below H∞ (0 when λ⁺ is exact).
        bm_value: Burer–Monteiro objective tr(XᵀHY) (≈ the SDP value; not a bound on H∞).
        rank: r.
        eigen: the λ_max bound and how it was obtained.
        hvps: HVPs in total; ``phase_hvps`` splits them (mixing, polish, eigen).
        seconds: wall time.
        seed: seed of the generator.
        settings: options the estimator ran with.
        extra: diagnostics (mixing history length, convergence, polish details).
    """

    lower: float
    upper: float
    failure_prob: float
    bm_value: float
    rank: int
    eigen: EigenBound
    hvps: int
    phase_hvps: dict[str, int]
    seconds: float
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """upper / lower."""
        return self.upper / self.lower if self.lower > 0 else float("inf")

    def estimates(self) -> list[Estimate]:
        """``hinf_lower`` (Bound.LOWER) and ``hinf_upper`` (Bound.UPPER or Bound.PROB_UPPER)."""
        common = dict(
            seconds=self.seconds,
            seed=self.seed,
            geometry="linf",
            settings=dict(self.settings),
        )
        info = {
            "bm_value": self.bm_value,
            "rank": self.rank,
            "phase_hvps": dict(self.phase_hvps),
            "ratio": self.ratio,
            "eigen_method": self.eigen.method,
            "lanczos_steps": self.eigen.steps,
            "lambda_upper": self.eigen.lambda_upper,
            "lambda_ritz": self.eigen.lambda_estimate,
            "shift": self.eigen.shift,
            "kw_epsilon": self.eigen.epsilon,
            **self.extra,
        }
        exact = self.eigen.method == "exact"
        upper = Estimate(
            quantity="hinf_upper",
            value=self.upper,
            bound=Bound.UPPER if exact else Bound.PROB_UPPER,
            failure_prob=None if exact else self.failure_prob,
            hvps=self.phase_hvps["mixing"] + self.phase_hvps["eigen"],
            method=f"sdp-dual:{self.eigen.method}",
            extra={**info, "hinf_lower": self.lower},
            **common,
        )
        lower = Estimate(
            quantity="hinf_lower",
            value=self.lower,
            bound=Bound.LOWER,
            hvps=self.phase_hvps["polish"],
            method="rounding+sign-ascent",
            extra={**info, "hinf_upper": self.upper},
            **common,
        )
        return [lower, upper]


def _rounding_starts(x: torch.Tensor, y: torch.Tensor, count: int, generator) -> torch.Tensor:
    """(2·count, d) sign vectors sign(gᵀX), sign(gᵀY) for ``count`` Gaussian g ∈ R^r."""
    g = torch.randn(count, x.shape[0], generator=generator, dtype=torch.float64)
    g = g.to(generator.device).cpu()
    signs = torch.cat([g @ x.cpu(), g @ y.cpu()])
    return torch.where(signs < 0, -1.0, 1.0).to(torch.float64)


def minimum_hvps(*, rank: int = 4, roundings: int = 16, restarts: int = 8) -> int:
    """The smallest ``max_hvps`` :func:`hinf_bracket` accepts with these options."""
    return 8 * rank + 2 * (2 * roundings + restarts) + 1 + 2 * MIN_LANCZOS_STEPS


def hinf_bracket(
    operator,
    *,
    max_hvps: int = 2048,
    rank: int = 4,
    tol: float = 1e-4,
    failure_prob: float = 1e-6,
    eigen: EigenMethod = "auto",
    roundings: int = 16,
    restarts: int = 8,
    ascent_iters: int = 30,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
) -> HinfBracket:
    """Brackets H∞ = ‖H‖∞→1 between a certified lower bound and an SDP-dual upper bound.

    Args:
        operator: anything ``as_operator`` accepts (an Operator, a symmetric matrix, a Problem).
        max_hvps: HVP budget of the whole bracket (see the module docstring for the split).
        rank: Burer–Monteiro rank r (4 reached the SDP optimum on the examples; 1 is sign ascent).
        tol: mixing-method stopping rule (relative objective change per iteration).
        failure_prob: δ of the Lanczos eigenvalue bound (the upper end holds w.p. ≥ 1 − δ).
        eigen: ``"auto"``, ``"exact"`` (materialise H: d HVPs, O(d²) memory) or ``"lanczos"``.
        roundings: Gaussian hyperplane roundings of the factor (two sign vectors each).
        restarts: random ±1 sign-ascent starts besides the roundings.
        ascent_iters: sign-ascent steps per start at most.
        generator: torch.Generator or int seed (default 0); the global RNG is untouched.
        chunk_size: probes per ``matvec`` call.

    Returns:
        The bracket; ``.estimates()`` gives ``hinf_lower`` and ``hinf_upper``.

    Raises:
        SmoothprobeError: for invalid options or a budget too small for the certificate.

    Example:
        >>> import torch
        >>> H = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64)
        >>> b = hinf_bracket(H, max_hvps=200)
        >>> round(b.lower, 6), b.upper >= b.lower, b.eigen.method
        (6.0, True, 'exact')
    """
    from smoothprobe.suites.l2 import as_operator

    if eigen not in get_args(EigenMethod):
        raise SmoothprobeError(f"eigen must be one of {get_args(EigenMethod)}, got {eigen!r}")
    if not (isinstance(failure_prob, float) and 0.0 < failure_prob < 1.0):
        raise SmoothprobeError(f"failure_prob must lie in (0, 1), e.g. 1e-6; got {failure_prob!r}")
    if not (isinstance(tol, (int, float)) and 0.0 <= tol < 1.0):
        raise SmoothprobeError(f"tol must lie in [0, 1), e.g. 1e-4; got {tol!r}")
    for name, value, minimum in (
        ("max_hvps", max_hvps, 1),
        ("rank", rank, 1),
        ("roundings", roundings, 0),
        ("restarts", restarts, 0),
        ("ascent_iters", ascent_iters, 1),
        ("chunk_size", chunk_size, 1),
    ):
        check_int(name, value, minimum=minimum)
    starts = 2 * roundings + restarts
    if starts == 0:
        raise SmoothprobeError("hinf_bracket needs roundings > 0 or restarts > 0")
    operator = as_operator(operator)
    d = operator.d
    gen, seed = resolve_generator(generator)
    minimum = minimum_hvps(rank=rank, roundings=roundings, restarts=restarts)
    if max_hvps < minimum:
        raise SmoothprobeError(
            f"max_hvps={max_hvps} is too small for an H∞ bracket with rank {rank} and "
            f"{starts} sign-ascent starts: give at least {minimum}"
        )
    t0 = time.perf_counter()
    mix = mixing_method(
        operator,
        rank=rank,
        max_hvps=max(2 * rank, max_hvps // 4),
        tol=tol,
        generator=gen,
        chunk_size=chunk_size,
    )
    u = torch.cat([(mix.x * mix.hy).sum(dim=0), (mix.y * mix.hx).sum(dim=0)])

    iters = max(1, min(ascent_iters, (max_hvps // 4 - 1) // starts))
    polish = sign_ascent(
        operator,
        restarts=restarts,
        max_iters=iters,
        generator=gen,
        starts=_rounding_starts(mix.x, mix.y, roundings, gen) if roundings else None,
        chunk_size=chunk_size,
    )
    left = max_hvps - mix.hvps - polish.hvps
    exact = eigen == "exact" or (eigen == "auto" and d <= min(EXACT_MAX_D, left))
    if exact:
        bound = exact_lambda_max(operator, u, chunk_size=max(chunk_size, 64))
    else:
        steps = left // 2
        if steps < MIN_LANCZOS_STEPS:
            raise SmoothprobeError(
                f"max_hvps={max_hvps} leaves {steps} Lanczos steps for the certificate: "
                f"raise it by at least {2 * (MIN_LANCZOS_STEPS - steps)}"
            )
        bound = lanczos_lambda_max(
            operator, u, steps=steps, failure_prob=failure_prob, generator=gen
        )
    upper = 0.5 * float(u.sum()) + d * bound.lambda_upper
    phase = {"mixing": mix.hvps, "polish": polish.hvps, "eigen": bound.hvps}
    return HinfBracket(
        lower=polish.value,
        upper=upper,
        failure_prob=bound.failure_prob,
        bm_value=mix.value,
        rank=rank,
        eigen=bound,
        hvps=sum(phase.values()),
        phase_hvps=phase,
        seconds=time.perf_counter() - t0,
        seed=seed,
        settings={
            "max_hvps": max_hvps,
            "rank": rank,
            "tol": tol,
            "failure_prob": failure_prob,
            "eigen": eigen,
            "roundings": roundings,
            "restarts": restarts,
            "ascent_iters": iters,
            "chunk_size": chunk_size,
        },
        extra={
            "d": d,
            "mixing_half_steps": mix.half_steps,
            "mixing_converged": mix.converged,
            "polish_asymmetry": polish.asymmetry,
            "best_rounding": max(polish.restart_values[restarts:], default=None),
            "best_restart": max(polish.restart_values[:restarts], default=None),
        },
    )
