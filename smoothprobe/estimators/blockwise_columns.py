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
from smoothprobe.linear_operator import Operator, apply_in_chunks
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
        # At most three (n, d) arrays are alive at once (probes, images, next images): at
        # d = 124M each is 4 probes × 0.5 GB, next to the gradient graph.
        # images stay in the compute dtype: the products are exact in it, and float64 copies
        # would double the sketch's memory
        y = apply_in_chunks(operator, probes, chunk_size=chunk, dtype=None)
        whp = {}
        for i, b in enumerate(group):
            yb = y[i * p : (i + 1) * p]
            whp[b] = alpha * math.sqrt(2 / math.pi) * partition.block_norms(yb).max(0).values
            r = torch.linalg.qr(gauss[b].T).R  # G = Q R  ⇒  (H Q)ᵀ = R⁻ᵀ (H G)ᵀ
            yb.copy_(torch.linalg.solve_triangular(r.T, yb, upper=False))
        for _ in range(q):
            z = apply_in_chunks(operator, y, chunk_size=chunk, dtype=None)
            del y
            probes.zero_()
            for i, b in enumerate(group):
                probes[i * p : (i + 1) * p, coords[b]] = _orth_rows(
                    z[i * p : (i + 1) * p, coords[b]]
                ).to(operator.dtype)
            del z
            y = apply_in_chunks(operator, probes, chunk_size=chunk, dtype=None)
        for i, b in enumerate(group):
            acc.add(b, block_spectral_norms(y[i * p : (i + 1) * p], partition), whp[b])


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
