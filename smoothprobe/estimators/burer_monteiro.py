"""Rank-r Burer–Monteiro factor of the Grothendieck SDP by the mixing method (MATH.md §7).

H∞ = ‖H‖∞→1 = max_{x,y∈{±1}^d} xᵀHy. Its SDP relaxation over unit-row factors X, Y ∈ R^{d×r}
maximizes f(X, Y) = tr(XᵀHY) = ½·tr(VᵀAV) with V = [X; Y] and A = [[0, H], [H, 0]]. For this
bipartite form the mixing method is exact alternating maximisation: the best X for a fixed Y is
X = rownorm(HY) (each row of X is the unit vector along the same row of HY), and symmetrically
Y = rownorm(HX) — the vector version of sign ascent (r = 1 *is* sign ascent). f never decreases.
Each half step costs r HVPs, applied as one (r, d) block through ``matvec``.

The factor is stored transposed, as (r, d) blocks whose rows are probe vectors; "rownorm" of the
d × r factor is therefore a normalisation of each *column* i of the (r, d) block.

After every half step the state (X, Y, HX, HY) is consistent (the products belong to the current
factors), which is what the dual certificate u_i = ⟨(AV)_i, V_i⟩ needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smoothprobe.estimators.sampling import check_int


@dataclass(frozen=True)
class MixingResult:
    """A Burer–Monteiro factor with its products.

    Attributes:
        x, y: (r, d) factors (float64, unit columns: coordinate i's r-vector has norm 1).
        hx, hy: (r, d) products H·x_j, H·y_j (float64), consistent with x, y.
        value: f = ⟨x, hy⟩ = tr(XᵀHY) (a lower bound on the SDP value, not on H∞).
        history: f after each half step.
        half_steps: half steps taken (the first, x ← rownorm(H·y₀) from the random y₀, included).
        converged: the stopping rule fired before the budget ran out.
        hvps: HVPs used.
    """

    x: torch.Tensor
    y: torch.Tensor
    hx: torch.Tensor
    hy: torch.Tensor
    value: float
    history: tuple[float, ...]
    half_steps: int
    converged: bool
    hvps: int


def _rownorm(images: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Unit r-vector per coordinate along ``images``; keeps ``previous`` where the image is 0."""
    norms = images.norm(dim=0, keepdim=True)
    tiny = norms <= torch.finfo(images.dtype).tiny * 1e6
    return torch.where(tiny, previous, images / torch.where(tiny, 1.0, norms))


def _apply(operator, block: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """H·block (row-wise) in float64, ``chunk_size`` rows per ``matvec`` call."""
    parts = []
    for start in range(0, block.shape[0], chunk_size):
        rows = block[start : start + chunk_size].to(dtype=operator.dtype, device=operator.device)
        parts.append(operator.matvec(rows).to(torch.float64))
    return torch.cat(parts)


def mixing_method(
    operator,
    *,
    rank: int = 4,
    max_hvps: int = 1024,
    tol: float = 1e-4,
    generator: torch.Generator,
    chunk_size: int = 32,
) -> MixingResult:
    """Maximizes tr(XᵀHY) over unit-row X, Y ∈ R^{d×rank}: X ← rownorm(HY), Y ← rownorm(HX).

    Args:
        operator: symmetric operator.
        rank: r, the factor's width (r HVPs per half step).
        max_hvps: HVPs at most (the first x and its product, 2·rank HVPs, are always taken).
        tol: stop when a full iteration (two half steps) raises f by less than tol·f.
        generator: source of the random starting Y (Gaussian rows, normalised).
        chunk_size: probes per ``matvec`` call.

    Returns:
        The factor, its products and the objective history.
    """
    check_int("rank", rank, minimum=1)
    check_int("chunk_size", chunk_size, minimum=1)
    d = operator.d
    hvps0 = operator.cost.hvps
    start = torch.randn(rank, d, generator=generator, dtype=torch.float64, device=generator.device)
    y = _rownorm(start.to(operator.device), torch.ones_like(start) / rank**0.5)
    hy = _apply(operator, y, chunk_size)
    x = _rownorm(hy, y)
    hx = _apply(operator, x, chunk_size)
    history = [float((x * hy).sum())]  # f(x, y) after the first half step from the random y
    half_steps, converged = 1, False
    while operator.cost.hvps - hvps0 + 2 * rank <= max_hvps:
        y = _rownorm(hx, y)
        hy = _apply(operator, y, chunk_size)
        history.append(float((y * hx).sum()))  # f(x, new y) = Σ_i ‖(Hx)_i‖
        x = _rownorm(hy, x)
        hx = _apply(operator, x, chunk_size)
        history.append(float((x * hy).sum()))  # f(new x, y) = Σ_i ‖(Hy)_i‖
        half_steps += 2
        if len(history) >= 3 and history[-1] - history[-3] <= tol * abs(history[-1]):
            converged = True
            break
    return MixingResult(
        x=x,
        y=y,
        hx=hx,
        hy=hy,
        value=history[-1],
        history=tuple(history),
        half_steps=half_steps,
        converged=converged,
        hvps=operator.cost.hvps - hvps0,
    )
