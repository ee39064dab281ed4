"""``smoothprobe reproduce``: train the optimizer family, measure the constants, compare."""

from __future__ import annotations

import dataclasses

import click

from smoothprobe_cli.main import cli


@cli.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    help="example:gpt, example:cnn or a checkpoint path (repeatable; default: both examples).",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False),
    help="Training data of a checkpoint model (.bin tokens, text, or .pt/.npz with x and y).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Minibatch of a checkpoint model (the examples use their own).",
)
@click.option(
    "--out",
    default="reports/reproduction",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Report directory; its .cache/ holds finished runs (rerun to resume).",
)
@click.option(
    "--quick", is_flag=True, help="Small test setting: the tiny GPT, 16 steps (under a minute)."
)
@click.option("--steps", type=click.IntRange(min=4), help="Steps per run (default 240; quick 16).")
@click.option(
    "--seeds", type=click.IntRange(min=1), help="Seeds per optimizer and learning rate (default 3)."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Torch threads (tiny models: one thread is fast and repeatable).",
)
@click.option(
    "--hinf-hvps",
    type=click.IntRange(min=0),
    default=None,
    help="HVPs of the H∞ bracket (SDP relaxation) per point (default 0: the bracket is "
    "[sign-ascent lower bound, min(‖H‖₁,₁ upper end, d·L₂)]; ≥ 145 when used).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def reproduce(models, data_path, batch_size, out, quick, steps, seeds, threads, hinf_hvps, quiet):
    """Train the Adam family and SGD, measure their geometry, and test the seed paper's claims.

    From one initialisation per seed and one data order, trains Adam, Adam in a rotated
    (Hadamard) basis, Adam-mini, blockwise Adam per tensor and per layer, AdaSGD, and SGD with
    and without momentum, each over a learning-rate grid; measures L₂, the H∞ bracket, H(Φ) and
    gradient noise at start, middle and end; writes index.html, report.md, figures, CSV tables,
    records and one computed verdict per claim to OUT.

    \b
    Examples:
      smoothprobe reproduce                          # tiny GPT and small CNN (~8 CPU-min)
      smoothprobe reproduce --quick --out /tmp/repro
      smoothprobe reproduce --model ckpt.pt --data train.bin --batch-size 8
    """
    import torch

    from smoothprobe.reproduce import ReproduceConfig, quick_config, run_reproduction

    config = quick_config() if quick else ReproduceConfig()
    changes = {"data_path": data_path, "batch_size": batch_size}
    if models:
        changes["models"] = tuple(models)
    if steps is not None:
        changes["steps"] = steps
        changes["eval_every"] = max(1, min(config.eval_every, steps))
    if seeds is not None:
        changes["seeds"] = seeds
    if hinf_hvps is not None:
        changes["budget"] = dataclasses.replace(config.budget, hinf_hvps=hinf_hvps)
    config = dataclasses.replace(config, **changes)
    config.validate()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = run_reproduction(config, out, progress=not quiet)
    finally:
        torch.set_num_threads(previous)
    for v in result["verdicts"]:
        click.echo(f"{v['model']:>5}  {v['verdict']:<15} {v['claim']}  ({v['evidence']})")
    click.echo(f"report  {out}/index.html (and report.md, figures/, tables/, records/)")
