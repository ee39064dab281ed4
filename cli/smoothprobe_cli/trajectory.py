"""``smoothprobe trajectory``: measure every checkpoint of a run, resumably, into one table."""

from __future__ import annotations

import click

from smoothprobe_cli.main import apply_threads, cli, data_options, load, on_interrupt
from smoothprobe_cli.measure import make_settings, measure_options
from smoothprobe_cli.output import FORMATS, render
from smoothprobe_cli.validate import writable_file_callback


def saved_so_far(out: str) -> str:
    """What an interrupted trajectory left in ``out`` and how to resume it."""
    import json
    from pathlib import Path

    names = set()
    if Path(out).exists():
        for line in Path(out).read_text(encoding="utf-8").splitlines():
            try:
                names.add(json.loads(line).get("checkpoint"))
            except (json.JSONDecodeError, AttributeError):
                continue
    if not names:
        return f"no checkpoint was finished, so {out} holds nothing new; run the same command again"
    return (
        f"{out} holds the records of {len(names)} checkpoint(s), each saved when it finished; "
        "run the same command again to resume: it skips them"
    )


@cli.command()
@click.argument("source")
@data_options
@measure_options
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    callback=writable_file_callback,
    help="JSON-lines records file; re-running with the same settings resumes it.",
)
@click.option(
    "--order",
    type=click.Choice(["auto", "iter_num", "name"]),
    default="auto",
    show_default=True,
    help="Order checkpoints by iter_num (read from each) or name.",
)
@click.option(
    "--step-geometries",
    default="l2,linf",
    show_default=True,
    help="Geometries of the step-wise ratio ‖∇L(θ_{t+1})−∇L(θ_t)‖_*/‖θ_{t+1}−θ_t‖: "
    "l2, linf, or partition specs (comma-separated).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output on stdout: table (one row per checkpoint), or every record as json or csv.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def trajectory(
    source,
    out,
    fmt,
    order,
    step_geometries,
    quiet,
    data_path,
    spec,
    batch_size,
    num_batches,
    block_size,
    dtype,
    device,
    include_frozen,
    trust_pickle,
    seed,
    threads,
    **options,
):
    """Measure a series of checkpoints of one run (SOURCE: a directory or a glob).

    Each checkpoint gets the estimates of `measure` plus the step-wise gradient-difference
    ratio to its predecessor, on the same fixed sample. Interrupt it at any time: re-running
    the same command skips checkpoints already measured with the same settings.

    \b
    Example:
      smoothprobe trajectory 'out/ckpt_*.pt' --data val.bin --norm l2 --out traj.jsonl
    """
    from smoothprobe.measure import run_measurement
    from smoothprobe.partitions import build_partition
    from smoothprobe.trajectory import run_trajectory, trajectory_table
    from smoothprobe_cli.main import join_distributed, resolve_device_name

    on_interrupt(lambda: saved_so_far(out))
    compute = resolve_device_name(device)
    ctx, is_main = join_distributed(compute)
    settings = make_settings(seed=seed, device=compute, **options)
    settings.validate()
    if ctx is not None:  # other ranks resume from a private copy of rank 0's file; it writes
        out, quiet = _rank_output(out, quiet, is_main=is_main)
    header = apply_threads(threads)
    if not quiet:
        click.echo(f"[smoothprobe] {header}", err=True)
    load_kwargs = dict(
        data_path=data_path,
        spec=spec,
        batch_size=batch_size,
        num_batches=num_batches,
        block_size=block_size,
        dtype=dtype,
        device=device,
        include_frozen=include_frozen,
        trust_pickle=trust_pickle,
        seed=seed,
    )
    cache: dict[str, object] = {}

    def loaded(path):
        if str(path) not in cache:
            cache.clear()  # one checkpoint in memory at a time
            cache[str(path)] = load(str(path), **load_kwargs)
        return cache[str(path)]

    def measure_one(path):
        return run_measurement(loaded(path), settings, progress=not quiet).records

    def gradient_of(path):
        problem = loaded(path).problem
        return problem.theta, problem.gradient(), problem.layout, problem.constants

    names = [g.strip() for g in step_geometries.split(",") if g.strip()]
    geometries = []
    for name in names:
        if name in ("l2", "linf"):
            geometries.append(name)
        else:
            from smoothprobe.trajectory import list_checkpoints

            first = list_checkpoints(source, order=order)[0].path
            problem = loaded(first).problem
            geometries.append(build_partition(name, problem.layout, n_head=loaded(first).n_head))
    resume_key = {
        "measure": settings.key(),
        **{k: v for k, v in load_kwargs.items() if k != "trust_pickle"},
        "step_geometries": names,
    }
    records = run_trajectory(
        source,
        out=out,
        measure_one=measure_one,
        gradient_of=gradient_of,
        settings=resume_key,
        geometries=geometries,
        order=order,
        progress=not quiet,
    )
    if not is_main:
        return
    if fmt == "table":
        click.echo(trajectory_table(records).to_string())
    else:
        click.echo(render(records, fmt), nl=False)


def _rank_output(out, quiet, *, is_main):
    """Rank 0 keeps ``out``; the others get a private copy of it as it is now (so every rank
    resumes at the same checkpoint), taken before a barrier that rank 0 waits at."""
    import shutil
    import tempfile
    from pathlib import Path

    import torch.distributed as dist

    if not is_main:
        copy = Path(tempfile.mkdtemp(prefix="smoothprobe-rank-")) / "trajectory.jsonl"
        if out and Path(out).exists():
            shutil.copyfile(out, copy)
        out, quiet = str(copy), True
    dist.barrier()
    return out, quiet
