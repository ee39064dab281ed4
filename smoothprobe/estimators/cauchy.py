"""‖H‖₁,₁ by Cauchy sketch (the seed paper's reference estimator), streaming in O(d) memory.

With c ∈ R^d of iid standard Cauchy entries, (Hc)_i = Σ_j H_ij c_j ~ Cauchy(0, r_i) where
r_i = ‖H_{i,:}‖₁. Over k probes every row i sees k iid samples x_i1..x_ik of Cauchy(0, r_i); a
scale estimator per row gives r̂_i and ‖H‖₁,₁ ≈ Σ_i r̂_i (MATH.md §4). Three scale estimators:

- ``median``: median_j |x_ij| (the median of |Cauchy(0, r)| is r);
- ``iqr``: half the inter-quartile range of x_i1..x_ik (the seed paper's code; quartiles ±r);
- ``geomean``: cos^k(π/2k)·Π_j |x_ij|^{1/k}, exactly unbiased (E|C|^p = 1/cos(πp/2)).

All three have the same asymptotic per-row relative error π/(2√k); rows share probes, so the
error of the *sum* does not shrink with d (11-13% at k = 64 on a 2.4k-parameter MLP).

Memory. HVPs are produced ``chunk_size`` probes at a time and never all kept:

- ``geomean`` is exactly streaming: two float64 vectors of length d (the running Σ_j log|x_ij|
  and that of the current probe group).
- ``median``/``iqr`` need order statistics of k values per row. When k·d·4 bytes fit
  ``memory_limit`` (default 1 GiB) all values are held as float32 and the quantiles are exact
  (the seed paper's behaviour; at 124M parameters and 50 probes that is 25 GB, so such runs take
  the streaming path). Otherwise a streaming log-histogram is used: the first 8 probes fix a
  per-row pilot scale s_i (their median |x|; 8·d float32, freed afterwards), then every value is
  counted into 33 bins per sign of width 10/33 over log(|x|/s_i) ∈ [−5, 5] (uint8 counts for
  k < 256, int16 below 32768, else int32), and quantiles are read off with the order statistic
  placed uniformly inside its bin. Memory is then ≈ 33 (median) or 66 (IQR) counts per coordinate
  whatever k is, about half of the exact path at the seed paper's k = 50 and constant beyond; the
  result approximates the exact order statistics of the same probes (on the sum: 0.5% s.d. at
  d = 200, ≤ 0.4% at d ≈ 2.7k, bias ≈ 0.1%; per row ≈ 1.5–3%, against statistical errors of
  ≈ 10% on the sum and π/(2√k) ≈ 10–22% per row at k = 256–50; tested), and is flagged
  ``quantiles="histogram"``.

Error bar. The k probes are split into g disjoint groups (default 8, each ≥ 2 probes); the
group totals T_1..T_g are independent estimates from k/g probes, so the standard error of the
k-probe total is ≈ sd(T_g)/√g (batch means; exact for an asymptotically linear estimator), with a
Student-t interval on g − 1 degrees of freedom. In histogram mode the group totals come from the
geometric-mean estimator of the same probes and only their relative spread is used (a proxy:
the three scale estimators share the asymptotic efficiency π/(2√k)).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint, resumed, saved
from smoothprobe.estimators.sampling import (
    cauchy_into,
    check_choice,
    check_int,
    chunks,
    resolve_generator,
)


class CauchyScale(str, enum.Enum):
    """Per-row scale estimator of a Cauchy sketch (module docstring)."""

    MEDIAN = "median"
    IQR = "iqr"
    GEOMEAN = "geomean"


DEFAULT_MEMORY_LIMIT = 1 << 30
PILOT_PROBES = 8
LOOP = "cauchy"  # the sketch's name in a loop checkpoint
HIST_HALF_WIDTH = 5.0  # log-range ±W around the pilot scale
HIST_BINS = 33  # bins per sign over [0, 2W]; odd, so the pilot scale is a bin centre


@dataclass(frozen=True)
class CauchySketch:
    """Per-row ℓ1-norm estimates from k Cauchy probes.

    Attributes:
        row_norms: (d,) float64 estimates r̂_i of r_i = ‖H_{i,:}‖₁.
        scale: ``"median"``, ``"iqr"`` or ``"geomean"``.
        probes: number of probes k (= HVPs used).
        group_totals: totals Σ_i r̂_i from g disjoint probe groups (batch means).
        relative_stderr: standard error of the total divided by the total (None if g < 2).
        quantiles: ``"exact"``, ``"histogram"`` (streaming approximation) or ``"none"`` (geomean).
        held_bytes: bytes of probe values held at once by the scale estimator.
    """

    row_norms: torch.Tensor
    scale: str
    probes: int
    group_totals: tuple[float, ...]
    relative_stderr: float | None
    quantiles: str
    held_bytes: int

    @property
    def total(self) -> float:
        """Σ_i r̂_i, the estimate of ‖H‖₁,₁."""
        return float(self.row_norms.sum())

    @property
    def stderr(self) -> float | None:
        """Standard error of ``total`` from the batch means (None without groups)."""
        return None if self.relative_stderr is None else self.relative_stderr * self.total


def geomean_correction(k: int) -> float:
    """cos^k(π/2k): makes the geometric mean of k |Cauchy(0, r)| samples unbiased for r."""
    return math.cos(math.pi / (2 * k)) ** k


def group_bounds(k: int, groups: int) -> list[tuple[int, int]]:
    """Splits k probes into min(groups, k // 2) contiguous groups of near-equal size (≥ 2 each)."""
    g = max(1, min(groups, k // 2))
    edges = [round(i * k / g) for i in range(g + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _run_probes(
    operator,
    generator: torch.Generator,
    bounds: list[tuple[int, int]],
    chunk_size: int,
    consume: Callable[[int, int, torch.Tensor], None],
    *,
    first: int = 0,
    after: Callable[[int], None] | None = None,
) -> None:
    """Applies Cauchy probes ``first`` … k − 1 ``chunk_size`` at a time and hands H·C to
    ``consume``, then calls ``after(probes done)`` at every chunk boundary.

    ``consume(group, offset, values)`` receives each block split at probe-group edges (views,
    no copy) and must not keep ``values``: the block is released before the next ``matvec``, so
    at most one (chunk_size, d) block of probes and one of HVPs are alive at any time. The
    probes are drawn into one host block reused by every chunk (``_host_block``).
    """
    k = bounds[-1][1]
    host = _host_block(operator, min(chunk_size, max(k - first, 0)))
    for a, b in [(first + a, first + b) for a, b in chunks(k - first, chunk_size)]:
        probes = cauchy_into(host[: b - a], generator=generator).to(operator.device)
        values = operator.matvec(probes)
        del probes
        for g, (start, stop) in enumerate(bounds):
            lo, hi = max(a, start), min(b, stop)
            if lo < hi:
                consume(g, lo, values[lo - a : hi - a])
        del values
        if after is not None:
            after(b)


def _host_block(operator, rows: int) -> torch.Tensor:
    """The (rows, d) host block, in the compute dtype, that every chunk of Cauchy probes is
    drawn into: allocated once, so no chunk pays for fresh pages (at d = 124M, blocks of 4, on
    2 cores: 2.0 s per probe, against 6.4 s for ``cauchy_`` into a fresh float64 block and its
    cast: bench/linf_overhead.py).
    For an operator on a GPU it is pinned memory, copied over for each product; on the host it
    is the probes themselves, which the memory plan counts."""
    pin = operator.device.type == "cuda"
    try:
        return torch.empty(rows, operator.d, dtype=operator.dtype, pin_memory=pin)
    except RuntimeError:  # pinning refused (a locked-memory limit): pageable memory
        return torch.empty(rows, operator.d, dtype=operator.dtype)


def _resumable(
    operator,
    geomean: _GeomeanAccumulator,
    generator: torch.Generator,
    checkpoint: LoopCheckpoint | None,
    k: int,
) -> tuple[int, Callable[[int], None] | None]:
    """Restores a saved geomean sketch (accumulators, generator) and returns (probes already
    done, the callback that saves the state at each chunk boundary)."""
    found = resumed(checkpoint, LOOP)
    if found is not None:
        device = geomean.total.device
        geomean.total, geomean.group = found["total"].to(device), found["group"].to(device)
        geomean.group_totals, geomean.current = list(found["group_totals"]), found["current"]
        generator.set_state(found["generator"])
        operator.cost.hvps += found["position"]  # done before: the estimate counts them
    if checkpoint is None:
        return 0, None

    def state(done: int) -> dict:
        return {
            "position": done,
            "total": geomean.total,
            "group": geomean.group,
            "group_totals": list(geomean.group_totals),
            "current": geomean.current,
            "generator": generator.get_state(),
        }

    def after(done: int) -> None:
        saved(checkpoint, LOOP, lambda: state(done), done=done == k)

    return (0 if found is None else found["position"]), after


def _log_abs(values: torch.Tensor) -> torch.Tensor:
    """log|x| in float64 with one temporary of the block's size (never modifies ``values``)."""
    return values.abs().to(torch.float64).log_()


def _sorted_quantile(sorted_values: torch.Tensor, p: float) -> torch.Tensor:
    """Linear-interpolation quantile (numpy's default) of each column of a sorted (n, m) block."""
    h = p * (sorted_values.shape[0] - 1)
    lo = math.floor(h)
    hi = min(lo + 1, sorted_values.shape[0] - 1)
    x_lo = sorted_values[lo].to(torch.float64)
    return x_lo + (h - lo) * (sorted_values[hi].to(torch.float64) - x_lo)


def _scale_from_values(values: torch.Tensor, scale: str) -> torch.Tensor:
    """Per-column scale estimate of a (n, m) block of samples (median |x| or half-IQR)."""
    if scale == "median":
        return _sorted_quantile(values.abs().sort(dim=0).values, 0.5)
    ordered = values.sort(dim=0).values
    return 0.5 * (_sorted_quantile(ordered, 0.75) - _sorted_quantile(ordered, 0.25))


class _GeomeanAccumulator:
    """Streaming Σ_j log|x_ij| over all probes and per group; 2 float64 vectors."""

    def __init__(self, d: int, bounds: list[tuple[int, int]], device: torch.device):
        self.bounds = bounds
        self.total = torch.zeros(d, dtype=torch.float64, device=device)
        self.group = torch.zeros(d, dtype=torch.float64, device=device)
        self.group_totals: list[float] = []
        self.current = 0

    def add(self, g: int, values: torch.Tensor) -> None:
        if g != self.current:
            self._close_group()
            self.current = g
        for row in values:  # float64 temporaries of one row, whatever the block
            self.group += _log_abs(row)

    def _close_group(self) -> None:
        start, stop = self.bounds[self.current]
        m = stop - start
        if m >= 2:
            total = geomean_correction(m) * torch.exp(self.group / m).sum()
            self.group_totals.append(float(total))
        self.total += self.group
        self.group.zero_()

    def finish(self, k: int) -> torch.Tensor:
        self._close_group()
        return geomean_correction(k) * torch.exp(self.total / k)


class _ExactQuantiles:
    """Holds all k values per row (float32) and takes exact order statistics at the end."""

    def __init__(self, k: int, d: int, device: torch.device):
        self.values = torch.empty(k, d, dtype=torch.float32, device=device)

    def add(self, offset: int, values: torch.Tensor) -> None:
        self.values[offset : offset + values.shape[0]] = values.to(torch.float32)

    def row_norms(self, scale: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        block = self.values if rows is None else self.values[rows[0] : rows[1]]
        d = block.shape[1]
        out = torch.empty(d, dtype=torch.float64, device=block.device)
        step = max(1, (1 << 20) // max(1, block.shape[0]))  # sort temporaries ≤ ~16 MB
        for a, b in chunks(d, step):
            out[a:b] = _scale_from_values(block[:, a:b], scale)
        return out


class _HistogramQuantiles:
    """Streaming quantiles of k values per row from a log-histogram around a pilot scale.

    Coordinates: ℓ = clamp(log|x| − log s_i, −W, W) + W ∈ [0, 2W]; for ``median`` the histogram
    is over ℓ (B bins), for ``iqr`` over z = sign(x)·ℓ ∈ [−2W, 2W] (2B bins), both monotone in
    the statistic of interest. An order statistic is placed uniformly inside its bin.
    """

    def __init__(self, k: int, d: int, scale: str, device: torch.device):
        self.k, self.d, self.scale = k, d, scale
        self.signed = scale == "iqr"
        self.nbins = 2 * HIST_BINS if self.signed else HIST_BINS
        self.low = -2 * HIST_HALF_WIDTH if self.signed else 0.0
        self.width = 2 * HIST_HALF_WIDTH / HIST_BINS
        self.pilot_k = min(PILOT_PROBES, k)
        self.pilot = torch.empty(self.pilot_k, d, dtype=torch.float32, device=device)
        self.seen = 0
        count_dtype = torch.uint8 if k < 256 else torch.int16 if k < 32768 else torch.int32
        self.counts = torch.zeros(d, self.nbins, dtype=count_dtype, device=device)
        self.log_scale: torch.Tensor | None = None
        self.zero_row: torch.Tensor | None = None
        self.held_bytes = self.pilot.numel() * 4 + self.counts.numel() * self.counts.element_size()

    def add(self, values: torch.Tensor) -> None:
        values = values.to(torch.float32)
        if self.log_scale is None:
            take = min(self.pilot_k - self.seen, values.shape[0])
            self.pilot[self.seen : self.seen + take] = values[:take]
            self.seen += take
            values = values[take:]
            if self.seen < self.pilot_k:
                return
            pilot_scale = self.pilot.abs().median(dim=0).values.to(torch.float64)
            self.zero_row = pilot_scale == 0
            self.log_scale = torch.where(self.zero_row, 0.0, pilot_scale.log())
            self._count(self.pilot)
            self.pilot = torch.empty(0, self.d, dtype=torch.float32)
        if values.shape[0]:
            self._count(values)

    def _coordinate(self, values: torch.Tensor) -> torch.Tensor:
        ell = (_log_abs(values) - self.log_scale).clamp(-HIST_HALF_WIDTH, HIST_HALF_WIDTH)
        ell = ell + HIST_HALF_WIDTH
        return torch.sign(values).to(torch.float64) * ell if self.signed else ell

    def _count(self, values: torch.Tensor) -> None:
        z = self._coordinate(values)
        bins = ((z - self.low) / self.width).floor().long().clamp_(0, self.nbins - 1)
        rows = torch.arange(self.d, device=bins.device).expand_as(bins)
        flat = (rows * self.nbins + bins).reshape(-1)
        ones = torch.ones(flat.numel(), dtype=self.counts.dtype, device=flat.device)
        self.counts.view(-1).scatter_add_(0, flat, ones)

    def _order_statistic(self, cum: torch.Tensor, counts: torch.Tensor, j: int) -> torch.Tensor:
        """Coordinate z of the j-th (0-based) order statistic per row, uniform inside its bin."""
        target = torch.full((cum.shape[0], 1), j, dtype=cum.dtype, device=cum.device)
        b = torch.searchsorted(cum, target, right=True).clamp_(max=self.nbins - 1)
        below = torch.where(b > 0, cum.gather(1, (b - 1).clamp(min=0)), torch.zeros_like(b))
        inside = counts.gather(1, b).clamp(min=1)
        frac = (j - below + 0.5).to(torch.float64) / inside.to(torch.float64)
        return (self.low + (b.to(torch.float64) + frac.clamp(0, 1)) * self.width).squeeze(1)

    def _value(self, z: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        magnitude = torch.exp(z.abs() - HIST_HALF_WIDTH + log_scale)
        return torch.sign(z) * magnitude if self.signed else magnitude

    def _quantile(self, cum, counts, log_scale, p: float) -> torch.Tensor:
        h = p * (self.k - 1)
        lo = math.floor(h)
        hi = min(lo + 1, self.k - 1)
        x_lo = self._value(self._order_statistic(cum, counts, lo), log_scale)
        x_hi = self._value(self._order_statistic(cum, counts, hi), log_scale)
        return x_lo + (h - lo) * (x_hi - x_lo)

    def row_norms(self) -> torch.Tensor:
        out = torch.empty(self.d, dtype=torch.float64, device=self.counts.device)
        for a, b in chunks(self.d, 1 << 16):
            counts = self.counts[a:b].long()
            cum = counts.cumsum(dim=1)
            log_scale = self.log_scale[a:b]
            if self.signed:
                q3 = self._quantile(cum, counts, log_scale, 0.75)
                q1 = self._quantile(cum, counts, log_scale, 0.25)
                out[a:b] = 0.5 * (q3 - q1)
            else:
                out[a:b] = self._quantile(cum, counts, log_scale, 0.5)
        return torch.where(self.zero_row, torch.zeros_like(out), out)


def _batch_relative_stderr(group_totals: list[float]) -> float | None:
    """sd(T_g)/√g / mean(T_g): relative standard error of a k-probe total from its g groups."""
    g = len(group_totals)
    if g < 2:
        return None
    t = torch.tensor(group_totals, dtype=torch.float64)
    mean = float(t.mean())
    if mean <= 0:
        return 0.0 if float(t.abs().max()) == 0 else None
    return float(t.std(unbiased=True)) / math.sqrt(g) / mean


def cauchy_sketch(
    operator,
    *,
    max_hvps: int,
    scale: CauchyScale | str = CauchyScale.GEOMEAN,
    generator: torch.Generator | int | None = None,
    chunk_size: int = 32,
    groups: int = 8,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    checkpoint: LoopCheckpoint | None = None,
) -> CauchySketch:
    """Estimates every row ℓ1 norm r_i from k Cauchy probes, streaming over probe chunks.

    Args:
        operator: symmetric operator (``matvec`` on (n, d) blocks).
        max_hvps: number of Cauchy probes k (one HVP each; all are used).
        scale: a ``CauchyScale`` (``"median"``, ``"iqr"`` or ``"geomean"``).
        generator: torch.Generator or int seed (default seed 0); the global RNG is not used.
        chunk_size: probes per ``matvec`` call (bounds the (chunk, d) block held at once).
        groups: number of disjoint probe groups for the batch-means error bar.
        memory_limit: bytes the exact median/IQR may hold (k·d float32 values); above it the
            streaming histogram is used. Ignored for ``geomean``.
        checkpoint: saves the ``geomean`` sketch's accumulators and generator state as it goes
            (loop ``"cauchy"``) and resumes them (``loop_checkpoint``); other scales ignore it.

    Returns:
        The sketch (row estimates, group totals, memory mode).

    Raises:
        SmoothprobeError: for an unknown scale or invalid counts.
    """
    scale = check_choice("Cauchy scale estimator", scale, CauchyScale).value
    k = check_int("max_hvps", max_hvps, minimum=2 if scale == "geomean" else 1)
    check_int("chunk_size", chunk_size, minimum=1)
    check_int("groups", groups, minimum=1)
    generator, _ = resolve_generator(generator)
    d, device = operator.d, operator.device
    bounds = group_bounds(k, groups)
    geomean = _GeomeanAccumulator(d, bounds, device)
    exact = scale != "geomean" and k * d * 4 <= memory_limit
    holder: _ExactQuantiles | _HistogramQuantiles | None = None
    if scale != "geomean":
        holder = (
            _ExactQuantiles(k, d, device) if exact else _HistogramQuantiles(k, d, scale, device)
        )

    def consume(g: int, offset: int, values: torch.Tensor) -> None:
        if scale == "geomean" or not exact:
            geomean.add(g, values)
        if isinstance(holder, _ExactQuantiles):
            holder.add(offset, values)
        elif holder is not None:
            holder.add(values)

    start, after = 0, None
    if scale == "geomean":
        start, after = _resumable(operator, geomean, generator, checkpoint, k)
    _run_probes(operator, generator, bounds, chunk_size, consume, first=start, after=after)
    if scale == "geomean":
        row_norms = geomean.finish(k)
        rel = _batch_relative_stderr(geomean.group_totals)
        return CauchySketch(row_norms, scale, k, tuple(geomean.group_totals), rel, "none", 0)
    if isinstance(holder, _ExactQuantiles):
        row_norms = holder.row_norms(scale)
        totals = [float(holder.row_norms(scale, b).sum()) for b in bounds]
        totals = totals if len(bounds) > 1 else []
        held = holder.values.numel() * 4
        return CauchySketch(
            row_norms, scale, k, tuple(totals), _batch_relative_stderr(totals), "exact", held
        )
    geomean.finish(k)
    rel = _batch_relative_stderr(geomean.group_totals)
    return CauchySketch(
        holder.row_norms(),
        scale,
        k,
        tuple(geomean.group_totals),
        rel,
        "histogram",
        holder.held_bytes,
    )
