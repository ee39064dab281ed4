"""Synthetic records with known values, for tests, docs and the report screenshot check.

The numbers imitate MATH.md §2's 2,410-parameter MLP (L₂ ≈ 0.25, ‖H‖₁,₁ ≈ 360, rotated ≈ 709)
but are made up; nothing here is a measurement. Every record goes through ``make_record``, so
the records have exactly the shape estimators write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.records import RunContext, make_record

ROTATED_BASIS = "hadamard:seed=0"
TENSORS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
LAYERS = ("fc1", "fc2")


@dataclass(frozen=True)
class ExampleTruth:
    """The values one synthetic checkpoint's records were built from.

    Attributes:
        step: training step.
        l2: L₂ (identity basis; rotation invariant).
        l11: ‖H‖₁,₁ point estimate per basis.
        l11_halfwidth: half-width of its 95% interval (relative).
        linf_lower: certified lower bound on H∞ per basis.
        block_upper / block_lower: per basis, per partition.
    """

    step: int
    l2: float
    l11: dict[str, float]
    l11_halfwidth: float
    linf_lower: dict[str, float]
    block_upper: dict[str, dict[str, float]]
    block_lower: dict[str, dict[str, float]]


D = 2410
RESIDUAL = 1e-6


def example_truths(steps: tuple[int, ...] = (0, 500, 1000)) -> list[ExampleTruth]:
    """Returns the known values behind ``example_records`` (one per step)."""
    out = []
    for i, step in enumerate(steps):
        grow = 1.0 + 0.5 * i
        l2 = 0.251 * grow
        l11 = {"identity": 359.9 * grow * (1 - 0.1 * i), ROTATED_BASIS: 709.4 * grow}
        lower = {"identity": 194.2 * grow * (1 - 0.1 * i), ROTATED_BASIS: 402.0 * grow}
        upper = {
            b: {"row": 0.8 * l11[b], "tensor": 0.95 * D * l2 * 0.6, "layer": 0.97 * D * l2 * 0.8}
            for b in l11
        }
        upper[ROTATED_BASIS] = {p: min(1.3 * v, D * l2) for p, v in upper[ROTATED_BASIS].items()}
        lower_b = {b: {p: 0.7 * v for p, v in parts.items()} for b, parts in upper.items()}
        out.append(ExampleTruth(step, l2, l11, 0.06, lower, upper, lower_b))
    return out


def example_records(
    *, steps: tuple[int, ...] = (0, 500, 1000), seed: int = 0, noise: bool = True
) -> list[dict[str, Any]]:
    """Builds a synthetic records list: several steps, two bases, several partitions.

    Args:
        steps: training steps, one checkpoint each.
        seed: seed of the generator for the synthetic row norms and sweeps.
        noise: include gradient-noise records.

    Returns:
        Records as ``make_record`` returns them.
    """
    rng = np.random.default_rng(seed)
    records = []
    for truth in example_truths(steps):
        ckpt = f"out/ckpt_{truth.step:05d}.pt"
        for basis in (
            "identity",
            ROTATED_BASIS,
        ):
            ctx = RunContext(checkpoint=ckpt, d=D, step=truth.step, basis=basis, dtype="float64")
            if basis == "identity":
                records += [make_record(e, ctx) for e in _l2_estimates(truth, rng)]
            records += [make_record(e, ctx) for e in _linf_estimates(truth, basis, rng)]
            for partition in truth.block_upper[basis]:
                for e in _block_estimates(truth, basis, partition, rng):
                    records.append(make_record(e, ctx, partition=partition))
            if basis == "identity":
                records += [make_record(e, ctx) for e in _graddiff_estimates(truth, rng)]
                records += [make_record(e, ctx) for e in _step_ratio_estimates(truth)]
                records += [make_record(e, ctx) for e in _spectral_estimates(truth)]
                records += [make_record(e, ctx) for e in _precond_estimates(truth)]
                if noise:
                    ctx_n = RunContext(
                        checkpoint=ckpt, d=D, step=truth.step, basis=basis, batch_size=32
                    )
                    records += [make_record(e, ctx_n) for e in _noise_estimates(truth)]
    return records


def _l2_estimates(truth: ExampleTruth, rng: np.random.Generator) -> list[Estimate]:
    lam_min = -0.08 * truth.l2
    grid = np.linspace(lam_min * 1.2, truth.l2 * 1.1, 200)
    density = (
        1e-5 / truth.l2
        + 0.9 * np.exp(-0.5 * (grid / (0.01 * truth.l2)) ** 2)
        + 1e-4 * np.exp(-0.5 * ((grid - 0.7 * truth.l2) / (0.05 * truth.l2)) ** 2)
    )
    extra = {"residual": RESIDUAL, "iterations": 40, "converged": True}
    common = {"method": "lanczos", "geometry": "l2", "hvps": 40, "seed": 0}
    return [
        Estimate("l2_norm", truth.l2, Bound.LOWER, extra=extra, **common),
        Estimate("lambda_max", truth.l2, Bound.LOWER, extra=extra, **common),
        Estimate("lambda_min", lam_min, Bound.UPPER, extra=extra, **common),
        Estimate("d_l2", D * truth.l2, Bound.LOWER, **common),
        Estimate(
            "spectral_density",
            float(np.trapezoid(density, grid)),
            Bound.ESTIMATE,
            method="slq",
            geometry="l2",
            extra={"grid": grid.tolist(), "density": density.tolist()},
        ),
    ]


def _linf_estimates(truth: ExampleTruth, basis: str, rng: np.random.Generator) -> list[Estimate]:
    l11 = truth.l11[basis]
    half = truth.l11_halfwidth * l11
    sizes = {"fc1.weight": 2048, "fc1.bias": 32, "fc2.weight": 320, "fc2.bias": 10}
    scale = 1.0 if basis == "identity" else 3.0
    row_norms = {
        t: (rng.lognormal(mean=np.log(0.05 * scale * (i + 1)), sigma=1.0, size=n)).tolist()
        for i, (t, n) in enumerate(sizes.items())
    }
    return [
        Estimate(
            "l11_norm",
            l11,
            Bound.ESTIMATE,
            stderr=half / 1.96,
            ci_low=l11 - half,
            ci_high=l11 + half,
            confidence=0.95,
            method="two-phase",
            geometry="linf",
            hvps=256,
            extra={"row_norms": row_norms, "l11_per_d": l11 / D},
        ),
        Estimate(
            "linf_lower",
            truth.linf_lower[basis],
            Bound.LOWER,
            method="sign-ascent",
            geometry="linf",
            hvps=33,
        ),
        Estimate("max_row", max(max(v) for v in row_norms.values()), geometry="linf"),
    ]


def _block_estimates(
    truth: ExampleTruth, basis: str, partition: str, rng: np.random.Generator
) -> list[Estimate]:
    names = {"tensor": list(TENSORS), "layer": list(LAYERS)}.get(partition)
    extra: dict[str, Any] = {}
    if names:
        n = len(names)
        m = rng.lognormal(mean=0.0, sigma=1.5, size=(n, n))
        m = (m + m.T) / 2
        m *= truth.block_upper[basis][partition] / m.sum()
        extra = {"block_names": names, "contributions": m.tolist()}
    return [
        Estimate(
            "block_upper",
            truth.block_upper[basis][partition],
            Bound.UPPER,
            method="block-norms",
            geometry="block",
            settings={"partition": partition},
            extra=extra,
        ),
        Estimate(
            "block_lower",
            truth.block_lower[basis][partition],
            Bound.LOWER,
            method="block-ascent",
            geometry="block",
            settings={"partition": partition},
        ),
    ]


def _graddiff_estimates(truth: ExampleTruth, rng: np.random.Generator) -> list[Estimate]:
    out = []
    for geometry, constant in (("l2", truth.l2), ("linf", truth.linf_lower["identity"])):
        for radius in (1e-3, 1e-2, 1e-1, 1.0):
            shrink = 1.0 / (1.0 + 2.0 * radius)
            for stat, factor in (("max", 0.9), ("mean", 0.5)):
                out.append(
                    Estimate(
                        f"graddiff_{stat}",
                        constant * factor * shrink,
                        Bound.LOWER if stat == "max" else Bound.ESTIMATE,
                        method="graddiff",
                        geometry=geometry,
                        gradients=65,
                        settings={"radius": radius, "samples": 64},
                    )
                )
    return out


def _step_ratio_estimates(truth: ExampleTruth) -> list[Estimate]:
    return [
        Estimate("step_ratio", 0.4 * truth.l2, Bound.LOWER, geometry="l2", method="trajectory"),
        Estimate(
            "step_ratio",
            0.3 * truth.linf_lower["identity"],
            Bound.LOWER,
            geometry="linf",
            method="trajectory",
        ),
    ]


def _noise_estimates(truth: ExampleTruth) -> list[Estimate]:
    l2 = 40.0 * (1 + truth.step / 1000)
    l1 = 0.3 * l2
    common = {"method": "minibatch", "settings": {"batch_size": 32}}
    return [
        Estimate("noise_l1", l1, ci_low=0.9 * l1, ci_high=1.1 * l1, confidence=0.95, **common),
        Estimate(
            "noise_l2_sqrtd", l2, ci_low=0.95 * l2, ci_high=1.05 * l2, confidence=0.95, **common
        ),
        Estimate(
            "noise_block",
            0.7 * l2,
            ci_low=0.63 * l2,
            ci_high=0.77 * l2,
            confidence=0.95,
            method="minibatch",
            settings={"batch_size": 32, "partition": "layer"},
        ),
        Estimate("snr", 0.2, **common),
    ]


def _spectral_estimates(truth: ExampleTruth) -> list[Estimate]:
    """The spectral (Muon) geometry: matrices alone (R = 42) and mixed (R = 84)."""
    out = []
    for part, r, share in (("matrices", 42.0, 0.3), ("mixed", 84.0, 0.45)):
        rl2 = r * truth.l2 * (1 + RESIDUAL)
        low, high = share * r * truth.l2, min(0.8 * r * truth.l2, rl2)
        common = {"geometry": "spectral", "settings": {"partition": part, "scale": "one"}}
        out += [
            Estimate("op_lower", low, Bound.LOWER, method="polar-ascent", **common),
            Estimate("op_upper", high, Bound.UPPER, method="block-columns:exact", **common),
            Estimate("op_upper_rl2", rl2, Bound.ESTIMATE, method="R*L2", **common),
            Estimate(
                "rho_op",
                high / (r * truth.l2),
                Bound.UPPER,
                ci_low=low / rl2,
                ci_high=high / (r * truth.l2),
                method="H_op/(R*L2)",
                **common,
            ),
        ]
        if part == "mixed":
            hinf_low = truth.linf_lower["identity"]
            out.append(
                Estimate(
                    "muon_adam_ratio",
                    high / hinf_low,
                    Bound.UPPER,
                    ci_low=low / truth.l11["identity"],
                    ci_high=high / hinf_low,
                    method="H_op/(kappa*Hinf)",
                    **common,
                )
            )
    return out


def _precond_estimates(truth: ExampleTruth, *, lr: float = 1e-3) -> list[Estimate]:
    """Adam's preconditioned sharpness rising towards 38/η over training."""
    threshold = 38.0 / lr
    top = threshold * min(1.0, 0.3 + truth.step / 1500)
    settings = {"preconditioner": "adam", "lr": lr, "beta1": 0.9, "beta2": 0.999}
    common = {"geometry": "preconditioned", "settings": settings}
    extra = {"residual": 1e-3 * top, "unpreconditioned_lambda_max": truth.l2}
    return [
        Estimate("precond_lambda_max", top, Bound.LOWER, method="lanczos", extra=extra, **common),
        Estimate("precond_lambda_min", -0.1 * top, Bound.UPPER, method="lanczos", **common),
        Estimate("aeos_threshold", threshold, Bound.EXACT, method="optimizer state", **common),
        Estimate("gd_threshold", 2.0 / lr, Bound.EXACT, method="optimizer state", **common),
    ]
