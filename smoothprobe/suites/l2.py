"""The ℓ2 suite: λ_max, λ_min, ‖H‖₂ and d·‖H‖₂ by Lanczos, plus optional trace, ‖H‖_F², density.

``measure_l2`` is what ``smoothprobe measure --norm l2`` runs, and what a notebook calls with a
dense matrix, a ``Problem`` or any ``Operator``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.frobenius import frobenius_sq
from smoothprobe.estimators.lanczos import lanczos, mixed_start, validate_options
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.estimators.spectral_density import spectral_density
from smoothprobe.estimators.trace import deflated_probes, hutchpp_trace
from smoothprobe.linear_operator import Operator, as_operator

EXTRAS = ("trace", "frobenius", "density")
_ALIASES = {"frobenius_sq": "frobenius", "spectral_density": "density"}


@dataclass(frozen=True)
class L2Result:
    """What one ℓ2 measurement produced.

    Attributes:
        items: ``lambda_max``, ``lambda_min``, ``l2_norm``, ``d_l2`` then the requested extras.
    """

    items: tuple[Estimate, ...]

    def estimates(self) -> list[Estimate]:
        """The Estimates, in the order of ``items``."""
        return list(self.items)


def parse_extras(extras: Iterable[str] | str) -> list[str]:
    """Normalizes extras (names or a comma-separated string) to a sublist of ``EXTRAS``.

    Raises:
        SmoothprobeError: an unknown name.
    """
    names = extras.split(",") if isinstance(extras, str) else list(extras)
    out = []
    for raw in names:
        name = _ALIASES.get(raw.strip(), raw.strip())
        if not name:
            continue
        if name not in EXTRAS:
            raise SmoothprobeError(
                f"unknown extra quantity {raw!r}; choose from {', '.join(EXTRAS)}"
            )
        if name not in out:
            out.append(name)
    return [name for name in EXTRAS if name in out]


def resolve_start(
    operator: Operator, start: torch.Tensor | str | None, generator: torch.Generator
) -> tuple[torch.Tensor | None, str]:
    """Turns ``measure_l2``'s ``start`` into a Lanczos start vector and a label.

    Raises:
        SmoothprobeError: an unknown start name.
    """
    if isinstance(start, torch.Tensor):
        return start, "user"
    if start is None or start == "random":
        return None, "random"
    if start != "gradient":
        raise SmoothprobeError(f"start must be 'gradient', 'random' or a tensor, got {start!r}")
    gradient = getattr(operator, "gradient", None)
    if not callable(gradient):
        return None, "random"
    return mixed_start(gradient(), generator=generator), "gradient+random"


def measure_l2(
    operator: Operator | torch.Tensor | object,
    *,
    tol: float = 1e-6,
    max_hvps: int = 300,
    top_k: int = 1,
    extras: Iterable[str] | str = (),
    criterion: str = "residual",
    trace_hvps: int = 64,
    density_hvps: int = 640,
    density_steps: int = 80,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = 0,
    start: torch.Tensor | str | None = "random",
    chunk_size: int = 16,
    max_basis: int | None = None,
    basis_dtype: torch.dtype = torch.float64,
    failure_prob: float = 1e-3,
    checkpoint=None,
) -> L2Result:
    """Measures the ℓ2 geometry of H: extreme eigenvalues, ‖H‖₂, d·‖H‖₂ and optional extras.

    Lanczos (full re-orthogonalization, float64) converges λ_max, the top-k and λ_min to
    ``tol`` (see ``smoothprobe.estimators.lanczos.lanczos``). Extras:

    - ``"trace"`` and ``"frobenius"`` share ``trace_hvps`` HVPs: tr H = tr(T_m) + E[g⊥ᵀHg⊥] and
      ‖H‖_F² = ‖T_m‖_F² + β_m² + E‖Hg⊥‖², where the exact parts come free from the Lanczos
      basis Q_m (which holds the extreme eigenvectors) and g⊥ = (I − Q_mQ_mᵀ)g are Rademacher
      probes deflated by it (Hutch++ with the Lanczos basis as its sketch).
    - ``"density"``: stochastic Lanczos quadrature with ``density_hvps`` HVPs (start vectors
      of ``density_steps`` steps each); value = estimated fraction of negative eigenvalues,
      grid and density in ``extra``.

    All randomness comes from ``generator``, in that order.

    Args:
        operator: an Operator or anything ``as_operator`` accepts (a symmetric matrix, a scipy
            LinearOperator, a ``Problem``).
        tol: relative tolerance of the Lanczos stopping rule.
        max_hvps: HVP budget of the Lanczos run.
        top_k: number of largest eigenvalues to converge (reported in ``extra["top_values"]``).
        extras: any of ``"trace"``, ``"frobenius"``, ``"density"`` (or one comma-separated
            string).
        criterion: ``"residual"`` (r ≤ tol·|θ|, the default) or ``"gap"`` (Kato–Temple
            estimate ≤ tol·|θ|, fewer HVPs).
        trace_hvps: HVPs of the deflated probes shared by trace and Frobenius estimates (≥ 2).
        density_hvps: HVP budget of the spectral density (≥ ``density_steps``).
        density_steps: Lanczos steps per density start vector.
        confidence: level of the trace/Frobenius intervals.
        generator: generator or int seed (default 0: reproducible).
        start: Lanczos start: ``"random"``/None (default: uniformly random, which is what
            the probabilistic upper ends of λ_max and ‖H‖₂ need), ``"gradient"``
            (g/‖g‖ + z/‖z‖ with the operator's gradient g when it has one, e.g. a ``Problem``'s
            operator, else a random z; about 2 HVPs fewer on network Hessians, see
            ``lanczos.mixed_start``, but no upper end), or a (d,) tensor (no upper end either).
        chunk_size: probes per ``matvec`` call of the trace/Frobenius and density probes
            (Lanczos applies one vector at a time).
        max_basis, basis_dtype: Lanczos basis memory (rows kept, storage dtype; see
            ``lanczos``).
        failure_prob: δ of the probabilistic upper ends.
        checkpoint: a ``LanczosCheckpoint``: the Lanczos run saves its state there and
            resumes from it (``lanczos``).

    Returns:
        ``L2Result`` whose ``.estimates()`` are ``lambda_max``, ``lambda_min``, ``l2_norm``,
        ``d_l2`` then, as requested, ``trace``, ``frobenius_sq``, ``spectral_density``, then
        (random start) the ``Bound.PROB_UPPER`` ends of ``lambda_max``, ``l2_norm`` and
        ``d_l2``.

    Raises:
        SmoothprobeError: invalid options or input.
    """
    wanted = parse_extras(extras)
    op = as_operator(operator)
    generator, _ = resolve_generator(generator)
    validate_options(op, tol=tol, max_hvps=max_hvps, top_k=top_k, which="both", criterion=criterion)
    sums = [name for name in wanted if name in ("trace", "frobenius")]
    gradients0 = op.cost.gradients
    start_vec, label = resolve_start(op, start, generator)
    result = lanczos(
        op,
        tol=tol,
        max_hvps=max_hvps,
        top_k=top_k,
        which="both",
        criterion=criterion,
        generator=generator,
        start=start_vec,
        keep_basis=bool(sums),
        max_basis=max_basis,
        basis_dtype=basis_dtype,
        failure_prob=failure_prob,
        checkpoint=checkpoint,
    )
    gradients = op.cost.gradients - gradients0
    found = [
        replace(e, gradients=gradients, settings={**e.settings, "start": label})
        for e in result.estimates()
    ]
    out = [e for e in found if e.bound is not Bound.PROB_UPPER]
    probabilistic = [e for e in found if e.bound is Bound.PROB_UPPER]  # listed last
    if sums:
        krylov = result.krylov
        shared = deflated_probes(
            op,
            max_hvps=trace_hvps,
            chunk_size=chunk_size,
            generator=generator,
            subspace=(krylov.basis, krylov.images()),
        )
        note = {
            "deflation": "lanczos basis",
            "deflation_rank": result.iterations,
            "deflation_hvps_shared_with": "lambda_max",
        }
        if "trace" in wanted:
            est = hutchpp_trace(op, products=shared, confidence=confidence)
            out.append(replace(est, extra={**est.extra, **note}))
        if "frobenius" in wanted:
            est = frobenius_sq(op, products=shared, confidence=confidence)
            out.append(replace(est, extra={**est.extra, **note}))
    if "density" in wanted:
        out += spectral_density(
            op,
            max_hvps=density_hvps,
            steps=density_steps,
            generator=generator,
            chunk_size=chunk_size,
        ).estimates()
    return L2Result(tuple(out + probabilistic))
