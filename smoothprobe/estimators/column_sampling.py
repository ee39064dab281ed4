"""‖H‖₁,₁ by column sampling: ‖H‖₁,₁ = Σ_j c_j with c_j = ‖H e_j‖₁, one exact HVP per column.

Three unbiased designs, each with a standard error and a Student-t interval from the samples:

- ``uniform``: n distinct columns drawn without replacement; T̂ = d·mean(c), with the finite
  population correction in the variance.
- ``stratified``: strata = parameter tensors (layout slots; tiny neighbours merged until every
  stratum gets ≥ 2 columns), proportional allocation, without replacement inside each stratum;
  T̂ = Σ_h N_h·mean_h(c), variance Σ_h N_h²(1 − n_h/N_h)s_h²/n_h, Satterthwaite degrees of freedom.
- ``importance``: probabilities p_j from a proposal q_j ≥ 0 (e.g. Cauchy row-norm estimates r̂_j;
  by symmetry column and row norms agree) mixed with the uniform law, p = (1 − α)q/Σq + α/d, so
  that c_j/p_j ≤ d·c_j/α stays bounded (defensive mixture). Columns with n·p_j ≥ 1 are taken with
  certainty (computed exactly, no variance); the rest are drawn iid from p restricted to them and
  the Hansen–Hurwitz mean of c_j/p_j estimates their sum. A column drawn twice costs one HVP.

All HVPs go through ``operator.matvec`` in blocks of ``chunk_size`` unit vectors. Besides the
total, a run returns the exact column norms it saw (exact row norms, by symmetry) and optionally
Σ_{j∈S}|H_{:,j}|, a certified lower bound on every row norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint, resumed, saved
from smoothprobe.estimators.sampling import check_int, chunks, resolve_generator, unit_block

COLUMNS_LOOP = "columns"  # evaluate_columns' name in a loop checkpoint


@dataclass(frozen=True)
class ColumnSample:
    """Result of a column-sampling run.

    Attributes:
        total: estimate of ‖H‖₁,₁ (exact when ``exact``).
        stderr: standard error (0 when exact; None when it cannot be estimated).
        dof: degrees of freedom for the t interval (None: normal).
        scheme: ``"uniform"``, ``"stratified"``, ``"importance"`` or ``"all"``.
        indices: (n,) distinct columns evaluated exactly.
        norms: (n,) float64 exact ‖H e_j‖₁ for ``indices`` (= exact row norms r_j).
        row_lower: (d,) float64 Σ_{j∈S}|H_ij| ≤ r_i, or None when not requested.
        exact: True when every column was evaluated.
        hvps: HVPs used.
        details: scheme-specific diagnostics (JSON-ready).
    """

    total: float
    stderr: float | None
    dof: float | None
    scheme: str
    indices: torch.Tensor
    norms: torch.Tensor
    row_lower: torch.Tensor | None
    exact: bool
    hvps: int
    details: dict


def evaluate_columns(
    operator,
    indices: torch.Tensor,
    *,
    chunk_size: int = 32,
    row_lower: torch.Tensor | None = None,
    checkpoint: LoopCheckpoint | None = None,
) -> torch.Tensor:
    """Exact ℓ1 norms ‖H e_j‖₁ of the given columns (one HVP each, batched).

    Args:
        operator: symmetric operator.
        indices: (n,) column indices (evaluated as given; pass distinct ones).
        chunk_size: unit vectors per ``matvec`` call.
        row_lower: optional (d,) float64 accumulator; Σ_j |H_{:,j}| is added to it in place.
        checkpoint: saves the norms so far and ``row_lower`` as it goes (loop ``"columns"``)
            and resumes them when the same indices were being evaluated (``loop_checkpoint``).

    Returns:
        (n,) float64 norms.
    """
    out = torch.empty(indices.numel(), dtype=torch.float64)
    start = _resume_columns(checkpoint, indices, out, row_lower)
    operator.cost.hvps += start  # done before: the estimate counts them
    for a, b in [(start + a, start + b) for a, b in chunks(indices.numel() - start, chunk_size)]:
        columns = operator.matvec(unit_block(indices[a:b], operator))
        for i, column in enumerate(columns):  # float64 temporaries of one column at a time
            column = column.to(torch.float64).abs_()
            out[a + i] = column.sum().cpu()
            if row_lower is not None:
                row_lower += column.to(row_lower.device)
        del columns  # release the block before the next matvec
        state = partial(_columns_state, b, indices, out, row_lower)
        saved(checkpoint, COLUMNS_LOOP, state, done=b == indices.numel())
    return out


def _columns_state(done: int, indices, out, row_lower) -> dict:
    return {"position": done, "indices": indices.cpu(), "norms": out[:done].clone(),
            "row_lower": row_lower}  # fmt: skip


def _resume_columns(checkpoint, indices, out, row_lower) -> int:
    """Columns already evaluated for these ``indices`` (their norms and row sums restored)."""
    found = resumed(checkpoint, COLUMNS_LOOP)
    if found is None or not torch.equal(found["indices"], indices.cpu()):
        return 0
    if (found["row_lower"] is None) != (row_lower is None):
        return 0
    done = int(found["position"])
    out[:done] = found["norms"]
    if row_lower is not None:
        row_lower.copy_(found["row_lower"])
    return done


def distinct_uniform(generator: torch.Generator, population: int, n: int) -> torch.Tensor:
    """n distinct indices of range(population), a simple random sample without replacement."""
    if n >= population:
        return torch.arange(population)
    if 4 * n > population:
        return torch.randperm(population, generator=generator)[:n]
    chosen: dict[int, None] = {}
    while len(chosen) < n:
        draws = torch.randint(population, (2 * (n - len(chosen)),), generator=generator)
        for j in draws.tolist():
            chosen.setdefault(j, None)
            if len(chosen) == n:
                break
    return torch.tensor(list(chosen), dtype=torch.long)


def sample_from(generator: torch.Generator, probabilities: torch.Tensor, n: int) -> torch.Tensor:
    """n iid draws from a discrete law (inverse CDF; no category limit, O(d) memory)."""
    cdf = probabilities.to(torch.float64).cumsum(0)
    u = torch.rand(n, dtype=torch.float64, generator=generator) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probabilities.numel() - 1)


def _row_accumulator(operator, keep_rows: bool) -> torch.Tensor | None:
    """The (d,) float64 sum Σ_j |H_{:,j}| of the evaluated columns, on the operator's device:
    on a GPU each column is added where it was computed, never copied to the host."""
    if not keep_rows:
        return None
    return torch.zeros(operator.d, dtype=torch.float64, device=operator.device)


def all_columns(operator, *, chunk_size: int = 32, keep_rows: bool = False) -> ColumnSample:
    """Evaluates every column: the exact ‖H‖₁,₁ in d HVPs (O(chunk·d) memory)."""
    d = operator.d
    indices = torch.arange(d)
    row_lower = _row_accumulator(operator, keep_rows)
    norms = evaluate_columns(operator, indices, chunk_size=chunk_size, row_lower=row_lower)
    return ColumnSample(
        float(norms.sum()), 0.0, None, "all", indices, norms, row_lower, True, d, {}
    )


def uniform_columns(
    operator,
    *,
    max_hvps: int,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
    keep_rows: bool = False,
) -> ColumnSample:
    """Uniform column sampling without replacement.

    Args:
        operator: symmetric operator.
        max_hvps: number of columns n (≥ 2).
        generator: torch.Generator or int seed (default 0).
        chunk_size: unit vectors per ``matvec``.
        keep_rows: also accumulate the certified row lower bounds.

    Returns:
        ColumnSample with T̂ = d·mean(c).
    """
    n = check_int("max_hvps", max_hvps, minimum=2)
    generator, _ = resolve_generator(generator)
    d = operator.d
    if n >= d:
        return all_columns(operator, chunk_size=chunk_size, keep_rows=keep_rows)
    indices = distinct_uniform(generator, d, n)
    row_lower = _row_accumulator(operator, keep_rows)
    norms = evaluate_columns(operator, indices, chunk_size=chunk_size, row_lower=row_lower)
    total = d * float(norms.mean())
    stderr = d * float(norms.std()) * ((1 - n / d) / n) ** 0.5
    return ColumnSample(total, stderr, n - 1, "uniform", indices, norms, row_lower, False, n, {})


def slot_strata(layout) -> list[tuple[int, int]]:
    """Strata (start, stop) from a parameter layout: one per non-empty tensor, in flat order."""
    return [(s.start, s.stop) for s in layout.slots if s.stop > s.start]


def merge_strata(strata: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Merges the smallest stratum into a neighbour until every stratum can get min(2, size)."""
    strata = list(strata)
    while len(strata) > 1 and sum(min(2, b - a) for a, b in strata) > n:
        i = min(range(len(strata)), key=lambda h: strata[h][1] - strata[h][0])
        if i == 0:
            j = 1
        elif i == len(strata) - 1:
            j = i - 1
        else:
            left, right = strata[i - 1], strata[i + 1]
            j = i - 1 if left[1] - left[0] <= right[1] - right[0] else i + 1
        lo, hi = min(i, j), max(i, j)
        strata[lo : hi + 1] = [(strata[lo][0], strata[hi][1])]
    return strata


def proportional_allocation(sizes: list[int], n: int) -> list[int]:
    """Allocates n samples ∝ sizes, each in [min(2, size), size] (largest remainder)."""
    alloc = [min(2, s) for s in sizes]
    left = n - sum(alloc)
    while left > 0:
        room = [s - a for s, a in zip(sizes, alloc, strict=True)]
        weight = sum(s for s, r in zip(sizes, room, strict=True) if r > 0)
        if weight == 0:
            break
        shares = [left * s / weight if r > 0 else 0.0 for s, r in zip(sizes, room, strict=True)]
        add = [min(int(x), r) for x, r in zip(shares, room, strict=True)]
        if sum(add) == 0:
            order = sorted(
                range(len(sizes)), key=lambda h: shares[h] - int(shares[h]), reverse=True
            )
            for h in order:
                if room[h] > 0 and left > 0:
                    alloc[h] += 1
                    left -= 1
            continue
        alloc = [a + x for a, x in zip(alloc, add, strict=True)]
        left -= sum(add)
    return alloc


def stratified_columns(
    operator,
    *,
    max_hvps: int,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
    strata: list[tuple[int, int]] | None = None,
    keep_rows: bool = False,
) -> ColumnSample:
    """Column sampling stratified by parameter tensor (or given strata), proportional allocation.

    Args:
        operator: symmetric operator (its ``layout`` gives the default strata).
        max_hvps: total columns n (≥ 2).
        generator: torch.Generator or int seed (default 0).
        chunk_size: unit vectors per ``matvec``.
        strata: optional contiguous (start, stop) strata covering range(d).
        keep_rows: also accumulate the certified row lower bounds.

    Returns:
        ColumnSample with T̂ = Σ_h N_h·mean_h(c).
    """
    n = check_int("max_hvps", max_hvps, minimum=2)
    generator, _ = resolve_generator(generator)
    d = operator.d
    if n >= d:
        return all_columns(operator, chunk_size=chunk_size, keep_rows=keep_rows)
    strata = strata if strata is not None else slot_strata(operator.layout)
    strata = merge_strata([(a, b) for a, b in strata if b > a], n)
    sizes = [b - a for a, b in strata]
    alloc = proportional_allocation(sizes, n)
    picks = [
        distinct_uniform(generator, size, m) + a
        for (a, _), size, m in zip(strata, sizes, alloc, strict=True)
    ]
    indices = torch.cat(picks)
    row_lower = _row_accumulator(operator, keep_rows)
    norms = evaluate_columns(operator, indices, chunk_size=chunk_size, row_lower=row_lower)
    total, var_terms, pos = 0.0, [], 0
    for size, m in zip(sizes, alloc, strict=True):
        c = norms[pos : pos + m]
        pos += m
        total += size * float(c.mean())
        if m < size:
            var_terms.append((size**2 * (1 - m / size) * float(c.var()) / m, m - 1))
    variance = sum(v for v, _ in var_terms)
    denom = sum(v * v / f for v, f in var_terms if f > 0)
    dof = variance**2 / denom if denom > 0 else None
    details = {"strata": len(strata), "allocation": alloc}
    return ColumnSample(
        total,
        variance**0.5,
        dof,
        "stratified",
        indices,
        norms,
        row_lower,
        False,
        int(indices.numel()),
        details,
    )


def defensive_probabilities(proposal: torch.Tensor, defensive: float) -> torch.Tensor:
    """p = (1 − α)·q/Σq + α/d (the uniform law when q is zero or not finite)."""
    q = proposal.to(torch.float64).clamp(min=0)
    d = q.numel()
    total = float(q.sum())
    if not (total > 0 and torch.isfinite(q).all()):
        return torch.full((d,), 1.0 / d, dtype=torch.float64)
    return (1 - defensive) * q / total + defensive / d


def certainty_set(p: torch.Tensor, n: int) -> torch.Tensor:
    """Columns whose expected draw count (n − |C|)·p_j/P_rest reaches 1, largest first.

    Leaves at least 2 draws for the sampled part so its variance can be estimated.
    """
    order = torch.argsort(p, descending=True)
    sorted_p = p[order]
    rest = float(p.sum())
    taken = 0
    while n - taken - 1 >= 2 and taken < p.numel():
        pj = float(sorted_p[taken])
        if (n - taken) * pj / rest < 1:
            break
        rest -= pj
        taken += 1
    return order[:taken]


def importance_columns(
    operator,
    *,
    max_hvps: int,
    proposal: torch.Tensor,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
    defensive: float = 0.1,
    keep_rows: bool = False,
    checkpoint: LoopCheckpoint | None = None,
) -> ColumnSample:
    """Importance-sampled columns with a defensive mixture and a certainty set.

    Args:
        operator: symmetric operator.
        max_hvps: draws n (≥ 3); distinct columns (HVPs) ≤ n.
        proposal: (d,) nonnegative weights, ideally ∝ the column norms (e.g. Cauchy r̂_j).
        generator: torch.Generator or int seed (default 0).
        chunk_size: unit vectors per ``matvec``.
        defensive: uniform mixture weight α ∈ (0, 1].
        keep_rows: also accumulate the certified row lower bounds.
        checkpoint: resumes the column evaluations (``evaluate_columns``); the draws are
            replayed from the generator, so a resumed run takes the same columns.

    Returns:
        ColumnSample with T̂ = Σ_{j∈C} c_j + mean_s c_{J_s}/p'_{J_s}.

    Raises:
        SmoothprobeError: for a proposal of the wrong shape or α outside (0, 1].
    """
    n = check_int("max_hvps", max_hvps, minimum=3)
    generator, _ = resolve_generator(generator)
    d = operator.d
    if proposal.shape != (d,):
        raise SmoothprobeError(f"proposal must have shape ({d},), got {tuple(proposal.shape)}")
    if not 0 < defensive <= 1:
        raise SmoothprobeError(f"defensive must lie in (0, 1], got {defensive}")
    if n >= d:
        return all_columns(operator, chunk_size=chunk_size, keep_rows=keep_rows)
    p = defensive_probabilities(proposal.cpu(), defensive)
    sure = certainty_set(p, n)
    rest_p = p  # in place: p is not needed again (one float64 d-vector less at 124M: 1 GB)
    rest_p[sure] = 0
    rest_p /= rest_p.sum()
    m = n - sure.numel()
    draws = sample_from(generator, rest_p, m)
    unique, inverse = torch.unique(draws, return_inverse=True)
    indices = torch.cat([sure, unique])
    row_lower = _row_accumulator(operator, keep_rows)
    norms = evaluate_columns(
        operator, indices, chunk_size=chunk_size, row_lower=row_lower, checkpoint=checkpoint
    )
    sure_total = float(norms[: sure.numel()].sum())
    weights = norms[sure.numel() :][inverse] / rest_p[draws]
    total = sure_total + float(weights.mean())
    stderr = float(weights.std()) / m**0.5
    details = {
        "certain": int(sure.numel()),
        "draws": m,
        "distinct": int(unique.numel()),
        "defensive": defensive,
    }
    return ColumnSample(
        total,
        stderr,
        m - 1,
        "importance",
        indices,
        norms,
        row_lower,
        False,
        int(indices.numel()),
        details,
    )
