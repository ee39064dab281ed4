"""``smoothprobe report`` and ``smoothprobe compare``: records → report, two runs side by side."""

from __future__ import annotations

from pathlib import Path

import click

from smoothprobe_cli.main import cli


def load_record_files(paths):
    """Loads records files as one DataFrame (``read_records`` rejects lines that are not records).

    Raises:
        SmoothprobeError: a missing file, a line that is not JSON, or a JSON line that is not a
            record.
    """
    from smoothprobe.records import load_records

    return load_records(list(paths))


@cli.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Report directory (default: reports/STEM of the first file). Replaced as a "
    "whole; must be new, empty or a previous report.",
)
@click.option("--title", default="smoothprobe report", show_default=True, help="Report title.")
@click.option(
    "--checkpoint",
    default=None,
    help="Checkpoint the headline is about (default: the latest measured).",
)
@click.option(
    "--step",
    type=int,
    default=None,
    help="Its step, when one checkpoint name was measured at several steps.",
)
def report(records, out, title, checkpoint, step):
    """Write an HTML and Markdown report from RECORDS (JSON lines from measure --out).

    The report directory gets index.html (self-contained, figures embedded), report.md with the
    PNG figures beside it, the tables as CSV, and headline.json.

    \b
    Examples:
      smoothprobe report m.jsonl --out reports/mine
      smoothprobe report run/*.jsonl --out reports/run --title "nanoGPT shakespeare-char"
    """
    from smoothprobe.report.render import write_report

    frame = load_record_files(records)
    target = Path(out) if out else Path("reports") / Path(records[0]).stem
    written = write_report(frame, target, title=title, checkpoint=checkpoint, step=step)
    figures = sorted(p.name for p in written.glob("*.png"))
    click.echo(
        f"wrote {written / 'index.html'} and {written / 'report.md'} "
        f"({len(frame)} records, {len(figures)} figures)"
    )


def two_labels(value: str) -> tuple[str, str]:
    """``--labels A,B``: exactly two non-empty names (a usage error otherwise)."""
    names = [s.strip() for s in value.split(",")]
    if len(names) != 2 or not all(names):
        raise click.BadParameter(
            f"{value!r}: give two names separated by a comma, e.g. before,after"
        )
    return names[0], names[1]


@cli.command()
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option(
    "--labels",
    default="A,B",
    show_default=True,
    callback=lambda ctx, param, value: two_labels(value),
    help="Names of the two sides, comma-separated.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format on stdout (csv: the table alone; json: both sides and the rows).",
)
def compare(a, b, labels, fmt):
    """Print the constants of two runs side by side (their latest checkpoints).

    A and B are records files (JSON lines from measure --out), e.g. two checkpoints, two bases
    or two models.

    \b
    Examples:
      smoothprobe compare before.jsonl after.jsonl --labels before,after
      smoothprobe compare a.jsonl b.jsonl --format markdown >> notes.md
    """
    from smoothprobe.report.comparison import compare_runs

    found = compare_runs(load_record_files([a]), load_record_files([b]), labels=labels)
    click.echo(found.render(fmt).rstrip("\n"))
