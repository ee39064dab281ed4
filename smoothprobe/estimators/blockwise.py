"""Blockwise smoothness H(Φ) = max over ‖x‖_Φ ≤ 1, ‖y‖_Φ ≤ 1 of yᵀHx (MATH.md §2, §4).

With ‖x‖_Φ = max_b ‖x_b‖₂/√d_b, two estimators bracket H(Φ):

**Upper bound** ``block_upper_bound``: U(Φ) = Σ_{b,b'} √(d_b d_b') ‖H_bb'‖₂ ≥ H(Φ). Probes
supported on block b' give H_{:,b'}·probe, i.e. every H_bb'·probe at once, so the work is organised
by block column:

- ``exact``: every block column from unit probes (d HVPs in all); each ‖H_bb'‖₂ is an exact
  SVD, so U(Φ) is exact and a *certified* upper bound on H(Φ) (``Bound.UPPER``).
- ``sketch``: narrow block columns (d_b' ≤ p(2q+1), where exact is no dearer) exactly; wider ones by
  randomized subspace iteration with p probes and q power steps on H_{:,b'} (p(2q+1) HVPs). A
  sketched σ_max(H_bb'Q) (Q orthonormal) is a certified *lower* estimate of ‖H_bb'‖₂, so the sum
  is ≤ U(Φ) and is **not** a certified bound on H(Φ): it is reported as ``Bound.ESTIMATE``.
  No matrix-free method certifies an upper bound on a norm without touching every column, so
  instead ``upper_whp`` gives a probabilistic bound from the first Gaussian pass (Halko,
  Martinsson, Tropp 2011, Lemma 4.1: ‖A‖₂ ≤ α√(2/π)·max_i ‖Aω_i‖ with probability ≥ 1 − α^(−p)),
  with α set so that all sketched pairs hold together with probability ≥ 1 − δ (loose: α√(2/π)
  is 5–50 for p = 4–8).
- ``row-frobenius`` (cheap, for many blocks; cost independent of B): by Cauchy–Schwarz and
  ‖·‖₂ ≤ ‖·‖_F, U(Φ) ≤ √d · Σ_b √d_b ‖H_{b,:}‖_F, and ‖H_{b,:}‖_F² = Σ_{i∈b} (H²)_ii is estimated
  without bias by E‖(Hz)_b‖² over Rademacher probes z. A statistical estimate of a looser upper
  bound (``Bound.ESTIMATE``, jackknife standard error); exact for no Φ in general, up to √d loose.
- ``auto``: ``exact`` when its d HVPs are within budget (default 20,000) and the widest block
  column fits in memory, else ``sketch`` when within budget, else ``row-frobenius``.

Singletons: U = ‖H‖₁,₁ (every block column is one unit probe: exact). One block: U = d·‖H‖₂.

**Lower bound** ``block_lower_bound``: alternating ascent. Given x, the best y is
y_b = √d_b (Hx)_b/‖(Hx)_b‖₂ with value ‖Hx‖_Φ* = Σ_b √d_b ‖(Hx)_b‖₂; by symmetry of H the next x
is the same map of Hy, so x_{t+1} = N(Hx_t) and ‖Hx_t‖_Φ* never decreases. Every reported value
is yᵀHx at an explicit feasible pair computed from an HVP, re-evaluated as xᵀ(Hy) with one more
HVP (the smaller is kept): a certified lower bound (``Bound.LOWER``). Like sign ascent, the
search is local (on strongly diagonally dominant H nearly every start is a fixed point), so the
bound is certified, not tight; restarts and ``init`` vectors help. Singletons: sign ascent (a
lower bound on H∞). One block: power iteration (→ d·‖H‖₂). Restarts run batched through one
``matvec``.

This module holds U(Φ) (``block_upper_bound``, the method choice) and re-exports the rest:
``blockwise_columns`` computes the block-column norms, ``blockwise_lower`` the ascent.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.blockwise_columns import (
    PROBE_MEMORY_ENTRIES,
    _Accumulator,
    _check,
    _chunk_for,
    _exact_columns,
    _row_frobenius,
    _sketch_columns,
    block_spectral_norms,
)
from smoothprobe.estimators.blockwise_lower import (
    BlockLowerResult,
    block_lower_bound,
    dual_norm,
    project_to_sphere,
)
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint, resumed, saved
from smoothprobe.estimators.sampling import (
    check_choice,
    check_int,
    resolve_generator,
)
from smoothprobe.linear_operator import Operator, as_operator
from smoothprobe.partitions import Partition

__all__ = [
    "DEFAULT_MAX_HVPS",
    "EXACT_MEMORY_ENTRIES",
    "PROBE_MEMORY_ENTRIES",
    "BlockLowerResult",
    "BlockUpperResult",
    "UpperMethod",
    "block_lower_bound",
    "block_spectral_norms",
    "block_upper_bound",
    "dual_norm",
    "project_to_sphere",
]


class UpperMethod(str, enum.Enum):
    """How U(Φ) is computed (module docstring)."""

    AUTO = "auto"
    EXACT = "exact"
    SKETCH = "sketch"
    ROW_FROBENIUS = "row-frobenius"


EXACT_MEMORY_ENTRIES = 1 << 26  # d × (widest block column) entries kept at once in exact mode
DEFAULT_MAX_HVPS = 20_000  # the "auto" budget when none is given
UPPER_LOOP = "upper"  # block_upper_bound's name in a loop checkpoint


@dataclass(frozen=True, eq=False)
class BlockUpperResult:
    """U(Φ) with its per-block pieces.

    Attributes:
        value: the reported value (U(Φ) exact, its sketched estimate, or the row-Frobenius bound).
        certified: True iff ``value`` is a certified upper bound on H(Φ) (every block exact).
        method: ``"exact"``, ``"sketch"`` or ``"row-frobenius"``.
        partition: partition name.
        sizes: (B,) block sizes d_b.
        norms: (B, B) ‖H_bb'‖₂ (column b' exact or a lower estimate), None when B is too large
            or the method is ``row-frobenius``.
        contributions: (B,) per row block b, Σ_b' √(d_b d_b')‖H_bb'‖₂ (row-Frobenius: its term).
        upper_whp: probabilistic upper bound on U(Φ) (sketch only; equals value when certified).
        failure_probability: probability that ``upper_whp`` is below U(Φ).
        stderr: standard error (row-frobenius only).
        exact_columns, sketched_columns: block columns resolved each way.
        hvps, seconds, seed: cost and seed.
        settings: options used.
    """

    value: float
    certified: bool
    method: str
    partition: str
    sizes: torch.Tensor
    norms: torch.Tensor | None
    contributions: torch.Tensor
    upper_whp: float | None = None
    failure_probability: float | None = None
    stderr: float | None = None
    exact_columns: int = 0
    sketched_columns: int = 0
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def contribution_matrix(self) -> torch.Tensor:
        """(B, B) heatmap of √(d_b d_b')‖H_bb'‖₂ (sums to ``value`` for the block-column methods).

        Raises:
            SmoothprobeError: the norms were not kept (too many blocks, or row-frobenius).
        """
        if self.norms is None:
            raise SmoothprobeError(
                "block norms were not kept; rerun with a larger "
                "max_matrix_blocks and a block-column method"
            )
        root = self.sizes.to(torch.float64).sqrt()
        return root[:, None] * self.norms * root[None, :]

    def estimates(self) -> list[Estimate]:
        """``[self.estimate()]``."""
        return [self.estimate()]

    def estimate(self, *, matrix_limit: int = 64, settings: dict | None = None) -> Estimate:
        """The ``block_upper`` Estimate (the contribution matrix in ``extra`` when B ≤ limit)."""
        extra: dict[str, Any] = {
            "certified": self.certified,
            "exact_columns": self.exact_columns,
            "sketched_columns": self.sketched_columns,
            "upper_whp": self.upper_whp,
            "upper_whp_failure_probability": self.failure_probability,
            "what": _WHAT[self.method],
        }
        b = self.sizes.numel()
        if self.norms is not None and b <= matrix_limit:
            extra["contributions"] = self.contribution_matrix().tolist()
        elif b <= 16 * matrix_limit:
            extra["block_contributions"] = self.contributions.tolist()
        ci = {}
        if not self.certified and self.upper_whp is not None and self.failure_probability:
            # [value, upper_whp] ∋ U(Φ) with probability ≥ 1 − δ; written as an equal-tailed
            # interval of level 1 − 2δ so that the upper end's miscoverage reads as δ.
            ci = {
                "ci_low": self.value,
                "ci_high": self.upper_whp,
                "confidence": 1 - 2 * self.failure_probability,
            }
        return Estimate(
            quantity="block_upper",
            value=self.value,
            **ci,
            bound=Bound.UPPER if self.certified else Bound.ESTIMATE,
            stderr=self.stderr,
            hvps=self.hvps,
            gradients=self.gradients,
            seconds=self.seconds,
            seed=self.seed,
            method=f"block-columns:{self.method}"
            if self.method != "row-frobenius"
            else "row-frobenius",
            geometry="block",
            settings={"partition": self.partition, **self.settings, **(settings or {})},
            extra=extra,
        )


_WHAT = {
    "exact": "U(Phi) = sum sqrt(d_b d_b') ||H_bb'||_2, every block exact: certified upper bound",
    "sketch": "U(Phi) with wide blocks' ||H_bb'||_2 underestimated by subspace iteration: "
    "an estimate (<= U), not a certified bound; upper_whp bounds U with high probability",
    "row-frobenius": "sqrt(d) sum_b sqrt(d_b) ||H_b,:||_F >= U(Phi) >= H(Phi), the Frobenius "
    "norms estimated by Rademacher probes (statistical)",
}


def _exact_fits(partition: Partition) -> bool:
    return partition.d * int(partition.sizes.max()) <= EXACT_MEMORY_ENTRIES


def _costs(partition: Partition, *, exact_width: int, frobenius_probes: int) -> dict[str, int]:
    """HVPs each method spends on this partition."""
    return {
        "exact": partition.d,
        "sketch": int(torch.clamp(partition.sizes, max=exact_width).sum()),
        "row-frobenius": frobenius_probes,
    }


def _choose(method, partition, *, max_hvps, costs: dict[str, int]) -> str:
    method = check_choice("upper method", method, UpperMethod).value
    budget = DEFAULT_MAX_HVPS if max_hvps is None else max_hvps
    if method == "auto":
        if costs["exact"] <= budget and _exact_fits(partition):
            return "exact"
        method = "sketch" if costs["sketch"] <= budget else "row-frobenius"
    if max_hvps is not None and costs[method] > max_hvps:
        raise SmoothprobeError(
            f"U(Φ) by {method!r} needs {costs[method]:,} HVPs on {partition.name!r}, more than "
            f"max_hvps={max_hvps:,}; raise the budget or use a cheaper method"
        )
    return method


def _upper_state(done: list[int], acc, gen: torch.Generator, hvps: int) -> dict:
    return {
        "position": hvps,  # HVPs done, as in every loop's state
        "hvps": hvps,
        "blocks_done": list(done),
        "norms": acc.norms,
        "contrib": acc.contrib,
        "whp": acc.whp,
        "generator": gen.get_state(),
    }


def _restore_upper(checkpoint, operator, acc, gen: torch.Generator) -> list[int]:
    """[exact, sketched] block columns already done (their norms put back into ``acc``), with
    the generator where it was; the HVPs they took are counted again."""
    found = resumed(checkpoint, UPPER_LOOP)
    if found is None or (found["norms"] is None) != (acc.norms is None):
        return [0, 0]
    acc.norms, acc.contrib, acc.whp = found["norms"], found["contrib"], found["whp"]
    gen.set_state(found["generator"])
    done = [int(n) for n in found["blocks_done"]]
    operator.cost.hvps += int(found["hvps"])
    return done


def block_upper_bound(
    operator: Operator,
    partition: Partition,
    *,
    method: str = "auto",
    max_hvps: int | None = None,
    sketch: int = 4,
    iterations: int = 2,
    frobenius_probes: int = 32,
    failure_probability: float = 1e-3,
    chunk_size: int = 64,
    max_matrix_blocks: int = 2048,
    generator: torch.Generator | int | None = None,
    checkpoint: LoopCheckpoint | None = None,
) -> BlockUpperResult:
    """U(Φ) = Σ_{b,b'} √(d_b d_b')‖H_bb'‖₂ ≥ H(Φ), exact, sketched or by the row-Frobenius bound.

    Args:
        operator: H.
        partition: Φ.
        method: ``"auto"``, ``"exact"`` (d HVPs, certified), ``"sketch"`` or ``"row-frobenius"``
            (see the module docstring for what each value is).
        max_hvps: HVP budget: ``"auto"`` picks the best method within it (None:
            ``DEFAULT_MAX_HVPS``); a given method that needs more raises.
        sketch: probes p per wide block column (sketch).
        iterations: power steps q per wide block column (sketch).
        frobenius_probes: Rademacher probes (row-frobenius).
        failure_probability: δ for ``upper_whp`` (sketch).
        chunk_size: probes per ``matvec`` call.
        max_matrix_blocks: keep the (B, B) norm matrix when B ≤ this.
        generator: torch.Generator or seed (None: seed 0).
        checkpoint: saves the block columns done (their norms and the generator state) as it
            goes and resumes them (loop ``"upper"``, ``loop_checkpoint``); the grouping of
            block columns into products may differ, the result does not.

    Returns:
        A BlockUpperResult (``.estimates()`` gives the ``block_upper`` Estimate).

    Raises:
        SmoothprobeError: unknown method, d mismatch, bad sketch size, a method over budget, or
            ``exact`` on a block column too wide to hold in memory.
    """
    operator = as_operator(operator)
    _check(operator, partition)
    check_int("chunk_size", chunk_size, minimum=1)
    if sketch < 1 or iterations < 0 or frobenius_probes < 1:
        raise SmoothprobeError("sketch and frobenius_probes must be ≥ 1, iterations ≥ 0")
    gen, seed = resolve_generator(generator)
    exact_width = sketch * (2 * iterations + 1)
    chunk = _chunk_for(operator.d, chunk_size)
    costs = _costs(partition, exact_width=exact_width, frobenius_probes=frobenius_probes)
    chosen = _choose(method, partition, max_hvps=max_hvps, costs=costs)
    settings = {
        "method": chosen,
        "sketch": sketch,
        "iterations": iterations,
        "frobenius_probes": frobenius_probes,
        "max_hvps": max_hvps,
    }
    start, (h0, g0) = time.perf_counter(), operator.cost.snapshot()
    sizes = partition.sizes.cpu()

    def finish(**kw) -> BlockUpperResult:
        h1, g1 = operator.cost.snapshot()
        return BlockUpperResult(
            method=chosen,
            partition=partition.name,
            sizes=sizes,
            hvps=h1 - h0,
            gradients=g1 - g0,
            seconds=time.perf_counter() - start,
            seed=seed,
            settings=settings,
            **kw,
        )

    if chosen == "row-frobenius":
        value, stderr, contrib = _row_frobenius(
            operator, partition, probes=frobenius_probes, chunk=chunk, gen=gen
        )
        return finish(
            value=value, certified=False, norms=None, contributions=contrib, stderr=stderr
        )
    if chosen == "exact" and not _exact_fits(partition):
        raise SmoothprobeError(
            f"exact block norms need d × {int(sizes.max()):,} entries at once; "
            "use method='sketch' or a finer partition"
        )
    acc = _Accumulator(partition, keep_matrix=partition.num_blocks <= max_matrix_blocks)
    all_blocks = list(range(partition.num_blocks))
    if chosen == "exact":
        narrow, wide = all_blocks, []
    else:
        narrow = [b for b in all_blocks if int(sizes[b]) <= exact_width]
        wide = [b for b in all_blocks if int(sizes[b]) > exact_width]
    done = _restore_upper(checkpoint, operator, acc, gen)
    narrow_done, wide_done = done

    def saving(kind: int):
        def after(n: int) -> None:
            done[kind] = n + (narrow_done, wide_done)[kind]
            finished = done == [len(narrow), len(wide)]
            state = partial(_upper_state, done, acc, gen, operator.cost.hvps - h0)
            saved(checkpoint, UPPER_LOOP, state, done=finished)

        return after

    _exact_columns(operator, partition, narrow[narrow_done:], chunk, acc, after=saving(0))
    alpha = (max(1, len(wide) * partition.num_blocks) / failure_probability) ** (1 / sketch)
    if wide[wide_done:]:
        _sketch_columns(
            operator,
            partition,
            wide[wide_done:],
            p=sketch,
            q=iterations,
            chunk=chunk,
            gen=gen,
            alpha=alpha,
            acc=acc,
            after=saving(1),
        )
    value = float(acc.contrib.sum())
    return finish(
        value=value,
        certified=not wide,
        norms=acc.norms,
        contributions=acc.contrib,
        upper_whp=float(acc.whp.sum()) if wide else value,
        failure_probability=failure_probability if wide else 0.0,
        exact_columns=len(narrow),
        sketched_columns=len(wide),
    )
