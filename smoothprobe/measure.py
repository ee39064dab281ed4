"""One measurement run: a loaded checkpoint + settings → records (``smoothprobe measure``).

The CLI, the demo and the trajectory command all call ``run_measurement``; notebooks can too, or
call the estimators directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from smoothprobe.checkpoints import LoadedCheckpoint
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.estimators.sampling import derived_seed
from smoothprobe.finished_phases import FinishedPhases
from smoothprobe.phase_state import SAVE_EVERY, lanczos_checkpoint, loop_checkpoint
from smoothprobe.progress import ProgressOperator
from smoothprobe.records import RunContext, make_record
from smoothprobe.run_memory import peak_report, run_budget

NORMS = ("l2", "linf", "both", "spectral", "all", "none")
NORM_PARTS = {  # what each --norm measures (spectral needs L₂ for R·L₂ and ρ_op)
    "l2": ("l2",),
    "linf": ("linf",),
    "both": ("l2", "linf"),
    "spectral": ("l2", "spectral"),
    "all": ("l2", "linf", "spectral"),
    "none": (),
}
SPECTRAL_SCALES = ("one", "rms")
POLAR_METHODS = ("svd", "newton-schulz")
PRECONDITIONERS = ("none", "adam")
MIN_HINF_HVPS = 145  # = estimators.hinf_bracket.minimum_hvps() at the default options


@dataclass(frozen=True)
class MeasureSettings:
    """Everything that decides what a run measures (hashed to recognise identical runs).

    Attributes:
        norm: ``l2``, ``linf``, ``both`` (ℓ2 + ℓ∞), ``spectral`` (ℓ2 + the Muon geometry),
            ``all`` (ℓ2 + ℓ∞ + spectral) or ``none`` (only blocks / graddiff / noise).
        tol: Lanczos relative tolerance.
        max_hvps: Lanczos HVP budget.
        top_k: top eigenvalues to converge.
        extras: ℓ2 extras: trace, frobenius, density.
        method: (1,1)-norm method.
        hvps: (1,1)-norm HVP budget.
        confidence: interval level.
        hinf_hvps: HVP budget of the H∞ bracket in the ℓ∞ suite (0: skip it; the default is
            ``suites.linf.DEFAULT_HINF_HVPS``, whose docstring says how it was chosen).
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
        memory: byte budget of the run (None: 60% of what is available now); the memory plan
            (``smoothprobe.memory_plan``) sizes graphs, probe blocks and the Lanczos basis.
        spectral_scale: per-matrix scale s_l of the spectral geometry: ``one`` or ``rms``.
        spectral_matrices: regexes naming the Muon matrices (empty: the default rule).
        spectral_hvps: HVP budget of the spectral block upper bound (None: exact when d ≤ 20,000).
        polar: polar factors by ``svd`` or ``newton-schulz``.
        preconditioner: ``adam``: λ(P⁻¹H) from the checkpoint's Adam state; ``none``: off.
    """

    norm: str = "both"
    tol: float = 1e-6
    max_hvps: int = 300
    top_k: int = 1
    extras: tuple[str, ...] = ()
    method: str = "auto"
    hvps: int = 256
    confidence: float = 0.95
    hinf_hvps: int = 2048  # = suites.linf.DEFAULT_HINF_HVPS (not imported: keeps this module light)
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
    memory: int | None = None
    spectral_scale: str = "one"
    spectral_matrices: tuple[str, ...] = ()
    spectral_hvps: int | None = None
    polar: str = "svd"
    preconditioner: str = "none"

    def key(self) -> str:
        """A short hash of the settings (identical runs share it; new options at their default
        leave old hashes unchanged)."""
        new = {
            "spectral_scale": "one",
            "spectral_matrices": (),
            "spectral_hvps": None,
            "polar": "svd",
            "preconditioner": "none",
            "memory": None,
        }
        fields = {k: v for k, v in asdict(self).items() if k not in new or v != new[k]}
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Raises SmoothprobeError naming the first bad value."""
        checks = [
            (self.norm in NORMS, f"norm={self.norm!r}: use one of {', '.join(NORMS)}"),
            (0 < self.tol < 1, f"tol={self.tol}: use a value in (0, 1), e.g. 1e-6"),
            (self.max_hvps >= 2, f"max_hvps={self.max_hvps}: use at least 2"),
            (self.top_k >= 1, f"top_k={self.top_k}: use at least 1"),
            (self.hvps >= 2, f"hvps={self.hvps}: use at least 2"),
            (0 < self.confidence < 1, f"confidence={self.confidence}: use a level in (0, 1)"),
            (
                self.hinf_hvps == 0 or self.hinf_hvps >= MIN_HINF_HVPS,
                f"hinf_hvps={self.hinf_hvps}: use 0 (skip) or at least {MIN_HINF_HVPS}",
            ),
            (all(r > 0 for r in self.graddiff), "graddiff radii must be positive"),
            (self.graddiff_samples >= 1, "graddiff_samples must be ≥ 1"),
            (self.noise_batch_size >= 0, "noise batch size must be ≥ 0"),
            (self.chunk_size is None or self.chunk_size >= 1, "chunk_size must be ≥ 1"),
            (self.seed >= 0, f"seed={self.seed}: use a non-negative integer"),
            (
                self.memory is None or self.memory > 0,
                f"memory={self.memory}: use a positive size in bytes",
            ),
            (
                self.spectral_scale in SPECTRAL_SCALES,
                f"spectral_scale={self.spectral_scale!r}: use one or rms",
            ),
            (self.polar in POLAR_METHODS, f"polar={self.polar!r}: use svd or newton-schulz"),
            (
                self.preconditioner in PRECONDITIONERS,
                f"preconditioner={self.preconditioner!r}: use none or adam",
            ),
            (
                self.spectral_hvps is None or self.spectral_hvps >= 1,
                "spectral_hvps must be ≥ 1",
            ),
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
    if enabled:  # above any progress bar on screen, never glued to it
        from tqdm import tqdm

        tqdm.write(f"[smoothprobe] {message}", file=sys.stderr)


NOISE_GROUPS = 10  # jackknife groups of the noise estimate when the budget allows


def runs_lanczos(settings: MeasureSettings) -> bool:
    """Whether a phase keeps a Lanczos basis: ℓ2, spectral (its own L₂ run) or the Adam view."""
    parts = NORM_PARTS[settings.norm]
    return "l2" in parts or "spectral" in parts or settings.preconditioner != "none"


def plan_run(problem, operator, settings: MeasureSettings, *, budget: int, largest_block: int = 0):
    """The memory plan of a run (``smoothprobe.memory_plan``) within ``budget`` bytes, from the
    measured graph size and the widest block of the blockwise partitions (0: none)."""
    from smoothprobe.memory_plan import plan_memory

    graph_bytes = operator.graph_bytes
    if getattr(operator, "context", None) is not None:  # every rank must take the same plan
        from smoothprobe.distributed import agreed

        budget, graph_bytes = int(agreed(budget, op="min")), int(agreed(graph_bytes, op="max"))
    noise_groups = 0
    if settings.noise_batch_size:  # as many jackknife groups as fit, at most NOISE_GROUPS
        noise_groups = max(2, min(NOISE_GROUPS, budget // (4 * 16 * problem.d)))
    return plan_memory(
        budget=budget,
        d=problem.d,
        element_bytes=torch.finfo(problem.dtype).bits // 8,
        graph_bytes=graph_bytes,
        num_batches=len(getattr(operator, "shard", problem.batches)),
        lanczos_steps=settings.max_hvps if runs_lanczos(settings) else 0,
        graddiff_samples=settings.graddiff_samples if settings.graddiff else 0,
        noise_groups=noise_groups,
        retain_graphs=settings.retain_graphs,
        chunk_size=settings.chunk_size,
        top_k=settings.top_k,
        hinf_hvps=settings.hinf_hvps if "linf" in NORM_PARTS[settings.norm] else 0,
        largest_block=largest_block,
    )


def _resumed(op: ProgressOperator, *, progress: bool):
    """What a checkpoint calls when it resumes: the line is printed, the bar counts the HVPs."""

    def on_resume(line: str, hvps: int) -> None:
        _log(line, enabled=progress)
        op.resumed(hvps)

    return on_resume


def run_measurement(
    loaded: LoadedCheckpoint,
    settings: MeasureSettings,
    *,
    progress: bool = True,
    check_determinism: bool = True,
    resume: str | os.PathLike | None = None,
    save_every: float = SAVE_EVERY,
) -> MeasureResult:
    """Measures one checkpoint.

    Args:
        loaded: the checkpoint's Problem and provenance.
        settings: what to measure.
        progress: progress bars and step messages on stderr.
        check_determinism: evaluate loss and one HVP twice first, and check the batched HVP
            path against single-probe products (``HessianOperator.check_batched``).
        resume: file that keeps every finished phase (``finished_phases``): a rerun with the
            same settings, checkpoint and sample skips them. The caller deletes it at the end.
        save_every: with ``resume``, seconds between two saves of a long phase's progress
            (Lanczos, the ℓ∞ and blockwise loops); an interrupted rerun goes on from the last.

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
    from smoothprobe.distributed import DistributedHessianOperator, current

    dist = current()
    progress = progress and (dist is None or dist.is_main)  # only rank 0 talks
    parts = NORM_PARTS[settings.norm]
    if "spectral" in parts:  # a bad matrix regex fails before any work
        from smoothprobe.spectral_geometry import spectral_geometry

        spectral_geometry(
            problem.layout,
            scale=settings.spectral_scale,
            matrices=settings.spectral_matrices or None,
            polar=settings.polar,
        )
    preconditioner = None
    if settings.preconditioner == "adam":  # so is a checkpoint without Adam state
        from smoothprobe.optimizer_state import adam_preconditioner

        preconditioner = adam_preconditioner(
            loaded.optimizer_state,
            problem.layout,
            order=loaded.optimizer_order,
            source=loaded.path,
        )
    loss = problem.loss()
    run_identity = {"settings": settings.key(), "checkpoint": loaded.sha256, "loss": repr(loss)}
    finished = FinishedPhases(resume, run_identity, writer=dist is None or dist.is_main).load()
    if dist is not None:
        finished.share()
    if dist is None:
        base = problem.hvp_operator(
            chunk_size=settings.chunk_size, retain_graphs=settings.retain_graphs
        )
    else:
        base = DistributedHessianOperator(
            problem,
            context=dist,
            chunk_size=settings.chunk_size,
            retain_graphs=settings.retain_graphs,
        )
        _log(
            f"data-parallel over {dist.world_size} ranks ({dist.backend}): this rank evaluates "
            f"batches {base.shard} of {len(problem.batches)}",
            enabled=progress,
        )
    largest = max((int(p.sizes.max()) for p in partitions), default=0)
    budget = run_budget(
        settings.memory, finished, device=problem.device, log=lambda m: _log(m, enabled=progress)
    )
    if problem.device.type == "cuda":  # the run's own peak, reported at the end
        torch.cuda.reset_peak_memory_stats(problem.device)
    plan = plan_run(problem, base, settings, budget=budget, largest_block=largest)
    base.configure(retain_graphs=plan.retain_graphs, chunk_size=plan.chunk_size)
    _log(plan.summary(), enabled=progress)
    if check_determinism:  # two HVPs: minutes at 124M, so it gets a bar of its own
        checked = ProgressOperator(base, desc="determinism check", total=2, enabled=progress)
        problem.check_determinism(seed=settings.seed, operator=checked)
        checked.close()
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
            "memory_plan": plan.to_dict(),
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
    if check_determinism:
        base.check_batched(seed=settings.seed)  # falls back, with a warning, when it disagrees
    if finished.names:
        _log(
            f"resuming: {', '.join(finished.names)} finished before (kept in {resume})",
            enabled=progress,
        )
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

    basis_options = {  # every Lanczos run of the measurement keeps the planned basis
        "max_basis": None if plan.basis_rows >= settings.max_hvps else plan.basis_rows,
        "basis_dtype": getattr(torch, plan.basis_dtype),
    }

    def tracked(desc: str, total: int | None) -> ProgressOperator:
        return ProgressOperator(operator, desc=desc, total=total, enabled=progress)

    if "l2" in parts and (found := finished.get("l2")) is None:
        from smoothprobe.suites.l2 import measure_l2

        _log(
            f"ℓ2: Lanczos to tol {settings.tol:g} (≤ {settings.max_hvps} HVPs), d = {problem.d:,}",
            enabled=progress,
        )
        op = tracked("lanczos", settings.max_hvps)
        lanczos_state = lanczos_checkpoint(
            resume,
            run_identity,
            dist,
            on_resume=_resumed(op, progress=progress),
            every_seconds=save_every,
        )
        found = measure_l2(
            op,
            tol=settings.tol,
            max_hvps=settings.max_hvps,
            top_k=settings.top_k,
            extras=settings.extras,
            generator=stream("l2"),
            confidence=settings.confidence,
            **basis_options,
            checkpoint=lanczos_state,
        ).estimates()
        found = finished.put("l2", tagged(found, "l2"))
        if lanczos_state is not None:
            lanczos_state.remove()
        op.close()
    if "l2" in parts:
        estimates += found
        l2_estimate = next(e for e in found if e.quantity == "l2_norm")
    if "linf" in parts and (found := finished.get("linf")) is None:
        from smoothprobe.estimators.row_norms import row_norm_payload
        from smoothprobe.suites.linf import linf_hvps_at_most, measure_linf

        bracket = f", H∞ bracket ≤ {plan.hinf_hvps} HVPs" if plan.hinf_hvps else ""
        _log(
            f"ℓ∞: (1,1)-norm by {settings.method} with {settings.hvps} HVPs, sign ascent{bracket}",
            enabled=progress,
        )
        at_most = linf_hvps_at_most(
            max_hvps=settings.hvps, restarts=plan.ascent_restarts, hinf_hvps=plan.hinf_hvps
        )
        op = tracked("linf", at_most)
        loops = loop_checkpoint(
            resume,
            "linf",
            run_identity,
            dist,
            label="ℓ∞",
            on_resume=_resumed(op, progress=progress),
            every_seconds=save_every,
        )
        linf = measure_linf(
            op,
            method=settings.method,
            max_hvps=settings.hvps,
            confidence=settings.confidence,
            generator=stream("linf"),
            l2_norm=l2_estimate,
            chunk_size=plan.block,
            memory_limit=plan.sketch,
            restarts=plan.ascent_restarts,
            hinf_hvps=plan.hinf_hvps,
            checkpoint=loops,
        )
        op.close()
        rows = row_norm_payload(linf.rows.estimates, operator.layout)
        found = [
            replace(e, extra={**e.extra, **rows}) if e.quantity == "l11_norm" else e
            for e in linf.estimates()
        ]
        found = finished.put("linf", tagged(found, "linf"))
        if loops is not None:
            loops.remove()
    if "linf" in parts:
        estimates += found
    if "spectral" in parts and (found := finished.get("spectral")) is None:
        from smoothprobe.suites.spectral import measure_spectral

        _log(
            f"spectral (Muon) geometry, scale {settings.spectral_scale}: polar ascent, block norms",
            enabled=progress,
        )
        op = tracked("H_op", settings.spectral_hvps)
        found = measure_spectral(
            op,
            scale=settings.spectral_scale,
            matrices=settings.spectral_matrices or None,
            polar=settings.polar,
            max_hvps=settings.spectral_hvps,
            generator=stream("spectral"),
            reference=estimates,
            **basis_options,
        )
        found = finished.put("spectral", tagged(found, "spectral"))
        op.close()
    if "spectral" in parts:
        estimates += found
    precond: list[Estimate] = finished.get("preconditioned") or []
    if preconditioner is not None and not precond:
        from smoothprobe.estimators.preconditioned import preconditioned_sharpness

        _log(
            f"Adam-preconditioned sharpness λ(P⁻¹H): Lanczos (≤ {settings.max_hvps} HVPs)",
            enabled=progress,
        )
        plain = next((e for e in estimates if e.quantity == "lambda_max"), None)
        op = ProgressOperator(
            base, desc="lanczos P^-1/2 H P^-1/2", total=settings.max_hvps, enabled=progress
        )
        precond = preconditioned_sharpness(
            op,
            preconditioner,
            tol=settings.tol,
            max_hvps=settings.max_hvps,
            top_k=settings.top_k,
            generator=stream("preconditioned"),
            lambda_max=float(plain.value) if plain is not None and identity else None,
            **basis_options,
        ).estimates()
        precond = finished.put("preconditioned", tagged(precond, "preconditioned"))
        op.close()
    blockwise: list[tuple[str, Estimate]] = []
    if partitions:
        from smoothprobe.suites.blockwise import measure_blockwise

        for partition in partitions:
            name = f"blockwise:{partition.name}"
            if (found := finished.get(name)) is not None:
                blockwise += [(partition.name, est) for est in found]
                continue
            _log(
                f"blockwise H(Φ) for {partition.name}: {partition.num_blocks} blocks",
                enabled=progress,
            )
            op = tracked(f"H({partition.name})", settings.block_hvps)
            loops = loop_checkpoint(
                resume,
                name.replace(":", "-"),
                run_identity,
                dist,
                label=name,
                on_resume=_resumed(op, progress=progress),
                every_seconds=save_every,
            )
            found = measure_blockwise(
                op,
                partition,
                max_hvps=settings.block_hvps,
                generator=stream(name),
                l2_norm=l2_estimate,
                chunk_size=plan.block,
                restarts=plan.ascent_restarts,
                checkpoint=loops,
            ).estimates()
            found = finished.put(name, tagged(found, name))
            if loops is not None:
                loops.remove()
            blockwise += [(partition.name, est) for est in found]
            op.close()
    if settings.graddiff and (found := finished.get("graddiff")) is None:
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
            chunk_size=plan.chunk_size,
            max_directions=plan.graddiff_samples,
        )
        found = finished.put(
            "graddiff", tagged(diff.estimates(confidence=settings.confidence), "graddiff")
        )
    if settings.graddiff:
        estimates += found
    if settings.noise_batch_size and (found := finished.get("noise")) is None:
        from smoothprobe.estimators.noise import gradient_noise

        _log(f"gradient noise at batch size {settings.noise_batch_size}", enabled=progress)
        base.release()  # the last phase takes no HVPs: its gradient graphs go (3.2 GiB at 124M)
        noise = gradient_noise(
            problem,
            batch_size=settings.noise_batch_size,
            confidence=settings.confidence,
            generator=stream("noise"),
            basis=None if identity else basis,
            groups=plan.noise_groups,
            chunk_size=plan.chunk_size,
        )
        found = finished.put("noise", tagged(noise.estimates(), "noise"))
    if settings.noise_batch_size:
        estimates += found
    records = [make_record(e, context) for e in estimates]
    records += [make_record(e, context, partition=name) for name, e in blockwise]
    # Adam's preconditioner lives in parameter coordinates: measured there whatever the basis
    records += [make_record(e, replace(context, basis="identity")) for e in precond]
    _log(
        f"done in {time.perf_counter() - t0:.1f} s, {base.cost.hvps} HVPs, "
        f"{base.cost.gradients} gradients"
        + "".join(f"; {peak}" for peak in [peak_report(problem.device, budget)] if peak),
        enabled=progress,
    )
    return MeasureResult(records, estimates + [e for _, e in blockwise] + precond)
