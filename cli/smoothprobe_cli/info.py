"""``smoothprobe info``: the parameter layout and the loss on the evaluation sample."""

from __future__ import annotations

import json

import click

from smoothprobe_cli.main import cli, data_options, pass_loaded


def sample_weight(problem) -> str:
    """The sample's total weight, what it counts, and what it is for."""
    total = f"{problem.num_examples:,.0f}"
    if problem.weight_unit == "tokens":
        return (
            f"{total} scored tokens (each batch's mean loss is weighted by its scored tokens, "
            f"so the loss is the mean over all {total} tokens)"
        )
    return (
        f"{total} examples (each batch's mean loss is weighted by its examples, "
        f"so the loss is the mean over all {total} examples)"
    )


@cli.command()
@click.argument("checkpoint", default="example:gpt")
@data_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@pass_loaded
def info(loaded, seed, fmt):
    """Print the parameter layout (d, tensors, tied groups, dtype) and the loss.

    CHECKPOINT is a nanoGPT ckpt.pt, a state dict (with --spec), or example:gpt (default).

    \b
    Example:
      smoothprobe info out/ckpt.pt --data data/shakespeare_char/val.bin
    """
    import torch

    problem = loaded.problem
    summary = {
        "checkpoint": loaded.path,
        "kind": loaded.kind,
        "step": loaded.step,
        "d": problem.d,
        "dtype": str(problem.dtype).removeprefix("torch."),
        "tensors": problem.layout.summary(),
        "tied": [[s.name, *s.aliases] for s in problem.layout.slots if s.aliases],
        "batches": len(problem.batches),
        "sample_weight": problem.num_examples,
        "sample_weight_unit": problem.weight_unit,
        "loss": problem.loss(),
        "model_args": loaded.model_args,
        "threads": torch.get_num_threads(),
    }
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"checkpoint  {loaded.path} ({loaded.kind}"
        f"{', step ' + str(loaded.step) if loaded.step is not None else ''})"
    )
    click.echo(
        f"d           {problem.d:,} parameters in {len(problem.layout.slots)} tensors, "
        f"{summary['dtype']}"
    )
    for group in summary["tied"]:
        click.echo(f"tied        {' = '.join(group)} (counted once)")
    click.echo(f"sample      {len(problem.batches)} batches, {sample_weight(problem)}")
    click.echo(f"loss        {summary['loss']:.6f}")
    click.echo(f"threads     {summary['threads']} (torch CPU threads; --threads to change)")
    click.echo("")
    width = max(len(s.name) for s in problem.layout.slots)
    click.echo(f"{'tensor':<{width}}  {'shape':<16} {'numel':>10}")
    for s in problem.layout.slots:
        click.echo(f"{s.name:<{width}}  {str(list(s.shape)):<16} {s.numel:>10,}")
