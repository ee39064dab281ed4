"""The spectral (Muon) suite: H_op bracketed, ρ_op and the predicted iteration ratios (MATH.md §8).

For the matrix part alone and (when the model has non-matrix parameters) the mixed geometry, it
returns, all with geometry ``spectral`` and the partition ``matrices`` / ``mixed``:

- ``op_lower``: certified lower bound on H_op (polar ascent);
- ``op_upper``: Σ c_b c_b'‖H_bb'‖₂ (``upper`` when every block norm is exact, else ``estimate``);
- ``op_upper_rl2``: R·L₂ with L₂'s upper end; its bound is that end's (``upper``,
  ``prob_upper`` with its failure probability, or ``estimate`` for the Ritz value + residual).
  When the reference records give no ``upper``/``prob_upper`` L₂ and ``l2_failure_prob`` is set,
  the suite runs its own random-start Lanczos (≤ ``l2_hvps`` HVPs) and takes the
  Kuczyński–Woźniakowski bound (``prob_upper``);
- ``rho_op`` = H_op/(R·L₂) = predicted T_Muon/T_SGD; value its upper end
  min(1, upper/(R·θ)) with θ the Lanczos Ritz value (a certified lower bound on L₂), ``ci_low``
  its lower end lower/(R·L₂-upper);
- ``muon_adam_ratio`` = predicted T_Muon/T_Adam (mixed geometry, when H∞ was bracketed).

**The common yardstick.** Steepest descent in a norm with smoothness H reaches
min_t ‖∇L‖_* ≤ √(2HΔ/T). Measured in a yardstick norm Y with ‖g‖_Y ≤ c‖g‖_*, it reaches ‖g‖_Y ≤ ε
after T ≈ 2c²HΔ/ε² steps. Take Y = Muon's own dual norm ‖·‖_op* (mixed: Σ‖G_l‖_nuc/s_l +
‖g_rest‖₁). Then c = 1 for Muon; ‖g‖_op* ≤ √R‖g‖₂ gives c² = R for SGD; and ‖G‖_nuc ≤ Σ|G_ij|
gives ‖g‖_op* ≤ max(1, 1/min_l s_l)·‖g‖₁, so c² = max(1, 1/min s)² =: κ for Adam. Hence

    T_Muon/T_SGD = H_op/(R·L₂) = ρ_op,     T_Muon/T_Adam = H_op/(κ·H∞).

(MATH.md §5's ℓ1 yardstick gives T_Adam/T_SGD = ρ; the ratios depend on the yardstick, so these
are stated with theirs.) The matrix part alone compares Muon on the matrices with SGD on the
same matrices (L₂ of the whole model bounds that of H_MM from above, so ρ_op's lower end stays
valid); its Adam ratio would need H∞ of H_MM and is not formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.op_norm import op_lower_bound, op_upper_bound
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.linear_operator import Operator
from smoothprobe.spectral_geometry import SpectralGeometry, spectral_geometry

YARDSTICK = "the dual norm of the geometry (sum ||G_l||_nuc / s_l, + ||g_rest||_1 when mixed)"


def _find(estimates: Sequence[Estimate], quantity: str) -> Estimate | None:
    return next((e for e in estimates if e.quantity == quantity), None)


def l2_ends(estimates: Sequence[Estimate]) -> tuple[float, float, Bound, float | None, str] | None:
    """(L₂ lower, L₂ upper end, that end's bound, its failure probability, how) from ℓ2 records.

    The lower end is the Ritz value (certified). The upper end is the best stated one: an
    ``l2_norm`` record with bound ``upper`` / ``prob_upper`` (failure probability), else the
    Ritz value + residual (``estimate``: it holds unless the Krylov space missed the top
    eigenvector). None when no ``l2_norm`` was measured.
    """
    ritz = [e for e in estimates if e.quantity == "l2_norm" and e.bound is Bound.LOWER]
    if not ritz:
        return None
    low = abs(float(ritz[0].value))
    uppers = [
        e for e in estimates if e.quantity == "l2_norm" and e.bound.value in ("upper", "prob_upper")
    ]
    if uppers:
        best = min(uppers, key=lambda e: float(e.value))
        failure = getattr(best, "failure_prob", None)
        return low, float(best.value), best.bound, failure, best.method or best.bound.value
    high = ritz[0].ci_high
    if high is None:
        return None
    return low, float(high), Bound.ESTIMATE, None, "Ritz value + residual"


def linf_ends(estimates: Sequence[Estimate]) -> tuple[float, float, Bound] | None:
    """(H∞ certified lower, H∞ upper end, its bound) from ℓ∞ and ℓ2 records, or None.

    The upper end is min(‖H‖₁,₁, d·L₂'s upper end): the (1,1)-norm counts as certified only when
    it is exact; otherwise the end is an estimate.
    """
    lower = _find(estimates, "linf_lower")
    if lower is None:
        return None
    candidates: list[tuple[float, Bound]] = []
    l11 = _find(estimates, "l11_norm")
    if l11 is not None:
        high = l11.ci_high if l11.ci_high is not None else l11.value
        exact = l11.bound in (Bound.EXACT, Bound.UPPER)
        candidates.append((float(high), Bound.UPPER if exact else Bound.ESTIMATE))
    d_l2 = [
        e for e in estimates if e.quantity == "d_l2" and e.bound.value in ("upper", "prob_upper")
    ]
    candidates += [(float(e.value), e.bound) for e in d_l2]
    if not candidates:
        return None
    high, bound = min(candidates, key=lambda c: c[0])
    return float(lower.value), high, bound


def kw_l2_ends(
    operator: Operator,
    *,
    failure_prob: float,
    max_hvps: int,
    tol: float,
    generator: torch.Generator,
    max_basis: int | None = None,
    basis_dtype: torch.dtype = torch.float64,
) -> tuple[float, float, Bound, float, str] | None:
    """L₂ bracketed by a random-start Lanczos run: (Ritz lower, KW upper, prob_upper, δ, how).

    With a bounded basis (``max_basis``) a restarted run takes its upper end from the first
    basis-full (``lanczos``'s own bound): only that part is a Krylov space of the random start.
    """
    from smoothprobe.estimators.lanczos import lanczos
    from smoothprobe.estimators.ritz_bounds import ritz_upper_bounds

    run = lanczos(
        operator,
        tol=tol,
        max_hvps=max_hvps,
        generator=generator,
        max_basis=max_basis,
        basis_dtype=basis_dtype,
        failure_prob=failure_prob,
    )
    kw = (
        run.prob_bounds
        if run.restarts
        else ritz_upper_bounds(
            run.ritz_values, run.ritz_residuals, d=operator.d, failure_prob=failure_prob
        )
    )
    if kw is None or not math.isfinite(kw.norm_upper):
        return None
    how = f"Kuczynski-Wozniakowski, random-start Lanczos ({run.iterations} steps)"
    return run.l2_norm, kw.norm_upper, Bound.PROB_UPPER, failure_prob, how


def _ratio_estimates(
    geo: SpectralGeometry,
    lower: float,
    upper_block: Estimate,
    l2: tuple | None,
    linf: tuple | None,
    settings: dict,
) -> list[Estimate]:
    out: list[Estimate] = []
    block_certified = upper_block.bound is Bound.UPPER
    if l2 is None:
        return out
    l2_low, l2_high, l2_bound, l2_failure, l2_how = l2
    r = geo.radius_sq
    out.append(
        Estimate(
            quantity="op_upper_rl2",
            value=r * l2_high,
            bound=l2_bound,
            method="R*L2",
            geometry="spectral",
            settings=settings,
            extra={
                "radius_sq": r,
                "l2_upper": l2_high,
                "l2_upper_how": l2_how,
                "failure_prob": l2_failure,
            },
            failure_prob=l2_failure,
        )
    )
    best_upper = min(float(upper_block.value), r * l2_high)
    certified_upper = block_certified or l2_bound is Bound.UPPER
    rho_high = min(1.0, float(upper_block.value) / (r * l2_low)) if l2_low > 0 else 1.0
    rho_low = lower / (r * l2_high) if l2_high > 0 else 0.0
    out.append(
        Estimate(
            quantity="rho_op",
            value=rho_high,
            bound=Bound.UPPER if block_certified or rho_high == 1.0 else Bound.ESTIMATE,
            ci_low=min(rho_low, rho_high),
            ci_high=rho_high,
            method="H_op/(R*L2)",
            geometry="spectral",
            settings=settings,
            extra={
                "lower": rho_low,
                "upper": rho_high,
                "lower_bound": l2_bound.value,
                "lower_failure_prob": l2_failure,
                "predicts": "T_Muon/T_SGD",
                "yardstick": YARDSTICK,
                "radius_sq": r,
                "l2_lower": l2_low,
            },
        )
    )
    if linf is not None and geo.mixed:
        h_low, h_high, h_bound = linf
        kappa = max(1.0, 1.0 / geo.min_scale) ** 2
        high = best_upper / (kappa * h_low) if h_low > 0 else math.inf
        low = lower / (kappa * h_high) if h_high > 0 else 0.0
        out.append(
            Estimate(
                quantity="muon_adam_ratio",
                value=high,
                bound=Bound.UPPER if certified_upper and math.isfinite(high) else Bound.ESTIMATE,
                ci_low=min(low, high),
                ci_high=high,
                method="H_op/(kappa*Hinf)",
                geometry="spectral",
                settings=settings,
                extra={
                    "lower": low,
                    "upper": high,
                    "lower_bound": h_bound.value,
                    "kappa": kappa,
                    "predicts": "T_Muon/T_Adam",
                    "yardstick": YARDSTICK,
                },
            )
        )
    return out


def measure_spectral(
    operator: Operator,
    *,
    scale: str = "one",
    matrices: Sequence[str] | None = None,
    polar: str = "svd",
    geometries: Sequence[str] = ("matrices", "mixed"),
    max_hvps: int | None = None,
    restarts: int = 8,
    iterations: int = 100,
    tol: float = 1e-6,
    generator: torch.Generator | int | None = 0,
    reference: Sequence[Estimate] = (),
    l2_failure_prob: float | None = 1e-3,
    l2_hvps: int = 200,
    max_basis: int | None = None,
    basis_dtype: torch.dtype = torch.float64,
) -> list[Estimate]:
    """Measures the spectral geometry: the records listed in the module docstring.

    Args:
        operator: H (anything ``suites.l2.as_operator`` accepts; its layout names the tensors).
        scale: ``"one"`` or ``"rms"``.
        matrices: regexes naming the Muon matrices (None: the default rule).
        polar: ``"svd"`` or ``"newton-schulz"``.
        geometries: ``"matrices"`` and/or ``"mixed"`` (mixed is skipped when every parameter
            is a matrix: it would repeat the matrix part).
        max_hvps: budget of the block upper bound (None: exact when d ≤ 20,000, else sketched).
        restarts, iterations, tol: polar ascent starts, steps and relative stopping tolerance.
        generator: torch.Generator or int seed.
        reference: estimates already measured (ℓ2 and ℓ∞ records) for R·L₂, ρ_op, the Adam ratio.
        l2_failure_prob: δ of the suite's own KW bound on L₂ (None: use the reference only).
        l2_hvps: HVP budget of that Lanczos run.
        max_basis, basis_dtype: its basis memory (``lanczos``).

    Returns:
        The estimates.

    Raises:
        SmoothprobeError: bad options (see ``spectral_geometry``, ``op_upper_bound``).

    Example:
        >>> from smoothprobe import DenseOperator, ParameterLayout
        >>> lay = ParameterLayout.from_shapes([("h.0.fc.weight", (2, 3))])
        >>> op = DenseOperator(torch.eye(6, dtype=torch.float64), layout=lay)
        >>> [(e.quantity, round(e.value, 6)) for e in measure_spectral(op, l2_failure_prob=None)]
        [('op_upper', 2.0), ('op_lower', 2.0)]
    """
    from smoothprobe.suites.l2 import as_operator

    operator = as_operator(operator)
    gen, _ = resolve_generator(generator)
    base = spectral_geometry(operator.layout, scale=scale, matrices=matrices, polar=polar)
    wanted = [g for g in geometries if g != "mixed" or base.rest.numel()]
    l2, linf = l2_ends(reference), linf_ends(reference)
    if l2_failure_prob is not None and (l2 is None or l2[2] is Bound.ESTIMATE):
        l2 = (
            kw_l2_ends(
                operator,
                failure_prob=l2_failure_prob,
                max_hvps=l2_hvps,
                tol=tol,
                generator=gen,
                max_basis=max_basis,
                basis_dtype=basis_dtype,
            )
            or l2
        )
    basis = getattr(getattr(operator, "basis", None), "name", None)
    out: list[Estimate] = []
    upper = None
    if "mixed" in wanted:  # one run gives both geometries' block bounds
        upper = op_upper_bound(operator, base.with_mixed(True), max_hvps=max_hvps, generator=gen)
    elif "matrices" in wanted:
        upper = op_upper_bound(operator, base, max_hvps=max_hvps, generator=gen)
    for name in ("matrices", "mixed"):
        if name not in wanted:
            continue
        geo = base.with_mixed(name == "mixed")
        settings = {**geo.describe(), **({"basis": basis} if basis else {})}
        block = upper.estimates()[0]
        if upper.geometry["mixed"] and not geo.mixed:
            block = _matrix_part(block, upper.matrix_value)
        block = replace(block, settings={**block.settings, **settings})
        lower = op_lower_bound(
            operator, geo, restarts=restarts, iterations=iterations, tol=tol, generator=gen
        ).estimates()[0]
        lower = replace(lower, settings={**lower.settings, **settings})
        out += [block, lower]
        out += _ratio_estimates(geo, float(lower.value), block, l2, linf, settings)
    return out


def _matrix_part(block: Estimate, value: float) -> Estimate:
    """The matrix pairs of a mixed block bound: the matrix part's own bound (same run)."""
    extra = {k: v for k, v in block.extra.items() if k not in ("contributions", "block_names")}
    return replace(block, value=value, extra={**extra, "from_mixed_run": True}, hvps=0)
