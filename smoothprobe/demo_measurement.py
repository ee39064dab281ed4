"""The demo's measurement plan: what ``run_measurement`` measures on each checkpoint.

ℓ2, ℓ∞ and Adam's preconditioned sharpness on every checkpoint; on the final one also the
partitions, the spectral geometry, the spectral density, the gradient-difference sweep, the
gradient noise and the rotated bases (``measurement_plan``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from smoothprobe.checkpoints import DataOptions, load_checkpoint
from smoothprobe.demo_budget import DemoBudget
from smoothprobe.measure import MeasureSettings, run_measurement


def log(message: str, *, enabled: bool) -> None:
    """Prints a demo step message on stderr."""
    if enabled:
        print(f"[smoothprobe demo] {message}", file=sys.stderr, flush=True)


def measurement_plan(budget: DemoBudget, *, final: bool, seed: int) -> list[MeasureSettings]:
    """The ``run_measurement`` settings of one checkpoint.

    Every checkpoint gets ℓ2, ℓ∞ and Adam's preconditioned sharpness λ(P⁻¹H) from its saved
    optimizer state (the over-training plot and sharpness against the threshold); the final one
    also the partitions in ``budget.blocks``, the spectral (Muon) geometry, the spectral density,
    the gradient-difference sweep and the gradient noise, then ℓ2, ℓ∞ and the partitions again
    in each rotated basis.
    """
    if not final:  # the H∞ bracket only on the final checkpoint (``budget.hinf_hvps``)
        return [
            MeasureSettings(
                norm="both",
                tol=budget.tol,
                hvps=budget.step_hvps,
                seed=seed,
                preconditioner="adam",
                hinf_hvps=0,
            )
        ]
    common = dict(
        norm="both",
        tol=budget.tol,
        hvps=budget.final_hvps,
        seed=seed,
        blocks=budget.blocks,
        block_hvps=budget.block_hvps,
        hinf_hvps=budget.hinf_hvps,
    )
    original = MeasureSettings(
        **{**common, "norm": "all"},
        spectral_hvps=budget.spectral_hvps,
        preconditioner="adam",
        basis=budget.bases[0],
        extras=budget.extras,
        graddiff=budget.graddiff,
        graddiff_geometry=budget.graddiff_geometry,
        noise_batch_size=budget.noise_batch_size,
    )
    return [original] + [MeasureSettings(**common, basis=b) for b in budget.bases[1:]]


def describe_settings(settings: MeasureSettings) -> list[str]:
    """What a measurement run measures, in words (for the progress log)."""
    parts = ["ℓ2", "ℓ∞"]
    if settings.norm in ("spectral", "all"):
        parts.append("spectral (Muon)")
    if settings.preconditioner != "none":
        parts.append(f"{settings.preconditioner}-preconditioned sharpness")
    if settings.extras:
        parts.append(", ".join(settings.extras))
    if settings.blocks:
        parts.append(f"blockwise ({', '.join(settings.blocks)})")
    if settings.graddiff:
        parts.append("gradient differences")
    if settings.noise_batch_size:
        parts.append("gradient noise")
    return parts


def measure(
    checkpoints: list[Path],
    val_path: Path,
    *,
    budget: DemoBudget,
    seed: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Measures every checkpoint on one fixed held-out sample; returns all records."""
    data = DataOptions(
        path=str(val_path),
        batch_size=budget.eval_batch_size,
        num_batches=budget.eval_batches,
        seed=seed,
    )
    records: list[dict[str, Any]] = []
    for i, path in enumerate(checkpoints):
        final = i == len(checkpoints) - 1
        loaded = load_checkpoint(str(path), data=data, dtype=budget.dtype)
        for settings in measurement_plan(budget, final=final, seed=seed):
            what = ", ".join(describe_settings(settings))
            log(
                f"checkpoint {i + 1}/{len(checkpoints)} (step {loaded.step}): {what}, basis "
                f"{settings.basis}",
                enabled=progress,
            )
            records += run_measurement(loaded, settings, progress=progress).records
    return records
