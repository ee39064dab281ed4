"""Block-column norms ‖H_bb'‖₂ for the upper bound U(Φ) (``blockwise``, MATH.md §4).

A probe supported on block b' gives H_{:,b'}·probe, every H_bb'·probe at once, so the work is
organised by block column: exactly from unit probes (``_exact_columns``), by randomized subspace
iteration (``_sketch_columns``), or bounded through row Frobenius norms estimated by Rademacher
probes (``_row_frobenius``). ``_Accumulator`` sums them into U(Φ) and its per-block pieces.
"""

from __future__ import annotations

import math

import torch

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimators.sampling import gaussian, rademacher
from smoothprobe.linear_operator import Operator
from smoothprobe.partitions import Partition

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


GATHER_ENTRIES = 1 << 24  # float64 entries a norm computation copies at once (128 MiB)


def block_spectral_norms(
    rows: torch.Tensor, partition: Partition, *, gather_entries: int = GATHER_ENTRIES
) -> torch.Tensor:
    """σ_max of every row-block of a block column, given as rows.

    Small inputs are gathered by block size and solved in batches; from ``gather_entries``
    float64 entries on, every block's w × w Gram matrix is summed over chunks of its
    coordinates, so the float64 copies stay bounded whatever d is.

    Args:
        rows: (w, d); column j of the block column H_{:,b'}Q is ``rows[j]``.
        partition: Φ.
        gather_entries: float64 entries copied at once.

    Returns:
        (B,) float64: ‖(rows[:, coords_b])‖₂ for every block b (= ‖H_bb'Q‖₂).
    """
    if rows.shape[0] == 1:
        return partition.block_norms(rows)[0]
    if rows.numel() > gather_entries:
        return _streamed_spectral_norms(rows, partition, gather_entries)
    rows = rows.to(torch.float64)
    out = torch.zeros(partition.num_blocks, dtype=torch.float64, device=rows.device)
    for s, ids, coords in partition.size_groups:
        m = rows[:, coords.to(rows.device)].permute(1, 0, 2)  # (n_s, w, s)
        if s == 1:
            out[ids.to(rows.device)] = torch.linalg.vector_norm(m, dim=(1, 2))
        else:
            out[ids.to(rows.device)] = _sigma_max(m)
    return out


def _streamed_spectral_norms(
    rows: torch.Tensor, partition: Partition, entries: int
) -> torch.Tensor:
    """``block_spectral_norms`` through per-block w × w Gram matrices summed over chunks."""
    w = rows.shape[0]
    step = max(1, entries // w)
    grams = torch.zeros(partition.num_blocks, w, w, dtype=torch.float64, device=rows.device)
    for b in range(partition.num_blocks):
        idx = partition.block_indices(b).to(rows.device)
        for a in range(0, idx.numel(), step):
            part = rows[:, idx[a : a + step]].to(torch.float64)
            grams[b] += part @ part.T
    grams = (grams + grams.mT) / 2
    return torch.linalg.eigvalsh(grams)[..., -1].clamp(min=0).sqrt()


def _sigma_max(m: torch.Tensor) -> torch.Tensor:
    """Largest singular value of a batch (n, a, b): √λ_max of the smaller Gram matrix.

    eigvalsh of the Gram matrix is several times faster than an SVD, and λ_max(AᵀA) = σ_max²
    keeps full relative accuracy for the largest singular value.
    """
    gram = m.mT @ m if m.shape[-1] <= m.shape[-2] else m @ m.mT
    gram = (gram + gram.mT) / 2
    return torch.linalg.eigvalsh(gram)[..., -1].clamp(min=0).sqrt()


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


def _images(operator, coords, factors, chunk, out=None) -> torch.Tensor:
    """H·v for the probes v of some block columns, built ``chunk`` at a time.

    Probe j of block column i is ``factors[i][j]`` on the coordinates ``coords[i]`` and zero
    elsewhere, so only one chunk of dense probes exists at once.

    Returns:
        (n, d) in the compute dtype (written into ``out`` when given), n = Σ_i len(factors[i]).
    """
    rows = [(c, f) for c, fs in zip(coords, factors, strict=True) for f in fs]
    if out is None:
        out = torch.empty(len(rows), operator.d, dtype=operator.dtype, device=operator.device)
    for a in range(0, len(rows), chunk):
        part = rows[a : a + chunk]
        probes = torch.zeros(len(part), operator.d, dtype=operator.dtype, device=operator.device)
        for j, (c, f) in enumerate(part):
            probes[j, c] = f.to(operator.dtype)
        out[a : a + len(part)] = operator.matvec(probes)
        del probes
    return out


def _exact_columns(operator, partition, blocks, chunk, acc: _Accumulator, after=None) -> None:
    """Block columns from unit probes: rows j of the answer are H e_j = H_{:,j}.
    ``after(n)`` is called when the first n of ``blocks`` are done."""
    sizes = partition.sizes.tolist()
    widths = [sizes[b] for b in blocks]
    done = 0
    for group in _batches(blocks, widths, chunk):
        coords = [partition.block_indices(b).to(operator.device) for b in group]
        units = [torch.eye(c.numel(), dtype=operator.dtype, device=operator.device) for c in coords]
        rows = _images(operator, coords, units, chunk)
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
        done += len(group)
        if after is not None:
            after(done)


def _orthonormalize(rows: torch.Tensor, *, entries: int = GATHER_ENTRIES) -> torch.Tensor:
    """Makes the rows of a float64 (p, s) matrix orthonormal in place; returns the p × p map T.

    T is built from the p × p Gram matrix (Λ^{-1/2}Vᵀ, twice for full accuracy), so no copy of
    the rows is made; directions of a numerically rank-deficient matrix become zero rows. The
    new rows are T · (old rows), and so are their images under H.
    """
    total = torch.eye(rows.shape[0], dtype=torch.float64, device=rows.device)
    for _ in range(2):
        gram = torch.zeros_like(total)
        step = max(1, entries // rows.shape[0])
        for a in range(0, rows.shape[1], step):
            part = rows[:, a : a + step]
            gram += part @ part.T
        evals, evecs = torch.linalg.eigh((gram + gram.T) / 2)
        keep = evals > rows.shape[0] * torch.finfo(torch.float64).eps * evals.max().clamp(min=0)
        scale = torch.where(keep, evals.clamp(min=1e-300).rsqrt(), torch.zeros_like(evals))
        step_map = scale[:, None] * evecs.T
        _left_multiply(step_map, rows, entries=entries)
        total = step_map @ total
    return total


def _sketch_columns(operator, partition, blocks, *, p, q, chunk, gen, alpha, acc, after=None):
    """Randomized subspace iteration on each wide block column H_{:,b'} (p(2q+1) HVPs each).
    ``after(n)`` is called when the first n of ``blocks`` are done.

    Memory: the group's images H_{:,b'}Q (n × d, compute dtype; n = p when ``chunk`` ≤ p), one
    chunk of probes and products, and the float64 factors Q (p × d_b'), orthonormalized in place.
    """
    dev = operator.device
    done = 0
    for group in _batches(blocks, [p] * len(blocks), max(chunk, p)):
        coords = [partition.block_indices(b).to(dev) for b in group]
        factors = [gaussian(p, c.numel(), generator=gen, device=dev) for c in coords]
        y = _images(operator, coords, factors, chunk)
        whp = []
        for i, g in enumerate(factors):
            yb = y[i * p : (i + 1) * p]
            whp.append(alpha * math.sqrt(2 / math.pi) * partition.block_norms(yb).max(0).values)
            _left_multiply(_orthonormalize(g), yb)  # Q = T G  ⇒  H Q = T (H G)
        del factors
        for _ in range(q):
            factors = _block_rows(operator, y, coords, p, chunk)
            for f in factors:
                _orthonormalize(f)
            _images(operator, coords, factors, chunk, out=y)
            del factors
        for i, b in enumerate(group):
            acc.add(b, block_spectral_norms(y[i * p : (i + 1) * p], partition), whp[i])
        del y
        done += len(group)
        if after is not None:
            after(done)


def _left_multiply(m: torch.Tensor, rows: torch.Tensor, *, entries: int = GATHER_ENTRIES) -> None:
    """rows ← m · rows in place for a small float64 matrix m, in float64 over column chunks."""
    step = max(1, entries // rows.shape[0])
    for a in range(0, rows.shape[1], step):
        rows[:, a : a + step] = (m @ rows[:, a : a + step].to(torch.float64)).to(rows.dtype)


def _block_rows(operator, y, coords, p, chunk) -> list[torch.Tensor]:
    """(H y_j) restricted to its own block column's coordinates: one (p, d_b') per block."""
    out = [torch.empty(p, c.numel(), dtype=torch.float64, device=y.device) for c in coords]
    for a in range(0, y.shape[0], chunk):
        prod = operator.matvec(y[a : a + chunk])
        for j in range(prod.shape[0]):
            i, k = divmod(a + j, p)
            out[i][k] = prod[j, coords[i]]
        del prod
    return out


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
