"""Spectral density of H by stochastic Lanczos quadrature (SLQ; Lin, Saad & Yang 2016).

The spectral density φ(t) = (1/d) Σᵢ δ(t − λᵢ) satisfies ∫ f dφ = tr f(H)/d = E[vᵀ f(H) v] for
v uniform on the unit sphere or v = z/√d with z Rademacher. For one such v, m Lanczos steps give
the m-point Gauss quadrature of the measure Σᵢ (vᵀuᵢ)² δ(t − λᵢ): nodes θ_k (the Ritz values)
and weights τ_k = s_{1,k}² (squared first components of T_m's eigenvectors), exact for
polynomials of degree ≤ 2m − 1. Averaging over n probes and replacing each node by a Gaussian of
width σ gives the smoothed density

    φ_σ(t) = (1/n) Σ_v Σ_k τ_k^(v) · exp(−(t − θ_k^(v))² / 2σ²) / (σ√(2π)),

which integrates to 1. Width: ``sigma`` (absolute), by default ``sigma_rel`` · (θ_max − θ_min)
with ``sigma_rel = 0.01``; below about (θ_max − θ_min)/m the curve shows the individual nodes
rather than the spectrum. The n runs are independent Lanczos recurrences (full
re-orthogonalization, float64) advanced together: each step applies H to an (n, d) block in
one ``matvec`` call, so the cost is n·m HVPs in m calls.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import check_int, rademacher, resolve_generator, sample_mean
from smoothprobe.linear_operator import Operator, apply_in_chunks, as_operator


@dataclass(frozen=True)
class SpectralDensity:
    """A smoothed spectral density estimate and the quadrature it came from.

    Attributes:
        grid: (num_points,) evaluation points t.
        density: (num_points,) φ_σ(t); integrates to ≈ 1 (fraction of eigenvalues per unit t).
        nodes: per probe, the Gauss nodes θ_k (Ritz values, ascending).
        weights: per probe, the weights τ_k (sum to 1).
        sigma: Gaussian width used.
        negative_mass: estimated fraction of eigenvalues below 0 (mean over probes of the
            quadrature weight on negative nodes); ``negative_mass_stderr`` its standard error.
        hvps, seconds, seed: cost and provenance.
        settings: options the estimator ran with.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    sigma: float
    negative_mass: float
    negative_mass_stderr: float | None
    hvps: int
    seconds: float
    seed: int
    settings: dict = field(default_factory=dict)

    def estimates(self) -> list[Estimate]:
        """Returns [Estimate ``spectral_density``]: value = ``negative_mass``; curve in ``extra``.

        ``extra`` holds ``grid``, ``density``, ``sigma``, ``nodes`` and ``weights`` as lists.
        """
        estimate = Estimate(
            quantity="spectral_density",
            value=float(self.negative_mass),
            bound=Bound.ESTIMATE,
            stderr=self.negative_mass_stderr,
            hvps=self.hvps,
            seconds=self.seconds,
            seed=self.seed,
            method="slq",
            geometry="l2",
            settings=dict(self.settings),
            extra={
                "value_is": "fraction of eigenvalues below 0",
                "grid": self.grid.tolist(),
                "density": self.density.tolist(),
                "sigma": self.sigma,
                "nodes": [n.tolist() for n in self.nodes],
                "weights": [w.tolist() for w in self.weights],
            },
        )
        return [estimate]


def block_lanczos_quadrature(
    operator: Operator, starts: torch.Tensor, *, steps: int, chunk_size: int = 16
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Runs independent Lanczos recurrences from each row of ``starts`` and returns quadratures.

    Args:
        operator: symmetric operator.
        starts: (n, d) float64 unit rows on the operator's device.
        steps: Lanczos steps per run (capped at d; a run stops early on an invariant subspace).
        chunk_size: probes per ``matvec`` call.

    Returns:
        Per run, (nodes ascending, weights) of its Gauss quadrature.
    """
    n, d = starts.shape
    steps = min(steps, d)
    eps = torch.finfo(operator.dtype).eps
    basis = torch.zeros(n, steps, d, dtype=torch.float64, device=starts.device)
    basis[:, 0] = starts
    alpha = np.zeros((n, steps))
    beta = np.zeros((n, steps))
    length = np.full(n, steps)
    active = list(range(n))
    for j in range(steps):
        idx = torch.tensor(active, device=starts.device)
        w = apply_in_chunks(operator, basis[idx, j], chunk_size=chunk_size)  # (a, d) float64
        q = basis[idx, : j + 1]  # (a, j+1, d)
        c1 = torch.einsum("ajd,ad->aj", q, w)
        w = w - torch.einsum("aj,ajd->ad", c1, q)
        c2 = torch.einsum("ajd,ad->aj", q, w)
        w = w - torch.einsum("aj,ajd->ad", c2, q)
        alpha[active, j] = (c1[:, j] + c2[:, j]).cpu().numpy()
        norms = w.norm(dim=1).cpu().numpy()
        beta[active, j] = norms
        still = []
        for pos, run in enumerate(active):
            scale = max(np.abs(alpha[run, : j + 1]).max(), beta[run, : j + 1].max())
            if j + 1 == steps or norms[pos] <= 100.0 * eps * scale:
                length[run] = j + 1
            else:
                basis[run, j + 1] = w[pos] / norms[pos]
                still.append(run)
        active = still
        if not active:
            break
    out = []
    for run in range(n):
        m = int(length[run])
        if m == 1:
            out.append((alpha[run, :1].copy(), np.ones(1)))
            continue
        theta, s = eigh_tridiagonal(alpha[run, :m], beta[run, : m - 1])
        out.append((theta, s[0, :] ** 2))
    return out


def smoothed_density(
    grid: np.ndarray, quadratures: list[tuple[np.ndarray, np.ndarray]], sigma: float
) -> np.ndarray:
    """Averages Gaussian-smoothed quadrature measures on ``grid`` (see the module docstring)."""
    total = np.zeros_like(grid)
    for nodes, weights in quadratures:
        z = (grid[:, None] - nodes[None, :]) / sigma
        total += (np.exp(-0.5 * z**2) * weights[None, :]).sum(axis=1)
    return total / (len(quadratures) * sigma * math.sqrt(2.0 * math.pi))


def spectral_density(
    operator: Operator,
    *,
    max_hvps: int = 640,
    steps: int = 80,
    sigma: float | None = None,
    sigma_rel: float = 0.01,
    num_points: int = 512,
    generator: torch.Generator | int | None = 0,
    chunk_size: int = 16,
) -> SpectralDensity:
    """Estimates the Gaussian-smoothed spectral density of H by stochastic Lanczos quadrature.

    Args:
        operator: symmetric operator.
        max_hvps: HVP budget: ``max_hvps // steps`` independent Rademacher start vectors run
            ``steps`` Lanczos steps each.
        steps: Lanczos steps per probe (the quadrature has that many nodes).
        sigma: absolute Gaussian width; None uses ``sigma_rel`` · (θ_max − θ_min).
        sigma_rel: relative width used when ``sigma`` is None.
        num_points: grid size; the grid spans [θ_min − 4σ, θ_max + 4σ].
        generator: generator or int seed.
        chunk_size: probes per ``matvec`` call.

    Returns:
        The density with its quadrature, cost and provenance.

    Raises:
        SmoothprobeError: invalid options.
    """
    operator = as_operator(operator)
    check_int("steps", steps, minimum=1)
    check_int("num_points", num_points, minimum=2)
    check_int("chunk_size", chunk_size, minimum=1)
    num_probes = check_int("max_hvps", max_hvps, minimum=steps) // steps
    if (sigma is not None and not sigma > 0) or not sigma_rel > 0:
        raise SmoothprobeError(f"sigma and sigma_rel must be > 0, got {sigma}, {sigma_rel}")
    t0 = time.perf_counter()
    generator, seed = resolve_generator(generator)
    hvps0 = operator.cost.hvps
    starts = rademacher(num_probes, operator.d, generator=generator, device=operator.device)
    quads = block_lanczos_quadrature(
        operator, starts / math.sqrt(operator.d), steps=steps, chunk_size=chunk_size
    )
    lo = min(float(nodes.min()) for nodes, _ in quads)
    hi = max(float(nodes.max()) for nodes, _ in quads)
    width = sigma if sigma is not None else sigma_rel * max(hi - lo, abs(hi), 1e-300)
    grid = np.linspace(lo - 4.0 * width, hi + 4.0 * width, num_points)
    negative = torch.tensor([float(w[nodes < 0].sum()) for nodes, w in quads])
    stderr = sample_mean(negative).stderr if num_probes >= 2 else None
    return SpectralDensity(
        grid=grid,
        density=smoothed_density(grid, quads, width),
        nodes=tuple(nodes for nodes, _ in quads),
        weights=tuple(w for _, w in quads),
        sigma=float(width),
        negative_mass=float(negative.mean()),
        negative_mass_stderr=stderr,
        hvps=operator.cost.hvps - hvps0,
        seconds=time.perf_counter() - t0,
        seed=seed,
        settings={
            "max_hvps": max_hvps,
            "num_probes": num_probes,
            "steps": steps,
            "sigma": sigma,
            "sigma_rel": sigma_rel,
            "num_points": num_points,
        },
    )
