"""``smoothprobe measure``: ℓ2, ℓ∞ and blockwise smoothness of one checkpoint."""

from __future__ import annotations

import click

from smoothprobe.phase_state import SAVE_EVERY
from smoothprobe_cli.main import cli, data_options, on_interrupt, pass_loaded
from smoothprobe_cli.output import FORMATS, render
from smoothprobe_cli.validate import (
    basis_callback,
    blocks_callback,
    check_against_model,
    extras_callback,
    geometry_callback,
    method_callback,
    writable_file_callback,
)


def _memory(ctx, param, value):
    """Parses --memory before any work (a bad value is a usage error, exit 2)."""
    if value is None:
        return None
    from smoothprobe.errors import SmoothprobeError
    from smoothprobe.memory_plan import parse_memory

    try:
        parse_memory(value)
    except SmoothprobeError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _split_list(ctx, param, value):
    """Accepts repeated options and comma-separated lists alike."""
    out: list[str] = []
    for item in value or ():
        out += [v.strip() for v in item.split(",") if v.strip()]
    return tuple(out)


MEASURE_OPTIONS = [
    click.option(
        "--norm",
        type=click.Choice(["l2", "linf", "both", "spectral", "all", "none"]),
        default="both",
        show_default=True,
        help="Geometry: ℓ2 (SGD), ℓ∞ (Adam), both (adds ρ), spectral (Muon: ℓ2 + H_op, ρ_op), "
        "all (ℓ2 + ℓ∞ + spectral), or none.",
    ),
    click.option(
        "--spectral-scale",
        type=click.Choice(["one", "rms"]),
        default="one",
        show_default=True,
        help="Per-matrix scale of the spectral norm: one (Muon) or rms (√(fan_in/fan_out), Scion).",
    ),
    click.option(
        "--spectral-matrices",
        multiple=True,
        callback=_split_list,
        help="Regexes naming the Muon matrices (default: every ≥2-D tensor that is not an "
        "embedding or head).",
    ),
    click.option(
        "--spectral-hvps",
        type=click.IntRange(min=1),
        default=None,
        help="HVP budget of the spectral upper bound (default: exact when d ≤ 20,000, else "
        "sketched).",
    ),
    click.option(
        "--polar",
        type=click.Choice(["svd", "newton-schulz"]),
        default="svd",
        show_default=True,
        help="Polar factors of the spectral lower bound: batched SVD or checked Newton–Schulz.",
    ),
    click.option(
        "--preconditioner",
        type=click.Choice(["none", "adam"]),
        default="none",
        show_default=True,
        help="adam: sharpness λ(P⁻¹H) with P from the checkpoint's Adam state, next to the "
        "threshold (2+2β₁)/((1−β₁)η).",
    ),
    click.option(
        "--tol",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=1e-6,
        show_default=True,
        help="Lanczos relative residual tolerance.",
    ),
    click.option(
        "--max-hvps",
        type=click.IntRange(min=2),
        default=300,
        show_default=True,
        help="Lanczos HVP budget.",
    ),
    click.option(
        "--top-k",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Number of top eigenvalues to converge.",
    ),
    click.option(
        "--with",
        "extras",
        multiple=True,
        callback=extras_callback,
        help="Extra ℓ2 quantities: trace, frobenius, density (comma-separated).",
    ),
    click.option(
        "--method",
        default="auto",
        show_default=True,
        callback=method_callback,
        help="(1,1)-norm method: auto, two-phase, cauchy-median, cauchy-iqr, "
        "cauchy-geomean, uniform, stratified.",
    ),
    click.option(
        "--hvps",
        type=click.IntRange(min=2),
        default=256,
        show_default=True,
        help="(1,1)-norm HVP budget.",
    ),
    click.option(
        "--hinf-hvps",
        type=click.IntRange(min=0),
        default=2048,
        show_default=True,
        help="HVP budget of the certified H∞ bracket (hinf_lower, hinf_upper) in the ℓ∞ "
        "suite; 0 skips it.",
    ),
    click.option(
        "--confidence",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.95,
        show_default=True,
        help="Level of confidence intervals.",
    ),
    click.option(
        "--blocks",
        multiple=True,
        callback=blocks_callback,
        help="Partitions for blockwise H(Φ): tensor, layer, row, head, one, singleton, "
        "or a regex (repeatable).",
    ),
    click.option(
        "--block-hvps",
        type=click.IntRange(min=2),
        default=None,
        help="HVP budget per partition (default: 800 for the ascent + up to 20,000 "
        "for U(Φ), exact when d fits, sketched otherwise).",
    ),
    click.option(
        "--basis",
        default="identity",
        show_default=True,
        callback=basis_callback,
        help="Basis: identity, hadamard, block-haar:K, matrix, permutation, sign.",
    ),
    click.option(
        "--graddiff",
        multiple=True,
        type=click.FloatRange(0, min_open=True),
        help="Radius for sampled gradient differences (repeatable).",
    ),
    click.option(
        "--graddiff-samples",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Perturbations per radius.",
    ),
    click.option(
        "--graddiff-geometry",
        default="l2",
        show_default=True,
        callback=geometry_callback,
        help="Geometry of the perturbations: l2, linf, or a partition spec.",
    ),
    click.option(
        "--noise",
        "noise_batch_size",
        type=click.IntRange(min=0),
        default=0,
        help="Measure gradient noise at this minibatch size (0: off).",
    ),
    click.option(
        "--chunk-size",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many probes per batched backward (lower: less memory).",
    ),
    click.option(
        "--memory",
        default=None,
        callback=_memory,
        help="Memory budget of the run, e.g. 16GiB, or a fraction of the memory available "
        "now, on the GPU when computing there (default: 0.7). Sizes graphs, probe blocks "
        "and the Lanczos basis; the plan is printed before any work.",
    ),
    click.option(
        "--retain-graphs",
        type=click.Choice(["auto", "yes", "no"]),
        default="auto",
        show_default=True,
        help="Keep every batch's gradient graph alive between HVPs.",
    ),
]


def measure_options(fn):
    """Applies every measurement option (what to measure and how) to a command."""
    for option in reversed(MEASURE_OPTIONS):
        fn = option(fn)
    return fn


def make_settings(
    *,
    seed,
    device=None,
    norm,
    tol,
    max_hvps,
    top_k,
    extras,
    method,
    hvps,
    hinf_hvps,
    confidence,
    blocks,
    block_hvps,
    basis,
    graddiff,
    graddiff_samples,
    graddiff_geometry,
    noise_batch_size,
    chunk_size,
    retain_graphs,
    memory=None,
    spectral_scale="one",
    spectral_matrices=(),
    spectral_hvps=None,
    polar="svd",
    preconditioner="none",
):
    """Builds MeasureSettings from the options of ``measure_options`` (a fractional
    ``memory`` is of ``device``'s memory: a GPU's own, else the host's)."""
    from smoothprobe.measure import MeasureSettings
    from smoothprobe.memory_plan import parse_memory

    return MeasureSettings(
        norm=norm,
        tol=tol,
        max_hvps=max_hvps,
        top_k=top_k,
        extras=extras,
        method=method,
        hvps=hvps,
        hinf_hvps=hinf_hvps,
        confidence=confidence,
        blocks=blocks,
        block_hvps=block_hvps,
        basis=basis,
        graddiff=tuple(graddiff),
        graddiff_samples=graddiff_samples,
        graddiff_geometry=graddiff_geometry,
        noise_batch_size=noise_batch_size,
        seed=seed,
        chunk_size=chunk_size,
        retain_graphs={"auto": None, "yes": True, "no": False}[retain_graphs],
        memory=None if memory is None else parse_memory(memory, device=device),
        spectral_scale=spectral_scale,
        spectral_matrices=tuple(spectral_matrices),
        spectral_hvps=spectral_hvps,
        polar=polar,
        preconditioner=preconditioner,
    )


@cli.command()
@click.argument("checkpoint", default="example:gpt")
@data_options
@measure_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format on stdout.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    callback=writable_file_callback,
    help="Also write the records as JSON lines to this file (written atomically; checked "
    "for writing before the run). Finished phases are kept beside it until then, so the "
    "same command run again after an interruption resumes.",
)
@click.option("--append", is_flag=True, help="Append to --out instead of replacing it.")
@click.option(
    "--save-every",
    type=click.FloatRange(min=0),
    default=SAVE_EVERY,
    show_default=True,
    help="Seconds between two saves of a long phase's progress beside --out (the Lanczos "
    "basis, the ℓ∞ and blockwise loops; gigabytes at 124M parameters). An interrupted run "
    "resumes from the last save: lower it on preemptible machines; 0 saves at every step.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@pass_loaded
def measure(loaded, seed, fmt, out, append, save_every, quiet, **options):
    """Measure smoothness constants of CHECKPOINT (default: the built-in tiny GPT).

    \b
    Examples:
      smoothprobe measure                                  # built-in example, ℓ2 + ℓ∞
      smoothprobe measure out/ckpt.pt --data val.bin --norm linf --hvps 512
      smoothprobe measure ckpt.pt --data val.bin --blocks tensor,head --basis hadamard
      smoothprobe measure model.safetensors --spec my_spec.py --data eval.pt --out m.jsonl
      torchrun --standalone --nproc_per_node 2 -m smoothprobe measure ckpt.pt --data val.bin
      smoothprobe measure out/ckpt.pt --data val.bin --norm spectral --preconditioner adam
    """
    from smoothprobe.finished_phases import phases_path
    from smoothprobe.measure import run_measurement
    from smoothprobe_cli.main import join_distributed

    resume = phases_path(out) if out else None
    on_interrupt(lambda: interrupted_note(out, resume, save_every=save_every))
    _, is_main = join_distributed(loaded.problem.device)
    settings = make_settings(seed=seed, device=loaded.problem.device, **options)
    check_against_model(
        loaded,
        basis=settings.basis,
        blocks=settings.blocks,
        graddiff_geometry=settings.graddiff_geometry if settings.graddiff else None,
        seed=seed,
    )
    result = run_measurement(
        loaded, settings, progress=not quiet, resume=resume, save_every=save_every
    )
    if not is_main:  # under torchrun only rank 0 prints and writes
        return
    click.echo(render(result.records, fmt), nl=False)
    if out:
        write_out(out, result.records, append=append)
        resume.unlink(missing_ok=True)


def interrupted_note(out: str | None, resume, *, save_every: float = SAVE_EVERY) -> str:
    """What an interrupted ``measure`` kept (its phases' progress saved every ``save_every``
    seconds), and how to go on."""
    if not out:
        return (
            "nothing was saved: without --out a measurement keeps its results in memory; "
            "pass --out FILE to save every finished phase and resume by running it again"
        )
    import json

    try:
        names = list(json.loads(resume.read_text(encoding="utf-8"))["phases"])
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    from smoothprobe.finished_phases import lanczos_state_path, loop_state_prefix

    lanczos = lanczos_state_path(resume)
    loops = loop_state_prefix(resume, "linf")
    states = sorted(loops.parent.glob(f"{loops.name}.*.pt"))
    kept_states = []
    every = (
        "saved at every step"
        if not save_every
        else f"saved every {save_every / 60:g} minutes"
        if save_every >= 60
        else f"saved every {save_every:g} s"
    )
    if lanczos.is_file():
        kept_states.append(f"the ℓ2 phase's Lanczos state ({every}) is kept in {lanczos}")
    if states:
        kept_states.append(f"the ℓ∞ phase's progress ({every}) is kept in {loops}.*.pt")
    partial = "; ".join(kept_states)
    if not names and not partial:
        return "no phase had finished, so nothing was kept; run the same command to start over"
    kept = [f"finished phases ({', '.join(names)}) are kept in {resume}"] if names else []
    return (
        "; ".join(kept + ([partial] if partial else []))
        + f"; run the same command again to resume: it skips what was done and writes {out} "
        "at the end"
    )


def write_out(out: str, records, *, append: bool) -> None:
    """Writes the records to ``out``; if that fails after the run, saves a copy and says where."""
    from smoothprobe.errors import quoted
    from smoothprobe.records import save_copy, write_records

    try:
        write_records(out, records, append=append)
    except OSError as exc:
        copy = save_copy(records, out)
        where = f"a copy was saved to {copy}" if copy else "no copy could be saved either"
        raise click.ClickException(
            f"could not write {out} ({quoted(exc)}); the records are printed above and {where}"
        ) from None
