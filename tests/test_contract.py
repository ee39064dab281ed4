"""One contract for every estimator, checked against dense float64 ground truth.

Each entry of ``REGISTRY`` runs one public estimator (or suite) on an operator with a given
generator. The same checks run for all of them:

- the result is frozen and ``.estimates()`` gives finite numbers;
- the HVPs it used stay within its budget and equal the operator's own count;
- the same seed gives the identical result (an int seed and a Generator seeded alike agree),
  another seed gives another result (for randomised estimators);
- the global RNGs (torch, numpy, random) are untouched;
- every number lies where it says it does against the dense answer: exact values equal it,
  certified lower/upper bounds bracket it, statistical intervals contain it.

The signature rule (operator first, keyword-only options, ``generator``/``chunk_size``/``max_hvps``
names) is checked by introspection.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch
from conftest import hessian_like, layout_of, spiked

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.blockwise import block_lower_bound, block_upper_bound
from smoothprobe.estimators.cauchy import cauchy_sketch
from smoothprobe.estimators.column_sampling import (
    importance_columns,
    stratified_columns,
    uniform_columns,
)
from smoothprobe.estimators.frobenius import frobenius_sq
from smoothprobe.estimators.l11 import METHODS, estimate_l11
from smoothprobe.estimators.lanczos import lanczos
from smoothprobe.estimators.power_iteration import power_iteration
from smoothprobe.estimators.sign_ascent import sign_ascent
from smoothprobe.estimators.spectral_density import spectral_density
from smoothprobe.estimators.trace import hutchinson_trace, hutchpp_trace
from smoothprobe.linear_operator import DenseOperator, as_operator
from smoothprobe.partitions import Partition, per_tensor
from smoothprobe.suites.blockwise import measure_blockwise
from smoothprobe.suites.l2 import measure_l2
from smoothprobe.suites.linf import measure_linf

D = 96
BUDGET = 72  # below d: no sampling method may fall back to computing everything


def _matrix() -> torch.Tensor:
    return hessian_like(D, 3) + spiked(D, 4)


def _tensor_partition() -> Partition:
    return per_tensor(layout_of(D))


@dataclass(frozen=True)
class Case:
    """One registry entry.

    Attributes:
        run: ``run(operator, generator)`` → result with ``.estimates()``.
        budget: HVPs the run may use at most.
        randomised: another seed must give another result.
        hvps_of: HVPs the result reports (default: the sum over its estimates).
    """

    run: Callable
    budget: int
    randomised: bool = True
    hvps_of: Callable | None = None


def _estimates(result) -> list[Estimate]:
    """The common contract; Lanczos/power iteration still name it ``to_estimates`` ([scale])."""
    method = getattr(result, "estimates", None) or result.to_estimates
    return method()


def _lanczos_hvps(result) -> int:
    return _estimates(result)[0].hvps


def _l2_suite_hvps(result) -> int:
    by = {e.quantity: e for e in result.estimates()}
    return by["lambda_max"].hvps + by["trace"].hvps


REGISTRY: dict[str, Case] = {
    **{
        f"estimate_l11[{m}]": Case(
            partial(estimate_l11, method=m, max_hvps=D if m == "exact" else BUDGET),
            D if m == "exact" else BUDGET,
            randomised=m != "exact",
        )
        for m in METHODS
    },
    "hutchinson_trace": Case(partial(hutchinson_trace, max_hvps=BUDGET), BUDGET),
    "hutchpp_trace": Case(partial(hutchpp_trace, max_hvps=BUDGET), BUDGET),
    "frobenius_sq[hutch++]": Case(partial(frobenius_sq, max_hvps=BUDGET), BUDGET),
    "frobenius_sq[hutchinson]": Case(
        partial(frobenius_sq, max_hvps=BUDGET, method="hutchinson"), BUDGET
    ),
    "spectral_density": Case(partial(spectral_density, max_hvps=BUDGET, steps=10), BUDGET),
    "sign_ascent": Case(partial(sign_ascent, restarts=4, max_hvps=BUDGET), BUDGET),
    "block_upper_bound[sketch]": Case(
        lambda op, generator: block_upper_bound(
            op, _tensor_partition(), method="sketch", sketch=2, iterations=1, generator=generator
        ),
        D,
    ),
    "block_upper_bound[row-frobenius]": Case(
        lambda op, generator: block_upper_bound(
            op,
            _tensor_partition(),
            method="row-frobenius",
            frobenius_probes=BUDGET,
            max_hvps=BUDGET,
            generator=generator,
        ),
        BUDGET,
    ),
    "block_lower_bound": Case(
        lambda op, generator: block_lower_bound(
            op, _tensor_partition(), restarts=4, max_hvps=BUDGET, generator=generator
        ),
        BUDGET,
    ),
    "measure_l2": Case(
        partial(
            measure_l2,
            max_hvps=BUDGET // 2,
            trace_hvps=BUDGET // 2,
            tol=1e-14,
            extras=("trace", "frobenius"),
        ),
        BUDGET,
        hvps_of=_l2_suite_hvps,
    ),
    "measure_linf": Case(
        partial(measure_linf, max_hvps=24, max_row_hvps=8, restarts=2, ascent_iters=2),
        24 + 8 + 3 * 2 + 1,
    ),
    "measure_blockwise": Case(
        lambda op, generator: measure_blockwise(
            op,
            _tensor_partition(),
            max_hvps=BUDGET,
            restarts=2,
            iterations=5,
            frobenius_probes=16,
            generator=generator,
        ),
        BUDGET,
    ),
    # Lanczos and power iteration keep their own module ([scale] conforms them to the contract).
    "lanczos": Case(partial(lanczos, max_hvps=BUDGET, tol=1e-14), BUDGET, hvps_of=_lanczos_hvps),
    "power_iteration": Case(
        partial(power_iteration, max_hvps=BUDGET, tol=1e-14), BUDGET, hvps_of=_lanczos_hvps
    ),
}


# ----------------------------------------------------------------------------- ground truth


def _h_inf_upper(h: torch.Tensor) -> float:
    return float(h.abs().sum())


def _block_u(h: torch.Tensor, p: Partition) -> float:
    total = 0.0
    for a in range(p.num_blocks):
        ia = p.block_indices(a)
        for b in range(p.num_blocks):
            ib = p.block_indices(b)
            norm = float(torch.linalg.matrix_norm(h[ia][:, ib], ord=2))
            total += math.sqrt(ia.numel() * ib.numel()) * norm
    return total


def truths(h: torch.Tensor) -> dict[str, float]:
    """The dense answer of every quantity an estimator in the registry reports."""
    eigs = torch.linalg.eigvalsh(h)
    l2 = float(eigs.abs().max())
    return {
        "lambda_max": float(eigs[-1]),
        "lambda_min": float(eigs[0]),
        "l2_norm": l2,
        "d_l2": h.shape[0] * l2,
        "trace": float(torch.trace(h)),
        "frobenius_sq": float((h * h).sum()),
        "l11_norm": float(h.abs().sum()),
        "max_row": float(h.abs().sum(1).max()),
        "block_upper": _block_u(h, _tensor_partition()),
        "spectral_density": float((eigs < 0).double().mean()),
    }


# What each certified lower bound may not exceed (its quantity's truth is not computable here,
# but it lies below these): H∞ ≤ ‖H‖₁,₁, H(Φ) ≤ U(Φ).
CEILINGS = {"linf_lower": "l11_norm", "block_lower": "block_upper"}


def check_against_truth(
    est: Estimate, truth: dict[str, float], *, second: Estimate | None = None
) -> None:
    """Exact values equal the truth, bounds bracket it, intervals contain it.

    A statistical interval misses by design at its stated rate (tests/test_coverage.py checks
    that rate over many seeds), so here it must contain the truth in at least one of two
    independent runs (``est`` and ``second``): a method at its level fails with probability
    ≈ (1 − confidence)², a broken one almost surely.
    """
    tol = 1e-9
    if est.quantity in CEILINGS:
        assert est.bound is Bound.LOWER
        assert est.value <= truth[CEILINGS[est.quantity]] * (1 + tol), est
        return
    if est.quantity not in truth:
        return
    t = truth[est.quantity]
    slack = tol * max(abs(t), 1.0)
    if est.bound is Bound.EXACT:
        assert est.value == pytest.approx(t, rel=1e-8, abs=1e-10), est.quantity
    elif est.bound is Bound.LOWER:
        assert est.value <= t + slack, est.quantity
    elif est.bound is Bound.UPPER:
        assert est.value >= t - slack, est.quantity
    if est.extra.get("converged") is False:
        # A residual interval [θ − r, θ + r] holds for *some* eigenvalue, the extreme one only
        # after convergence (issue 10 item 3, owned by the Lanczos/bounds work): not checked.
        return
    if est.ci_low is not None and est.ci_high is not None:
        runs = [est] if est.bound is not Bound.ESTIMATE or second is None else [est, second]
        assert any(e.ci_low - slack <= t <= e.ci_high + slack for e in runs), (
            est.quantity,
            est.method,
        )


def numbers(estimates: list[Estimate]) -> list[float]:
    out = []
    for e in estimates:
        out += [e.value, e.stderr, e.ci_low, e.ci_high, *e.extra.get("restart_values", [])]
    return [math.nan if x is None else float(x) for x in out]


def _rng_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _same_rng(a, b) -> bool:
    return (
        torch.equal(a[0], b[0])
        and all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True))
        and a[2] == b[2]
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_contract(name):
    case = REGISTRY[name]
    h = _matrix()
    op = DenseOperator(h, layout=layout_of(D))
    before = _rng_states()
    result = case.run(op, generator=11)
    assert _same_rng(before, _rng_states()), "an estimator touched the global RNG"
    with pytest.raises(dataclasses.FrozenInstanceError):
        field = dataclasses.fields(result)[0].name
        setattr(result, field, None)
    estimates = _estimates(result)
    assert estimates and all(isinstance(e, Estimate) for e in estimates)
    # finite output
    assert all(math.isfinite(e.value) for e in estimates), name
    assert all(
        x is None or math.isfinite(x) for e in estimates for x in (e.stderr, e.ci_low, e.ci_high)
    )
    # HVPs within budget, and what the result reports is what the operator counted
    assert op.cost.hvps <= case.budget, (op.cost.hvps, case.budget)
    reported = (case.hvps_of or (lambda r: sum(e.hvps for e in _estimates(r))))(result)
    assert reported == op.cost.hvps
    # same seed ⇒ identical result; a Generator seeded alike is the same as the int seed
    again = case.run(
        DenseOperator(h, layout=layout_of(D)), generator=torch.Generator().manual_seed(11)
    )
    np.testing.assert_array_equal(numbers(_estimates(again)), numbers(estimates))
    other = _estimates(case.run(DenseOperator(h, layout=layout_of(D)), generator=12))
    if case.randomised:
        assert numbers(other) != numbers(estimates)
    # the dense answer lies inside every stated interval or bound
    truth = truths(h)
    for est, second in zip(estimates, other, strict=True):
        check_against_truth(est, truth, second=second)


# ----------------------------------------------------------------------------- signatures

PUBLIC = [
    estimate_l11,
    cauchy_sketch,
    uniform_columns,
    stratified_columns,
    importance_columns,
    hutchinson_trace,
    hutchpp_trace,
    frobenius_sq,
    spectral_density,
    sign_ascent,
    block_upper_bound,
    block_lower_bound,
    measure_l2,
    measure_linf,
    measure_blockwise,
]


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_signature_follows_the_contract(fn):
    params = list(inspect.signature(fn).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    rest = [p for p in params[1:] if p.name != "partition"]  # blockwise: Φ is positional too
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), fn.__name__
    names = {p.name: p for p in params}
    assert "generator" in names and names["generator"].default in (0, None)
    assert "chunk_size" in names
    assert "max_hvps" in names
    for banned in ("hvps", "probes", "num_probes", "block_size", "chunk"):
        assert banned not in names, (fn.__name__, banned)


def test_as_operator_accepts_tensors_arrays_and_scipy_operators():
    from scipy.sparse.linalg import aslinearoperator

    h = spiked(30, 1)
    truth = estimate_l11(h, method="exact", max_hvps=30).estimate.value
    for form in (h, h.numpy(), aslinearoperator(h.numpy()), DenseOperator(h)):
        op = as_operator(form)
        assert estimate_l11(op, method="exact", max_hvps=30).estimate.value == pytest.approx(
            truth, rel=1e-12
        )
        assert op.cost.hvps == 30


# Building blocks reached through a registry entry rather than called on their own.
VIA = {
    "cauchy_sketch": "estimate_l11[cauchy-median]",
    "uniform_columns": "estimate_l11[uniform]",
    "stratified_columns": "estimate_l11[stratified]",
    "importance_columns": "estimate_l11[two-phase]",
}


def test_every_estimator_is_in_the_registry():
    """A new public estimator must join the registry (and so the contract)."""
    covered = {n.split("[")[0] for n in REGISTRY}
    for fn in PUBLIC:
        assert fn.__name__ in covered or VIA[fn.__name__] in REGISTRY, fn.__name__
    assert {f"estimate_l11[{m}]" for m in METHODS} <= set(REGISTRY)
