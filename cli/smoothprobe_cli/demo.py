"""``smoothprobe demo``: train a tiny GPT, measure its geometry and write the report."""

from __future__ import annotations

import re

import click

from smoothprobe_cli.main import cli, on_interrupt, threads_option
from smoothprobe_cli.validate import writable_dir_callback


def plain(markdown: str) -> str:
    """The headline paragraph without Markdown emphasis and code marks, for the terminal."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", markdown).replace("`", "")


@cli.command()
@click.option(
    "--out",
    default="reports/demo-local",
    show_default=True,
    type=click.Path(file_okay=False),
    callback=writable_dir_callback,
    help="Report directory (replaced as a whole: new, empty or a previous report). The "
    "default is git-ignored; `--out reports/demo` regenerates the committed reference report.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    callback=writable_dir_callback,
    help="Data and checkpoints (default: OUT-run beside the report; git-ignored).",
)
@click.option(
    "--budget",
    type=click.Choice(["full", "small"]),
    default="full",
    show_default=True,
    help="full: the committed report (< 3 min on 2 cores); small: seconds (tests).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Adam steps (default: the budget's; full: 600).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of initialization, batches, evaluation sample and estimators.",
)
@threads_option(default=1, help_default="1; the models are tiny: one thread is fast and repeatable")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def demo(out, work_dir, budget, steps, seed, threads, quiet):
    """Train a tiny character-level GPT on Python's standard library and report its geometry.

    Trains with Adam (nanoGPT-style checkpoints and train.bin/val.bin in the work directory),
    measures ℓ2, ℓ∞ and blockwise smoothness constants in the original and a rotated (Hadamard)
    basis, and writes index.html, report.md, the figures and records.jsonl to OUT.

    \b
    Examples:
      smoothprobe demo                        # → reports/demo-local/index.html
      smoothprobe demo --budget small --out /tmp/demo
      smoothprobe demo --out reports/demo     # regenerate the committed reference report
      smoothprobe measure reports/demo-local-run/ckpt_000600.pt \\
          --data reports/demo-local-run/val.bin
    """
    from smoothprobe.demo import run_demo
    from smoothprobe.report.render import headline_text

    on_interrupt(
        lambda: (
            f"the report in {out} was not written (a previous one there is unchanged); "
            "the demo cannot resume: run the same command again to start over"
        )
    )

    result = run_demo(
        out,
        budget=budget,
        steps=steps,
        seed=seed,
        work_dir=work_dir,
        threads=threads,
        progress=not quiet,
    )
    total = result.times["total"]
    click.echo(plain(headline_text(result.headline)))
    click.echo("")
    click.echo(
        f"report      {result.report_dir / 'index.html'} (and report.md, figures, "
        f"{result.records_path.name})"
    )
    click.echo(
        f"checkpoints {result.work_dir} ({len(result.checkpoints)} nanoGPT ckpt_*.pt, "
        "train.bin, val.bin, meta.pkl)"
    )
    click.echo(f"time        {total.wall:.0f} s (CPU {total.cpu:.0f} s)")
