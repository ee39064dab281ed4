"""One measurement run: a loaded checkpoint + settings → records (``smoothprobe measure``).

The CLI, the demo and the trajectory command all call ``run_measurement``; notebooks can too, or
call the estimators directly.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from smoothprobe.checkpoints import LoadedCheckpoint
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import derived_seed
from smoothprobe.progress import ProgressOperator
from smoothprobe.records import RunContext, make_record

NORMS = ("l2", "linf", "both", "none")


@dataclass(frozen=True)
class MeasureSettings:
    """Everything that decides what a run measures (hashed to recognise identical runs).

    Attributes:
        norm: ``l2``, ``linf``, ``both`` or ``none`` (only blocks / graddiff / noise).
        tol: Lanczos relative tolerance.
        max_hvps: Lanczos HVP budget.
        top_k: top eigenvalues to converge.
        extras: ℓ2 extras: trace, frobenius, density.
        method: (1,1)-norm method.
        hvps: (1,1)-norm HVP budget.
        confidence: interval level.
        blocks: partition specs for blockwise H(Φ).
        block_hvps: HVP budget per partition (None: the estimator's default).
        basis: basis spec (``identity``, ``hadamard``, ...).
        graddiff: radii for sampled gradient differences.
        graddiff_samples: perturbations per radius.
        graddiff_geometry: ``l2``, ``linf`` or a partition spec.
        noise_batch_size: minibatch size of the gradient-noise estimate (0: off).
        seed: seed of every random choice.
        chunk_size: probes per batched backward (memory knob).
        retain_graphs: keep all batches' gradient graphs (None: decide by measured memory).
    """

    norm: str = "both"
    tol: float = 1e-6
    max_hvps: int = 300
    top_k: int = 1
    extras: tuple[str, ...] = ()
    method: str = "auto"
    hvps: int = 256
    confidence: float = 0.95
    blocks: tuple[str, ...] = ()
    block_hvps: int | None = None
    basis: str = "identity"
    graddiff: tuple[float, ...] = ()
    graddiff_samples: int = 16
    graddiff_geometry: str = "l2"
    noise_batch_size: int = 0
    seed: int = 0
    chunk_size: int | None = None
    retain_graphs: bool | None = None

    def key(self) -> str:
        """A short hash of the settings (identical runs share it)."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Raises SmoothprobeError naming the first bad value."""
        checks = [
            (self.norm in NORMS, f"--norm {self.norm!r}: use one of {', '.join(NORMS)}"),
            (0 < self.tol < 1, f"--tol {self.tol}: use a value in (0, 1), e.g. 1e-6"),
            (self.max_hvps >= 2, f"--max-hvps {self.max_hvps}: use at least 2"),
            (self.top_k >= 1, f"--top-k {self.top_k}: use at least 1"),
            (self.hvps >= 2, f"--hvps {self.hvps}: use at least 2"),
            (0 < self.confidence < 1, f"--confidence {self.confidence}: use a level in (0, 1)"),
            (all(r > 0 for r in self.graddiff), "--graddiff radii must be positive"),
            (self.graddiff_samples >= 1, "--graddiff-samples must be ≥ 1"),
            (self.noise_batch_size >= 0, "--noise batch size must be ≥ 0"),
            (self.chunk_size is None or self.chunk_size >= 1, "--chunk-size must be ≥ 1"),
            (self.seed >= 0, f"--seed {self.seed}: use a non-negative integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise SmoothprobeError(message)


@dataclass
class MeasureResult:
    """Records of a run plus the objects a caller may want to inspect."""

    records: list[dict[str, Any]]
    estimates: list[Estimate] = field(default_factory=list)


def _log(message: str, *, enabled: bool) -> None:
    if enabled:
        print(f"[smoothprobe] {message}", file=sys.stderr, flush=True)


def run_measurement(
    loaded: LoadedCheckpoint,
    settings: MeasureSettings,
    *,
    progress: bool = True,
    check_determinism: bool = True,
) -> MeasureResult:
    """Measures one checkpoint.

    Args:
        loaded: the checkpoint's Problem and provenance.
        settings: what to measure.
        progress: progress bars and step messages on stderr.
        check_determinism: evaluate loss and one HVP twice first, and check the batched HVP
            path against single-probe products (``HessianOperator.check_batched``).

    Returns:
        The records (loss first, then each geometry's estimates).

    Raises:
        SmoothprobeError: bad settings, non-deterministic or non-finite loss.
    """
    from smoothprobe.bases import build_basis
    from smoothprobe.partitions import build_partition
    from smoothprobe.rotated_operator import RotatedOperator

    settings.validate()
    problem = loaded.problem
    t0 = time.perf_counter()
    basis = build_basis(settings.basis, problem.layout, seed=settings.seed)
    partitions = [
        build_partition(spec, problem.layout, n_head=loaded.n_head) for spec in settings.blocks
    ]  # built first: a bad spec fails before any work
    graddiff_geometry = settings.graddiff_geometry
    if settings.graddiff and graddiff_geometry not in ("l2", "linf"):
        graddiff_geometry = build_partition(graddiff_geometry, problem.layout, n_head=loaded.n_head)
    loss = problem.loss()
    if check_determinism:
        problem.check_determinism(seed=settings.seed)
    context = RunContext(
        checkpoint=loaded.path,
        d=problem.d,
        checkpoint_sha256=loaded.sha256,
        step=loaded.step,
        dtype=str(problem.dtype).removeprefix("torch."),
        basis=basis.name,
        num_examples=int(problem.num_examples),
        batch_size=len(problem.batches[0].targets),
        extra={
            "settings_key": settings.key(),
            "kind": loaded.kind,
            **({"data": loaded.data_path} if loaded.data_path else {}),
        },
    )
    estimates = [
        Estimate(
            "loss",
            loss,
            Bound.EXACT,
            seconds=time.perf_counter() - t0,
            seed=settings.seed,
            gradients=len(problem.batches),
        )
    ]
    base = problem.hvp_operator(
        chunk_size=settings.chunk_size, retain_graphs=settings.retain_graphs
    )
    if check_determinism:
        base.check_batched(seed=settings.seed)  # falls back, with a warning, when it disagrees
    identity = settings.basis == "identity"
    operator = base if identity else RotatedOperator(base, basis)
    l2_estimate = None

    def stream(name: str) -> torch.Generator:
        return torch.Generator().manual_seed(derived_seed(settings.seed, name))

    def tagged(found: list[Estimate], name: str) -> list[Estimate]:
        """Records the run's seed and the estimator's own stream (see ``derived_seed``)."""
        return [
            replace(e, seed=settings.seed, settings={**e.settings, "stream": name}) for e in found
        ]

    def tracked(desc: str, total: int | None) -> ProgressOperator:
        return ProgressOperator(operator, desc=desc, total=total, enabled=progress)

    if settings.norm in ("l2", "both"):
        from smoothprobe.suites.l2 import measure_l2

        _log(
            f"ℓ2: Lanczos to tol {settings.tol:g} (≤ {settings.max_hvps} HVPs), d = {problem.d:,}",
            enabled=progress,
        )
        op = tracked("lanczos", settings.max_hvps)
        found = measure_l2(
            op,
            tol=settings.tol,
            max_hvps=settings.max_hvps,
            top_k=settings.top_k,
            extras=settings.extras,
            generator=stream("l2"),
            confidence=settings.confidence,
        ).estimates()
        found = tagged(found, "l2")
        op.close()
        estimates += found
        l2_estimate = next(e for e in found if e.quantity == "l2_norm")
    if settings.norm in ("linf", "both"):
        from smoothprobe.estimators.row_norms import row_norm_payload
        from smoothprobe.suites.linf import measure_linf

        _log(
            f"ℓ∞: (1,1)-norm by {settings.method} with {settings.hvps} HVPs, sign ascent",
            enabled=progress,
        )
        op = tracked("l11", None)
        linf = measure_linf(
            op,
            method=settings.method,
            max_hvps=settings.hvps,
            confidence=settings.confidence,
            generator=stream("linf"),
            l2_norm=None if l2_estimate is None else abs(float(l2_estimate.value)),
        )
        op.close()
        rows = row_norm_payload(linf.rows.estimates, operator.layout)
        estimates += tagged(
            [
                replace(e, extra={**e.extra, **rows}) if e.quantity == "l11_norm" else e
                for e in linf.estimates()
            ],
            "linf",
        )
    blockwise: list[tuple[str, Estimate]] = []
    if partitions:
        from smoothprobe.suites.blockwise import measure_blockwise

        for partition in partitions:
            _log(
                f"blockwise H(Φ) for {partition.name}: {partition.num_blocks} blocks",
                enabled=progress,
            )
            op = tracked(f"H({partition.name})", settings.block_hvps)
            name = f"blockwise:{partition.name}"
            found = measure_blockwise(
                op,
                partition,
                max_hvps=settings.block_hvps,
                generator=stream(name),
                l2_norm=l2_estimate,
            ).estimates()
            blockwise += [(partition.name, est) for est in tagged(found, name)]
            op.close()
    if settings.graddiff:
        from smoothprobe.estimators.graddiff import gradient_differences

        _log(f"gradient differences at radii {list(settings.graddiff)}", enabled=progress)
        diff = gradient_differences(
            problem,
            radii=settings.graddiff,
            geometry=graddiff_geometry,
            samples=settings.graddiff_samples,
            generator=stream("graddiff"),
            operator=base,
            basis=None if identity else basis,
        )
        estimates += tagged(diff.estimates(confidence=settings.confidence), "graddiff")
    if settings.noise_batch_size:
        from smoothprobe.estimators.noise import gradient_noise

        _log(f"gradient noise at batch size {settings.noise_batch_size}", enabled=progress)
        noise = gradient_noise(
            problem,
            batch_size=settings.noise_batch_size,
            confidence=settings.confidence,
            generator=stream("noise"),
            basis=None if identity else basis,
        )
        estimates += tagged(noise.estimates(), "noise")
    records = [make_record(e, context) for e in estimates]
    records += [make_record(e, context, partition=name) for name, e in blockwise]
    _log(
        f"done in {time.perf_counter() - t0:.1f} s, {base.cost.hvps} HVPs, "
        f"{base.cost.gradients} gradients",
        enabled=progress,
    )
    return MeasureResult(records, estimates + [e for _, e in blockwise])
