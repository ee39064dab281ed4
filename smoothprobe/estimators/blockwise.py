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
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import (
    check_choice,
    check_int,
    gaussian,
    rademacher,
    resolve_generator,
)
from smoothprobe.linear_operator import Operator, apply_in_chunks, as_operator
from smoothprobe.partitions import Partition


class UpperMethod(str, enum.Enum):
    """How U(Φ) is computed (module docstring)."""

    AUTO = "auto"
    EXACT = "exact"
    SKETCH = "sketch"
    ROW_FROBENIUS = "row-frobenius"


EXACT_MEMORY_ENTRIES = 1 << 26  # d × (widest block column) entries kept at once in exact mode
DEFAULT_MAX_HVPS = 20_000  # the "auto" budget when none is given


PROBE_MEMORY_ENTRIES = 1 << 27  # probe-block entries (k·d) held at once


def _chunk_for(d: int, chunk: int) -> int:
    """Probes per batch: at most ``chunk``, and k·d ≤ PROBE_MEMORY_ENTRIES (at least 1)."""
    return max(1, min(chunk, PROBE_MEMORY_ENTRIES // max(d, 1)))


def _check(operator: Operator, partition: Partition) -> None:
    if partition.d != operator.d:
        raise SmoothprobeError(
            f"partition {partition.name!r} has d={partition.d:,} but the "
            f"operator has d={operator.d:,}; build it from the same layout"
        )


def block_spectral_norms(rows: torch.Tensor, partition: Partition) -> torch.Tensor:
    """σ_max of every row-block of a block column, given as rows.

    Args:
        rows: (w, d); column j of the block column H_{:,b'}Q is ``rows[j]``.
        partition: Φ.

    Returns:
        (B,) float64: ‖(rows[:, coords_b])‖₂ for every block b (= ‖H_bb'Q‖₂).
    """
    rows = rows.to(torch.float64)
    out = torch.zeros(partition.num_blocks, dtype=torch.float64, device=rows.device)
    if rows.shape[0] == 1:
        return partition.block_norms(rows)[0]
    for s, ids, coords in partition.size_groups:
        m = rows[:, coords.to(rows.device)].permute(1, 0, 2)  # (n_s, w, s)
        if s == 1:
            out[ids.to(rows.device)] = torch.linalg.vector_norm(m, dim=(1, 2))
        else:
            out[ids.to(rows.device)] = _sigma_max(m)
    return out


def _sigma_max(m: torch.Tensor) -> torch.Tensor:
    """Largest singular value of a batch (n, a, b): √λ_max of the smaller Gram matrix.

    eigvalsh of the Gram matrix is several times faster than an SVD, and λ_max(AᵀA) = σ_max²
    keeps full relative accuracy for the largest singular value.
    """
    gram = m.mT @ m if m.shape[-1] <= m.shape[-2] else m @ m.mT
    gram = (gram + gram.mT) / 2
    return torch.linalg.eigvalsh(gram)[..., -1].clamp(min=0).sqrt()


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


class _Accumulator:
    """Collects block-column norms into the (B, B) matrix and per-block contributions."""

    def __init__(self, partition: Partition, keep_matrix: bool):
        self.root = partition.sizes.to(torch.float64).sqrt()
        b = partition.num_blocks
        self.norms = torch.zeros(b, b, dtype=torch.float64) if keep_matrix else None
        self.contrib = torch.zeros(b, dtype=torch.float64)
        self.whp = torch.zeros(b, dtype=torch.float64)

    def add(self, column: int, norms: torch.Tensor, whp: torch.Tensor | None = None) -> None:
        norms = norms.cpu()
        scale = self.root * self.root[column]
        self.contrib += scale * norms
        self.whp += scale * (norms if whp is None else torch.maximum(whp.cpu(), norms))
        if self.norms is not None:
            self.norms[:, column] = norms


def _batches(blocks: list[int], widths: list[int], limit: int) -> list[list[int]]:
    """Consecutive groups of blocks whose widths sum to ≤ limit (a wider block goes alone)."""
    out, cur, total = [], [], 0
    for b, w in zip(blocks, widths, strict=True):
        if cur and total + w > limit:
            out.append(cur)
            cur, total = [], 0
        cur.append(b)
        total += w
    if cur:
        out.append(cur)
    return out


def _exact_columns(operator, partition, blocks, chunk, acc: _Accumulator) -> None:
    """Block columns from unit probes: rows j of the answer are H e_j = H_{:,j}."""
    sizes = partition.sizes.tolist()
    widths = [sizes[b] for b in blocks]
    for group in _batches(blocks, widths, chunk):
        coords = torch.cat([partition.block_indices(b) for b in group])
        probes = torch.zeros(
            coords.numel(), operator.d, dtype=operator.dtype, device=operator.device
        )
        probes[torch.arange(coords.numel()), coords.to(operator.device)] = 1
        rows = apply_in_chunks(operator, probes, chunk_size=chunk)
        del probes
        # width-1 columns: ‖H_{b,j}‖₂ is the ℓ2 norm of a column segment, all at once
        seg = partition.block_norms(rows) if all(sizes[b] == 1 for b in group) else None
        pos = 0
        for i, b in enumerate(group):
            w = sizes[b]
            norms = (
                seg[i] if seg is not None else block_spectral_norms(rows[pos : pos + w], partition)
            )
            acc.add(b, norms)
            pos += w


def _orth_rows(m: torch.Tensor) -> torch.Tensor:
    """Rows spanning the row space of m (p, w), orthonormal: Qᵀ of qr(mᵀ)."""
    return torch.linalg.qr(m.T).Q.T


def _sketch_columns(operator, partition, blocks, *, p, q, chunk, gen, alpha, acc) -> None:
    """Randomized subspace iteration on each wide block column H_{:,b'} (p(2q+1) HVPs each)."""
    d, dev = operator.d, operator.device
    coords = {b: partition.block_indices(b).to(dev) for b in blocks}
    for group in _batches(blocks, [p] * len(blocks), max(chunk, p)):
        n = len(group) * p
        probes = torch.zeros(n, d, dtype=operator.dtype, device=dev)
        gauss = {}
        for i, b in enumerate(group):
            gauss[b] = gaussian(p, coords[b].numel(), generator=gen, device=dev)
            probes[i * p : (i + 1) * p, coords[b]] = gauss[b].to(operator.dtype)
        y0 = apply_in_chunks(operator, probes, chunk_size=chunk)
        ys, whp = [], {}
        for i, b in enumerate(group):
            yb = y0[i * p : (i + 1) * p]
            whp[b] = alpha * math.sqrt(2 / math.pi) * partition.block_norms(yb).max(0).values
            r = torch.linalg.qr(gauss[b].T).R  # G = Q R  ⇒  (H Q)ᵀ = R⁻ᵀ (H G)ᵀ
            ys.append(torch.linalg.solve_triangular(r.T, yb, upper=False))
        for _ in range(q):
            z = apply_in_chunks(operator, torch.cat(ys), chunk_size=chunk)
            probes.zero_()
            for i, b in enumerate(group):
                probes[i * p : (i + 1) * p, coords[b]] = _orth_rows(
                    z[i * p : (i + 1) * p, coords[b]]
                ).to(operator.dtype)
            y = apply_in_chunks(operator, probes, chunk_size=chunk)
            ys = [y[i * p : (i + 1) * p] for i in range(len(group))]
        for i, b in enumerate(group):
            acc.add(b, block_spectral_norms(ys[i], partition), whp[b])


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


def _row_frobenius(operator, partition, *, probes, chunk, gen) -> tuple[float, float, torch.Tensor]:
    """√d Σ_b √d_b ‖H_{b,:}‖_F with ‖H_{b,:}‖_F² = E‖(Hz)_b‖² (Rademacher z); jackknife stderr."""
    parts = []
    for start in range(0, probes, chunk):
        k = min(chunk, probes - start)
        z = rademacher(k, operator.d, generator=gen, dtype=operator.dtype, device=operator.device)
        parts.append(partition.block_norms(operator.matvec(z)).square().cpu())
    sq = torch.cat(parts)  # (k, B): ‖(Hz)_b‖² per probe
    root = partition.sizes.to(torch.float64).sqrt()
    scale = math.sqrt(operator.d) * root

    def bound(f2: torch.Tensor) -> torch.Tensor:
        return (scale * f2.clamp(min=0).sqrt()).sum(-1)

    mean = sq.mean(0)
    value = float(bound(mean))
    if probes < 2:
        return value, math.nan, scale * mean.sqrt()
    loo = (probes * mean - sq) / (probes - 1)  # leave-one-out means (k, B)
    vals = bound(loo)
    stderr = float(((probes - 1) / probes * (vals - vals.mean()).square().sum()).sqrt())
    return value, stderr, scale * mean.sqrt()


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
    _exact_columns(operator, partition, narrow, chunk, acc)
    alpha = (max(1, len(wide) * partition.num_blocks) / failure_probability) ** (1 / sketch)
    if wide:
        _sketch_columns(
            operator,
            partition,
            wide,
            p=sketch,
            q=iterations,
            chunk=chunk,
            gen=gen,
            alpha=alpha,
            acc=acc,
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


def dual_norm(vectors: torch.Tensor, partition: Partition) -> torch.Tensor:
    """‖g‖_Φ* = Σ_b √d_b ‖g_b‖₂ for each row of (k, d) (float64, (k,))."""
    root = partition.sizes.to(device=vectors.device, dtype=torch.float64).sqrt()
    return (partition.block_norms(vectors) * root).sum(-1)


def project_to_sphere(vectors: torch.Tensor, partition: Partition) -> torch.Tensor:
    """x_b = √d_b v_b/‖v_b‖₂ per block (0 where v_b = 0): the Φ-ball point maximising ⟨v, x⟩."""
    norms = partition.block_norms(vectors)
    root = partition.sizes.to(device=vectors.device, dtype=torch.float64).sqrt()
    scale = torch.where(
        norms > 0, root / norms.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(norms)
    )
    labels = partition.labels_on(vectors.device)
    dtype = torch.promote_types(vectors.dtype, torch.float32)  # float64 stays float64
    out = vectors.to(dtype) * scale.to(dtype)[:, labels]
    single = partition.sizes.to(vectors.device)[labels] == 1
    out[:, single] = torch.sign(vectors[:, single]).to(dtype)  # exact ±1 (sign ascent)
    return out.to(vectors.dtype)


@dataclass(frozen=True, eq=False)
class BlockLowerResult:
    """Certified lower bound on H(Φ) by alternating ascent.

    Attributes:
        value: best yᵀHx found (x = ``x``, y = the Φ-sphere point of Hx); with the check, the
            smaller of yᵀ(Hx) and xᵀ(Hy).
        x: (d,) the maximising point of the Φ-ball.
        restart_values: (r,) best value of every restart.
        iterations: ascent steps taken (HVPs per restart).
        converged: every restart improved by less than ``tol`` (relative) in its last step.
        partition: partition name.
        hvps, gradients, seconds, seed: cost and seed.
        asymmetry: relative gap between the two evaluations of the best pair.
        settings: options used.
    """

    value: float
    x: torch.Tensor
    restart_values: torch.Tensor
    iterations: int
    converged: bool
    partition: str
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    asymmetry: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def estimates(self) -> list[Estimate]:
        """``[self.estimate()]``."""
        return [self.estimate()]

    def estimate(self, *, settings: dict | None = None) -> Estimate:
        """The ``block_lower`` Estimate (Bound.LOWER)."""
        r = self.restart_values
        extra = {
            "iterations": self.iterations,
            "converged": self.converged,
            "restarts": r.numel(),
            "restart_median": float(r.median()),
            "asymmetry": self.asymmetry,
        }
        if r.numel() <= 64:
            extra["restart_values"] = r.tolist()
        return Estimate(
            quantity="block_lower",
            value=self.value,
            bound=Bound.LOWER,
            hvps=self.hvps,
            gradients=self.gradients,
            seconds=self.seconds,
            seed=self.seed,
            method="alternating-ascent",
            geometry="block",
            settings={"partition": self.partition, **self.settings, **(settings or {})},
            extra=extra,
        )


def block_lower_bound(
    operator: Operator,
    partition: Partition,
    *,
    restarts: int = 8,
    iterations: int = 100,
    tol: float = 1e-7,
    max_hvps: int | None = None,
    init: torch.Tensor | None = None,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 64,
    check: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> BlockLowerResult:
    """Certified lower bound on H(Φ) by alternating ascent, restarts batched.

    Args:
        operator: H.
        partition: Φ.
        restarts: random starting points (Gaussian, projected to the Φ-sphere).
        iterations: maximum ascent steps (one HVP per restart each).
        tol: stop when no restart improves by more than ``tol`` relative.
        max_hvps: HVP budget (None: starts × iterations + 1); the ascent stops before a step
            that would exceed it (the final check's HVP is reserved).
        init: optional extra starting vectors (k, d) or (d,), projected to the Φ-sphere.
        generator: torch.Generator or seed (None: seed 0).
        chunk_size: probes per ``matvec`` call.
        check: re-evaluate the best pair as xᵀ(Hy) with one more HVP and report the smaller.
        callback: called with (step, values (r,)) after every step.

    Returns:
        A BlockLowerResult (``.estimates()`` gives the ``block_lower`` Estimate).

    Raises:
        SmoothprobeError: d mismatch, no starting point, or a budget below one step.
    """
    operator = as_operator(operator)
    _check(operator, partition)
    check_int("chunk_size", chunk_size, minimum=1)
    gen, seed = resolve_generator(generator)
    start, (h0, g0) = time.perf_counter(), operator.cost.snapshot()
    starts = []
    if restarts > 0:
        starts.append(
            gaussian(
                restarts, operator.d, generator=gen, dtype=operator.dtype, device=operator.device
            )
        )
    if init is not None:
        starts.append(init.reshape(-1, operator.d).to(device=operator.device, dtype=operator.dtype))
    if not starts or sum(s.shape[0] for s in starts) == 0:
        raise SmoothprobeError("block lower bound needs restarts ≥ 1 or an init vector")
    x = project_to_sphere(torch.cat(starts), partition)
    budget = x.shape[0] * max(1, iterations) + int(check) if max_hvps is None else max_hvps
    if budget < x.shape[0] + int(check):
        raise SmoothprobeError(
            f"max_hvps={max_hvps} is below one ascent step of the {x.shape[0]} starts"
            f"{' plus the final check' if check else ''}; raise it or use fewer restarts"
        )
    best = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
    top, best_x, best_hx = -math.inf, x[0].clone(), x[0].clone()
    prev, converged, steps = None, False, 0
    for step in range(max(1, iterations)):
        if h0 + x.shape[0] * (step + 1) + int(check) > h0 + budget:
            break
        hx = apply_in_chunks(operator, x, chunk_size=chunk_size, dtype=None)
        vals = dual_norm(hx, partition).cpu()  # = yᵀHx for y = project_to_sphere(Hx)
        steps = step + 1
        best = torch.maximum(best, vals)
        j = int(torch.argmax(vals))
        if float(vals[j]) > top:
            top, best_x, best_hx = float(vals[j]), x[j].clone(), hx[j].to(x.dtype).clone()
        if callback is not None:
            callback(step, vals)
        if prev is not None and bool(((vals - prev) <= tol * vals.abs()).all()):
            converged = True
            break
        prev = vals
        x = project_to_sphere(hx.to(operator.dtype), partition)
    value, asymmetry = top, 0.0
    if check:
        # Re-evaluate the best pair the other way round, xᵀ(Hy) with one more HVP, and keep the
        # smaller: an operator symmetric only up to round-off cannot inflate the bound.
        y = project_to_sphere(best_hx.reshape(1, -1), partition)
        backward = float((best_x.to(torch.float64) * operator.matvec(y)[0].to(torch.float64)).sum())
        asymmetry = abs(value - backward) / max(abs(value), abs(backward), 1e-300)
        value = min(value, backward)
    h1, g1 = operator.cost.snapshot()
    return BlockLowerResult(
        value=value,
        x=best_x.detach(),
        restart_values=best,
        iterations=steps,
        converged=converged,
        partition=partition.name,
        hvps=h1 - h0,
        gradients=g1 - g0,
        seconds=time.perf_counter() - start,
        seed=seed,
        asymmetry=asymmetry,
        settings={
            "restarts": restarts,
            "iterations": iterations,
            "tol": tol,
            "max_hvps": max_hvps,
            "check": check,
            "init": 0 if init is None else int(init.reshape(-1, operator.d).shape[0]),
        },
    )
