"""‖H‖₁,₁ = Σ_ij |H_ij| for a given HVP budget: the default two-phase method and every baseline.

Methods (``estimate_l11(..., method=...)``, an ``L11Method``):

==================  ===========================================================================
``two-phase``       k = round(f·budget) Cauchy probes give row-norm estimates r̂ (geometric mean,
                    streaming); the remaining n = budget − k HVPs are importance-sampled exact
                    columns with p ∝ r̂ mixed with α uniform (defensive), columns with n·p_j ≥ 1
                    taken with certainty. Unbiased; Student-t interval from the column weights.
``cauchy-median``   the seed paper's estimator family: per-row median |(Hc)_i| over k = budget
``cauchy-iqr``      probes, half-IQR (the seed code), or the bias-corrected geometric mean; the
``cauchy-geomean``  error bar is batch means over 8 probe groups, the interval on log scale.
``uniform``         uniform exact columns without replacement (no interval: see NO_INTERVAL).
``stratified``      exact columns stratified by parameter tensor (no interval either).
``exact``           all d columns (d HVPs; needs budget ≥ d): the exact value.
``auto``            ``exact`` when budget ≥ d, else ``two-phase`` (budget ≥ 64, below which
                    its interval undercovers), else ``cauchy-geomean``.
==================  ===========================================================================

Why two-phase is the default (MATH.md §4 and ``bench/l11_budget.py``): Cauchy scale estimators
have per-row relative error π/(2√k) and rows share probes, so the error of their sum stays near
π/(2√k) whatever d is (≈ 6% at 256 probes). Exact columns are unbiased, and with probabilities
close to proportional to the column norms each draw c_j/p_j is nearly constant: its relative
spread is about the proposal's log-error π/(2√k), divided by √n for n draws: the error is
≈ π/(2√(k·n)), ≈ 1% at 256 HVPs, and the interval comes from the same draws. The defensive weight
α bounds every draw by d·c_j/α at a variance cost of ≈ α/n per draw, so α is small (0.02). On the
three example models (d ≈ 2–3k, exact Hessians, 100 seeds, 256 HVPs) the split f = 3/8 gave
0.5–0.9% relative s.d. with 93–99% coverage of the 95% interval; f = 1/2 and 5/8 were within
0.2 points, α = 0.05 was 0.1–0.2 points worse.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.cauchy import DEFAULT_MEMORY_LIMIT, cauchy_sketch
from smoothprobe.estimators.column_sampling import (
    ColumnSample,
    all_columns,
    importance_columns,
    stratified_columns,
    uniform_columns,
)
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint
from smoothprobe.estimators.row_norms import RowNorms
from smoothprobe.estimators.sampling import (
    check_choice,
    check_confidence,
    check_int,
    quantile,
    resolve_generator,
    t_interval,
)
from smoothprobe.linear_operator import as_operator


class L11Method(str, enum.Enum):
    """How ‖H‖₁,₁ is estimated (module docstring)."""

    AUTO = "auto"
    TWO_PHASE = "two-phase"
    CAUCHY_MEDIAN = "cauchy-median"
    CAUCHY_IQR = "cauchy-iqr"
    CAUCHY_GEOMEAN = "cauchy-geomean"
    UNIFORM = "uniform"
    STRATIFIED = "stratified"
    EXACT = "exact"


METHODS = tuple(m.value for m in L11Method)
PHASE1_FRACTION = 0.375
DEFENSIVE = 0.02
# Below 64 HVPs the two-phase interval missed the truth's upper side in 6-7% of runs (32 HVPs,
# 200 seeds, d = 200-300 test matrices) against 2.5% claimed; from 64 it keeps its level
# (tests/test_coverage.py). Smaller budgets are refused; ``auto`` then uses cauchy-geomean.
MIN_TWO_PHASE = 64


@dataclass(frozen=True)
class L11Options:
    """Options shared by every method (see :func:`estimate_l11`)."""

    hvps: int
    confidence: float
    chunk_size: int
    phase1_fraction: float
    defensive: float
    memory_limit: int
    checkpoint: LoopCheckpoint | None = None


@dataclass(frozen=True)
class L11Result:
    """A (1,1)-norm run: the Estimate and the row norms it produced.

    Attributes:
        estimate: quantity ``"l11_norm"``.
        rows: row ℓ1 norms (Cauchy estimates and/or exact rows from evaluated columns).
    """

    estimate: Estimate
    rows: RowNorms

    def estimates(self) -> list[Estimate]:
        """``[estimate]``."""
        return [self.estimate]


@dataclass(frozen=True)
class _Outcome:
    """What a method returns before it is packaged as an Estimate."""

    value: float
    stderr: float | None
    dof: float | None
    bound: Bound
    rows: RowNorms
    certified_lower: float
    settings: dict
    extra: dict
    interval: str = "t"  # "t", "log-t" (multiplicative errors) or "none" (level not kept)


# Why uniform and stratified columns give no interval: Hessian column norms are heavy-tailed
# (row scales span decades), so a sample of n < d columns usually misses the few that carry
# most of ‖H‖₁,₁, and then both the estimate and its standard error are small. Measured on
# 300-dimensional test matrices (tests/test_coverage.py), the Student-t upper limit missed the
# truth in 14% (48 columns) to 11% (150 columns) of runs on a Hessian-like matrix and 36-20% on
# a skewed one, against 2.5% claimed; no data-driven rule can see the columns it did not draw.
NO_INTERVAL = (
    "withheld: column norms are heavy-tailed, so a t interval from n < d sampled columns "
    "does not keep its level; use two-phase for an interval"
)


def _columns_outcome(
    sample: ColumnSample, rows: RowNorms, settings: dict, extra: dict, *, interval: str = "t"
) -> _Outcome:
    rows = rows.with_columns(sample.indices, sample.norms, sample.row_lower)
    bound = Bound.EXACT if sample.exact else Bound.ESTIMATE
    extra = {**extra, "columns": int(sample.indices.numel()), **sample.details}
    return _Outcome(
        sample.total,
        sample.stderr,
        sample.dof,
        bound,
        rows,
        float(sample.norms.sum()),
        settings,
        extra,
        "t" if sample.exact else interval,
    )


def _exact(operator, gen: torch.Generator, opts: L11Options) -> _Outcome:
    sample = all_columns(operator, chunk_size=opts.chunk_size, keep_rows=True)
    return _columns_outcome(
        sample, RowNorms.empty(operator.layout, source="exact"), {"chunk_size": opts.chunk_size}, {}
    )


def _uniform(operator, gen: torch.Generator, opts: L11Options) -> _Outcome:
    sample = uniform_columns(
        operator, max_hvps=opts.hvps, generator=gen, chunk_size=opts.chunk_size, keep_rows=True
    )
    rows = RowNorms.empty(operator.layout, source=f"uniform-columns({opts.hvps})")
    return _columns_outcome(sample, rows, {"chunk_size": opts.chunk_size}, {}, interval="none")


def _stratified(operator, gen: torch.Generator, opts: L11Options) -> _Outcome:
    sample = stratified_columns(
        operator, max_hvps=opts.hvps, generator=gen, chunk_size=opts.chunk_size, keep_rows=True
    )
    rows = RowNorms.empty(operator.layout, source=f"stratified-columns({opts.hvps})")
    return _columns_outcome(sample, rows, {"chunk_size": opts.chunk_size}, {}, interval="none")


def _cauchy(scale: str) -> Callable[..., _Outcome]:
    def run(operator, gen: torch.Generator, opts: L11Options) -> _Outcome:
        sketch = cauchy_sketch(
            operator,
            max_hvps=opts.hvps,
            scale=scale,
            generator=gen,
            chunk_size=opts.chunk_size,
            memory_limit=opts.memory_limit,
            checkpoint=opts.checkpoint,
        )
        g = len(sketch.group_totals)
        rows = RowNorms.from_estimates(
            sketch.row_norms, operator.layout, source=f"cauchy-{scale}(k={opts.hvps})"
        )
        settings = {
            "probes": opts.hvps,
            "scale": scale,
            "chunk_size": opts.chunk_size,
            "groups": g,
            "memory_limit": opts.memory_limit,
        }
        extra = {
            "quantiles": sketch.quantiles,
            "held_bytes": sketch.held_bytes,
            "group_totals": list(sketch.group_totals),
            "ci_method": f"batch-means(g={g}), log scale"
            + (", geomean-proxy" if sketch.quantiles == "histogram" else ""),
        }
        return _Outcome(
            sketch.total,
            sketch.stderr,
            g - 1 if g > 1 else None,
            Bound.ESTIMATE,
            rows,
            0.0,
            settings,
            extra,
            "log-t",
        )

    return run


def phase_split(hvps: int, fraction: float) -> tuple[int, int]:
    """(Cauchy probes k, column draws n) for a two-phase budget: k ≥ 2, n ≥ 3, k + n = hvps."""
    k = min(max(2, round(fraction * hvps)), hvps - 3)
    return k, hvps - k


def _two_phase(operator, gen: torch.Generator, opts: L11Options) -> _Outcome:
    k, n = phase_split(opts.hvps, opts.phase1_fraction)
    sketch = cauchy_sketch(
        operator,
        max_hvps=k,
        scale="geomean",
        generator=gen,
        chunk_size=opts.chunk_size,
        checkpoint=opts.checkpoint,
    )
    sample = importance_columns(
        operator,
        max_hvps=n,
        proposal=sketch.row_norms,
        generator=gen,
        chunk_size=opts.chunk_size,
        defensive=opts.defensive,
        keep_rows=True,
        checkpoint=opts.checkpoint,
    )
    rows = RowNorms.from_estimates(
        sketch.row_norms, operator.layout, source=f"cauchy-geomean(k={k})+columns({n})"
    )
    settings = {
        "phase1_probes": k,
        "column_draws": n,
        "phase1_fraction": opts.phase1_fraction,
        "defensive": opts.defensive,
        "chunk_size": opts.chunk_size,
    }
    return _columns_outcome(sample, rows, settings, {"phase1_estimate": sketch.total})


_RUNNERS: dict[str, Callable[..., _Outcome]] = {
    "two-phase": _two_phase,
    "cauchy-median": _cauchy("median"),
    "cauchy-iqr": _cauchy("iqr"),
    "cauchy-geomean": _cauchy("geomean"),
    "uniform": _uniform,
    "stratified": _stratified,
    "exact": _exact,
}

_MIN_HVPS = {
    "two-phase": MIN_TWO_PHASE,
    "cauchy-median": 1,
    "cauchy-iqr": 1,
    "cauchy-geomean": 2,
    "uniform": 2,
    "stratified": 2,
}


def resolve_method(method: L11Method | str, *, max_hvps: int, d: int) -> str:
    """The concrete method ``auto`` stands for at this budget and dimension (others unchanged).

    Raises:
        SmoothprobeError: for an unknown method or a budget below the method's minimum.
    """
    method = check_choice("(1,1)-norm method", method, L11Method).value
    if method == "auto":
        method = (
            "exact"
            if max_hvps >= d
            else "two-phase"
            if max_hvps >= MIN_TWO_PHASE
            else "cauchy-geomean"
        )
    need = d if method == "exact" else _MIN_HVPS[method]
    if max_hvps < need:
        raise SmoothprobeError(
            f"method {method!r} needs max_hvps >= {need} (d = {d}), got {max_hvps}"
        )
    return method


def estimate_l11(
    operator,
    *,
    method: L11Method | str = L11Method.AUTO,
    max_hvps: int = 256,
    confidence: float = 0.95,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
    phase1_fraction: float = PHASE1_FRACTION,
    defensive: float = DEFENSIVE,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    checkpoint: LoopCheckpoint | None = None,
) -> L11Result:
    """Estimates ‖H‖₁,₁ = Σ_ij |H_ij| within an HVP budget, with a confidence interval.

    Args:
        operator: an Operator or anything ``as_operator`` accepts (a dense tensor, ...).
        method: an ``L11Method`` (module docstring); ``"auto"`` picks the most accurate.
        max_hvps: HVP budget; the run never uses more (``operator.cost.hvps``).
        confidence: level of the interval (``ci_low``, ``ci_high``).
        generator: torch.Generator or int seed (default seed 0); the global RNG is untouched.
        chunk_size: probes per ``matvec`` call; extra memory is O(chunk_size·d) (plus k·d float32
            for exact Cauchy median/IQR below ``memory_limit``).
        phase1_fraction: share of the budget spent on Cauchy probes in ``two-phase``.
        defensive: uniform mixture weight α of the importance sampling in ``two-phase``.
        memory_limit: bytes Cauchy median/IQR may hold for exact quantiles (else streaming).
        checkpoint: saves and resumes the Cauchy geometric-mean sketch and the importance-
            sampled columns (``two-phase``, ``cauchy-geomean``; ``loop_checkpoint``).

    Returns:
        ``L11Result``: the ``"l11_norm"`` Estimate (value, stderr, Student-t interval whose low
        end is never below the certified Σ of the exact columns seen, HVPs used;
        ``extra["l11_per_d"]`` is ‖H‖₁,₁/d, the seed paper code's convention) and the row norms.

    Raises:
        SmoothprobeError: unknown method, a budget below the method's minimum, bad options.

    Example:
        >>> import torch
        >>> H = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> est = estimate_l11(H, max_hvps=64, generator=0).estimate
        >>> est.method, est.ci_low <= 5050.0 <= est.ci_high
        ('two-phase', True)
    """
    operator = as_operator(operator)
    check_int("max_hvps", max_hvps, minimum=1)
    check_int("chunk_size", chunk_size, minimum=1)
    confidence = check_confidence(confidence)
    if not 0 < phase1_fraction < 1:
        raise SmoothprobeError(f"phase1_fraction must lie in (0, 1), got {phase1_fraction}")
    if not 0 < defensive <= 1:
        raise SmoothprobeError(f"defensive must lie in (0, 1], got {defensive}")
    concrete = resolve_method(method, max_hvps=max_hvps, d=operator.d)
    gen, seed = resolve_generator(generator)
    opts = L11Options(
        max_hvps, confidence, chunk_size, phase1_fraction, defensive, memory_limit, checkpoint
    )
    hvps0, grads0 = operator.cost.hvps, operator.cost.gradients
    t0 = time.perf_counter()
    out = _RUNNERS[concrete](operator, gen, opts)
    seconds = time.perf_counter() - t0
    low, high = _interval(out, confidence)
    if low is not None:
        low = max(low, out.certified_lower, 0.0)  # Σ of exact columns seen is a certified floor
    d = operator.d
    withheld = {"interval": NO_INTERVAL, "sample_stderr": out.stderr} if low is None else {}
    estimate = Estimate(
        quantity="l11_norm",
        value=out.value,
        bound=out.bound,
        stderr=None if out.interval == "none" else out.stderr,
        ci_low=low,
        ci_high=high,
        confidence=confidence if low is not None else None,
        hvps=operator.cost.hvps - hvps0,
        gradients=operator.cost.gradients - grads0,
        seconds=seconds,
        seed=seed,
        method=concrete,
        geometry="linf",
        settings={"hvps": max_hvps, "method": L11Method(method).value, **out.settings},
        extra={
            "l11_per_d": out.value / d,
            "d": d,
            "certified_lower": out.certified_lower,
            "dof": out.dof,
            **out.extra,
            **withheld,
        },
    )
    return L11Result(estimate, out.rows)


def _interval(out: _Outcome, confidence: float) -> tuple[float | None, float | None]:
    """The outcome's interval: Student t, t on the log scale, or none.

    Cauchy totals have multiplicative, right-skewed errors (a product of k^(1/k) powers for the
    geometric mean; order statistics for median/IQR), so their batch-means interval is taken
    on log T: T·exp(∓ t·se/T). On the linear scale the upper end missed 4-5.5% of the time
    against 2.5% claimed (tests/test_coverage.py).
    """
    if out.interval == "none" or out.stderr is None:
        return None, None
    if out.interval == "log-t" and out.value > 0:
        half = quantile(0.5 + confidence / 2, out.dof) * out.stderr / out.value
        return out.value * math.exp(-half), out.value * math.exp(half)
    return t_interval(out.value, out.stderr, out.dof, confidence)
