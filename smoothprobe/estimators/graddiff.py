"""Sampled gradient differences: smoothness over a ball without second derivatives (MATH.md §4).

For a geometry (norm ‖·‖, dual ‖·‖_*, see :mod:`smoothprobe.geometries`) and radius r, draw
seeded perturbations δ_j and record

    ρ_j(r) = ‖∇L(θ+δ_j) − ∇L(θ)‖_* / ‖δ_j‖.

**Perturbations.** Directions v_j are drawn once per call and shared by all radii (so a sweep
shows each direction's ratio converging), δ_j = r·v_j:

- ``radius_mode="absolute"``: v_j is the geometry's unit draw, ‖v_j‖ = 1, so ‖δ_j‖ = r:
  ℓ2: r·(uniform unit vector); ℓ∞: r·(random signs); Φ: per block r·√d_b·(uniform unit)_b.
- ``radius_mode="relative"``: every coordinate i of tensor t is scaled by that tensor's RMS
  value c_t = ‖θ_t‖₂/√n_t: v_j = c ⊙ (unit draw · s), with s = √d for ℓ2 and 1 otherwise (so the
  draw has entries of magnitude ≈ 1). Then |δ_i| ≈ r·c_t, i.e. ‖δ_t‖₂ = r‖θ_t‖₂ per tensor
  (exactly for ℓ∞ and for Φ-blocks inside one tensor, in mean square for ℓ2): r is a relative
  perturbation size, e.g. 1e-3. Tensors that are exactly zero are not perturbed.

The denominator is the norm of the perturbation actually realized in the compute dtype,
‖fl(θ+δ_j) − θ‖, so every ratio is the exact quotient for a pair of points.

**What the max bounds.** For a C² loss and a convex set B ∋ θ, θ+δ_j, the mean value theorem gives
ρ_j ≤ sup_{x∈B} ‖∇²L(x)‖_{‖·‖→‖·‖_*} = Lip(∇L; B). So ``graddiff_max`` is a lower bound
(``Bound.LOWER``, up to floating-point round-off in the gradients) on the smoothness constant of
L over the ball B = {x : ‖x − θ‖ ≤ r} (relative mode: the ball of the c-weighted norm
‖(x−θ)/c‖ ≤ r·s), the constant the theory takes a supremum of. It is *not* a bound on the
constant at θ alone (it may exceed ‖∇²L(θ)‖ at large r). ``graddiff_mean`` is the mean of ρ over
the direction distribution (``Bound.ESTIMATE`` with a Student-t interval).

**r → 0.** ∇L(θ+rv) − ∇L(θ) = rHv + (r²/2)∇³L[v, v] + O(r³), so
|ρ(r) − ‖Hv‖_*/‖v‖| ≤ (r/2)‖∇³L[v, v]‖_*/‖v‖ + O(r²): with ``hvp=True`` the same directions'
Rayleigh-type values ‖Hv‖_*/‖v‖ from exact HVPs are reported (``hvp_ratio_max``, a certified
lower bound on the local constant ‖∇²L(θ)‖ in that geometry; ``hvp_ratio_mean``), and every
graddiff record carries the largest relative gap to them. Round-off limits small r: the ratio's
absolute error is about eps·‖∇L(θ)‖_*/‖δ‖ (``extra["roundoff"]``).

Example:
    >>> import torch
    >>> from smoothprobe.problem import problem_from_module
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> x, y = torch.randn(16, 3), torch.randn(16, 1)
    >>> problem = problem_from_module(net, torch.nn.functional.mse_loss, (x, y), dtype="float64")
    >>> result = gradient_differences(problem, radii=[1e-1, 1e-3], samples=8)
    >>> sorted({e.quantity for e in result.estimates()})[:2]
    ['graddiff_max', 'graddiff_mean']
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators._batched_gradients import PointGradients
from smoothprobe.estimators.sampling import resolve_generator, sample_mean
from smoothprobe.geometries import Geometry, resolve_geometry
from smoothprobe.layout import ParameterLayout
from smoothprobe.problem import Problem

RADIUS_MODES = ("absolute", "relative")
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


def coordinate_scale(flat: torch.Tensor, layout: ParameterLayout) -> torch.Tensor:
    """Per-coordinate RMS of the tensor each coordinate belongs to, c_i = ‖θ_t‖₂/√n_t.

    Args:
        flat: (d,) parameters (or rotated coordinates of a basis that keeps tensors apart).
        layout: the parameter layout.

    Returns:
        (d,) float64 tensor on ``flat``'s device.
    """
    scale = torch.empty(flat.shape[0], dtype=torch.float64, device=flat.device)
    for slot in layout.slots:
        piece = flat[slot.slice].to(torch.float64)
        scale[slot.slice] = torch.linalg.vector_norm(piece) / math.sqrt(max(slot.numel, 1))
    return scale


@dataclass(frozen=True)
class RadiusSample:
    """The ratios measured at one radius.

    Attributes:
        radius: r.
        ratios: (k,) float64 ρ_j(r).
        step_norms: (k,) float64 ‖δ_j‖ realized in the compute dtype.
        gradients: full-sample gradients this radius used (its k points; the shared ∇L(θ) and
            a vmap verification are counted on the first radius).
        seconds: wall time.
    """

    radius: float
    ratios: torch.Tensor
    step_norms: torch.Tensor
    gradients: int
    seconds: float


@dataclass(frozen=True)
class GradDiffResult:
    """A radius sweep of sampled gradient differences (see the module docstring).

    Attributes:
        geometry: the norm pair.
        radius_mode: ``"absolute"`` or ``"relative"``.
        samples: k, directions per radius (shared by all radii).
        seed: seed of the directions.
        radii: one :class:`RadiusSample` per radius, in the order given.
        hvp_ratios: (k,) ‖Hv_j‖_*/‖v_j‖ with the exact operator, or None.
        hvps: HVPs used for ``hvp_ratios``.
        hvp_seconds: their wall time.
        gradient_mode: ``"vmap"`` or ``"loop"``.
        gradient_dual_norm: ‖∇L(θ)‖_*.
        eps: machine epsilon of the compute dtype.
        basis: basis name (``"identity"`` without a basis).
        unperturbed_fraction: share of coordinates left unperturbed (relative mode, zero tensors).
    """

    geometry: Geometry
    radius_mode: str
    samples: int
    seed: int
    radii: tuple[RadiusSample, ...]
    hvp_ratios: torch.Tensor | None
    hvps: int
    hvp_seconds: float
    gradient_mode: str
    gradient_dual_norm: float
    eps: float
    basis: str = "identity"
    unperturbed_fraction: float = 0.0
    check_error: float | None = field(default=None)

    def _settings(self, radius: float | None) -> dict[str, Any]:
        return {
            "radius": radius,
            "radius_mode": self.radius_mode,
            "geometry": self.geometry.kind,
            "partition": self.geometry.partition,
            "samples": self.samples,
            "basis": self.basis,
            "gradient_mode": self.gradient_mode,
        }

    def estimates(
        self,
        *,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        confidence: float = 0.95,
    ) -> list[Estimate]:
        """Turns the sweep into Estimates.

        Per radius: ``graddiff_max`` (``Bound.LOWER`` on the constant over the ball) and
        ``graddiff_mean`` (``Bound.ESTIMATE``), with quantiles, min and the gap to the HVP
        values in ``extra``. Once per sweep (radius-independent): ``hvp_ratio_max``
        (``Bound.LOWER`` on the local constant at θ) and ``hvp_ratio_mean``.

        Args:
            quantiles: levels in [0, 1] reported in ``extra["quantiles"]``.
            confidence: level of the intervals of the means.

        Returns:
            The estimates.
        """
        out: list[Estimate] = []
        common = dict(seed=self.seed, method="graddiff", geometry=self.geometry.kind)
        for sample in self.radii:
            r = sample.ratios
            extra: dict[str, Any] = {
                "quantiles": {str(q): float(torch.quantile(r, q)) for q in quantiles},
                "min": float(r.min()),
                "max_step_norm": float(sample.step_norms.max()),
                "roundoff": self.eps * self.gradient_dual_norm / float(sample.step_norms.min()),
                "unperturbed_fraction": self.unperturbed_fraction,
            }
            if self.check_error is not None:
                extra["vmap_check_error"] = self.check_error
            if self.hvp_ratios is not None:
                gap = (r - self.hvp_ratios).abs() / self.hvp_ratios.abs().clamp_min(1e-300)
                extra["hvp_gap_max"] = float(gap.max())
                extra["hvp_ratio_mean"] = float(self.hvp_ratios.mean())
            cost = dict(gradients=sample.gradients, seconds=sample.seconds)
            settings = self._settings(sample.radius)
            out.append(
                Estimate(
                    "graddiff_max",
                    float(r.max()),
                    Bound.LOWER,
                    settings=settings,
                    extra=extra,
                    **cost,
                    **common,
                )
            )
            out.append(
                _mean_estimate("graddiff_mean", r, confidence, settings, extra, cost, common)
            )
        if self.hvp_ratios is not None:
            h = self.hvp_ratios
            settings = self._settings(None)
            cost = dict(hvps=self.hvps, seconds=self.hvp_seconds)
            extra = {"min": float(h.min())}
            out.append(
                Estimate(
                    "hvp_ratio_max",
                    float(h.max()),
                    Bound.LOWER,
                    settings=settings,
                    extra=extra,
                    **cost,
                    **common,
                )
            )
            out.append(
                _mean_estimate("hvp_ratio_mean", h, confidence, settings, extra, cost, common)
            )
        return out


def _mean_estimate(quantity, values, confidence, settings, extra, cost, common) -> Estimate:
    if values.numel() < 2:
        return Estimate(
            quantity,
            float(values.mean()),
            Bound.ESTIMATE,
            settings=settings,
            extra=extra,
            **cost,
            **common,
        )
    m = sample_mean(values, confidence=confidence)
    return Estimate(
        quantity,
        m.mean,
        Bound.ESTIMATE,
        stderr=m.stderr,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        confidence=m.confidence,
        settings=settings,
        extra=extra,
        **cost,
        **common,
    )


def _check_radii(radii: float | Sequence[float]) -> tuple[float, ...]:
    values = (radii,) if isinstance(radii, (int, float)) else tuple(radii)
    if not values:
        raise SmoothprobeError("give at least one radius (e.g. 1e-2)", option="radii")
    for r in values:
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise SmoothprobeError(f"radii must be positive finite numbers, got {r!r}")
    return tuple(float(r) for r in values)


def _check_radius_mode(radius_mode: str) -> None:
    if radius_mode not in RADIUS_MODES:
        raise SmoothprobeError(
            f"unknown radius mode {radius_mode!r}: use {' or '.join(RADIUS_MODES)}"
        )


def relative_scale(problem: Problem, basis=None) -> torch.Tensor:
    """The (d,) per-coordinate scale c of ``radius_mode="relative"``, float64 CPU.

    Raises:
        SmoothprobeError: a basis that mixes tensors, or all-zero parameters.
    """
    if basis is not None and getattr(basis, "mixes_tensors", False):
        raise SmoothprobeError(
            f"a relative radius is per tensor, but basis {basis.name} mixes tensors; "
            "use an absolute radius"
        )
    coords = problem.theta if basis is None else basis.from_params(problem.theta)
    scale = coordinate_scale(coords.detach().cpu(), problem.layout)
    if not bool((scale > 0).any()):
        raise SmoothprobeError("a relative radius needs nonzero parameters; use an absolute one")
    return scale


def perturbation_directions(
    problem: Problem,
    geometry: Geometry,
    *,
    samples: int,
    generator: torch.Generator,
    radius_mode: str = "absolute",
    basis=None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next ``samples`` directions v_j (in the basis' coordinates) of the module docstring.

    Rows are drawn one at a time from ``generator``, so drawing k directions in chunks gives the
    same directions as one call: the estimate does not depend on how memory was planned.

    Args:
        scale: the relative mode's c (default: computed by :func:`relative_scale`).

    Returns:
        (samples, d) float64 CPU tensor.

    Raises:
        SmoothprobeError: unknown radius mode; relative mode with all-zero parameters or with a
            basis that mixes tensors.
    """
    _check_radius_mode(radius_mode)
    if radius_mode == "relative" and scale is None:
        scale = relative_scale(problem, basis)
    rows = [geometry.unit_directions(1, problem.d, generator=generator) for _ in range(samples)]
    v = torch.cat(rows)
    if radius_mode == "absolute":
        return v
    return v.mul_(geometry.entry_scale(problem.d) * scale)


@dataclass
class _RadiusTotals:
    """Per-radius results accumulated over chunks of directions."""

    ratios: list[torch.Tensor] = field(default_factory=list)
    step_norms: list[torch.Tensor] = field(default_factory=list)
    gradients: int = 0
    seconds: float = 0.0


def gradient_differences(
    problem: Problem,
    *,
    radii: float | Sequence[float],
    geometry: Any = "l2",
    radius_mode: str = "absolute",
    samples: int = 16,
    generator: torch.Generator | int | None = None,
    hvp: bool = True,
    operator=None,
    basis=None,
    gradient_mode: str = "auto",
    chunk_size: int | None = None,
    max_directions: int | None = None,
) -> GradDiffResult:
    """Sampled gradient-difference ratios at θ for a sweep of radii.

    Args:
        problem: the loss (θ = ``problem.theta``).
        radii: one radius or several (same directions for all).
        geometry: ``"l2"``, ``"linf"``, a Partition, a (d,) label tensor or a Geometry.
        radius_mode: ``"absolute"`` or ``"relative"`` (see the module docstring).
        samples: directions k (≥ 1; ≥ 2 for an error bar on the mean).
        generator: torch.Generator or int seed (default 0); the global RNG is not used.
        hvp: also compute ‖Hv_j‖_*/‖v_j‖ for the same directions with exact HVPs.
        operator: Hessian operator in parameter coordinates (default
            ``problem.hvp_operator()``).
        basis: optional change of basis θ = R x (``smoothprobe.bases``): directions are drawn
            and norms taken in x, so ΔL-gradients are mapped by Rᵀ.
        gradient_mode: ``"auto"`` (vmap, verified, loop fallback), ``"vmap"`` or ``"loop"``.
        chunk_size: at most this many perturbed points per vmapped call.
        max_directions: at most this many directions alive at once (default all ``samples``):
            memory is about 5 × ``max_directions`` × d float64, whatever ``samples`` is; the
            directions, and so the result, do not depend on it.

    Returns:
        The sweep (``.estimates()`` for records).

    Raises:
        SmoothprobeError: invalid radii, samples, mode or geometry.
        NonFiniteError: a perturbed gradient is not finite (radius too large).
    """
    radii = _check_radii(radii)
    if samples < 1:
        raise SmoothprobeError(f"samples must be ≥ 1, got {samples}")
    if max_directions is not None and max_directions < 1:
        raise SmoothprobeError(f"max_directions must be ≥ 1, got {max_directions}")
    _check_radius_mode(radius_mode)
    geo = resolve_geometry(geometry, d=problem.d)
    gen, seed = resolve_generator(generator)
    scale = relative_scale(problem, basis) if radius_mode == "relative" else None
    engine = PointGradients(problem, mode=gradient_mode, chunk_size=chunk_size)
    to_params = (lambda x: x) if basis is None else basis.to_params
    from_params = (lambda g: g) if basis is None else basis.from_params
    op = None
    if hvp:
        op = operator if operator is not None else problem.hvp_operator()

    theta = problem.theta.detach()
    theta64 = theta.to(torch.float64)
    base_grad = from_params(problem.gradient(theta).to(torch.float64))
    totals = [_RadiusTotals() for _ in radii]
    totals[0].gradients = 1  # the shared ∇L(θ)
    untouched = torch.ones(problem.d, dtype=torch.bool)
    hvp_parts: list[torch.Tensor] = []
    hvp_seconds = 0.0
    step = samples if max_directions is None else min(samples, max_directions)
    for first in range(0, samples, step):
        directions = perturbation_directions(
            problem,
            geo,
            samples=min(step, samples - first),
            generator=gen,
            radius_mode=radius_mode,
            basis=basis,
            scale=scale,
        )
        untouched &= (directions == 0).all(dim=0)
        for r, total in zip(radii, totals, strict=True):
            start = time.perf_counter()
            before = engine.evaluations
            ratios, step_norms = _ratios_at(
                r, directions, geo, engine, theta64, base_grad, problem, to_params, from_params
            )
            total.ratios.append(ratios)
            total.step_norms.append(step_norms)
            total.gradients += engine.evaluations - before
            total.seconds += time.perf_counter() - start
        if op is not None:
            start = time.perf_counter()
            products = op.matvec(to_params(directions.to(problem.device)).to(op.dtype))
            hv = from_params(products.to(torch.float64))
            hvp_parts.append(geo.dual_norm(hv).cpu() / geo.norm(directions))
            hvp_seconds += time.perf_counter() - start
        del directions
    out = tuple(
        RadiusSample(r, torch.cat(t.ratios), torch.cat(t.step_norms), t.gradients, t.seconds)
        for r, t in zip(radii, totals, strict=True)
    )
    hvp_ratios = torch.cat(hvp_parts) if hvp_parts else None
    return GradDiffResult(
        geometry=geo,
        radius_mode=radius_mode,
        samples=samples,
        seed=seed,
        radii=out,
        hvp_ratios=hvp_ratios,
        hvps=samples if hvp_ratios is not None else 0,
        hvp_seconds=hvp_seconds,
        gradient_mode=engine.mode,
        gradient_dual_norm=float(geo.dual_norm(base_grad)),
        eps=float(torch.finfo(problem.dtype).eps),
        basis=getattr(basis, "name", "identity"),
        unperturbed_fraction=float(untouched.double().mean()),
        check_error=engine.check_error,
    )


def _ratios_at(r, directions, geo, engine, theta64, base_grad, problem, to_params, from_params):
    """ρ_j(r) and ‖δ_j‖ for one chunk of directions at radius r."""
    params_step = to_params(r * directions.to(problem.device))
    points = (theta64 + params_step).to(problem.dtype)
    del params_step
    realized = from_params(points.to(torch.float64) - theta64)
    step_norms = geo.norm(realized).cpu()
    del realized
    if bool((step_norms == 0).any()):
        raise SmoothprobeError(
            f"radius {r:g} is below the resolution of {problem.dtype} at these parameters "
            "(θ+δ rounds to θ); use a larger radius or float64",
            option="dtype",
        )
    diff = from_params(engine(points).to(torch.float64)).sub_(base_grad)
    return geo.dual_norm(diff).cpu() / step_norms, step_norms
