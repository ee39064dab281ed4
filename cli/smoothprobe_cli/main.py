"""The ``smoothprobe`` command line: a thin layer over the library (parse, call, print).

Library errors (``SmoothprobeError``) become one line on stderr and exit code 1; usage errors
exit 2 (click's convention); results go to stdout or ``--out``; progress goes to stderr.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading

import click

from smoothprobe.errors import SmoothprobeError

# Library arguments named by SmoothprobeError.option → the command-line flag that sets them.
FLAGS = {
    "basis": "--basis",
    "block_size": "--block-size",
    "blocks": "--blocks",
    "chunk_size": "--chunk-size",
    "device": "--device",
    "data_path": "--data",
    "dtype": "--dtype",
    "include_frozen": "--include-frozen",
    "memory": "--memory",
    "n_head": "--spec (returning n_head) or a nanoGPT checkpoint",
    "order": "--order",
    "radii": "--graddiff",
    "retain_graphs": "--retain-graphs",
    "spec": "--spec",
    "trust_pickle": "--trust-pickle",
}


def with_flag(exc: SmoothprobeError) -> str:
    """The library's message plus the command-line option that fixes it (the library never
    names flags: its callers may not be this command line)."""
    flag = FLAGS.get(getattr(exc, "option", None) or "")
    return f"{exc} [option: {flag}]" if flag else str(exc)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's stop): handled as Ctrl-C is, exit code 143."""


def _terminate(signum, frame) -> None:
    raise Terminated


class SmoothprobeGroup(click.Group):
    """Turns library errors into ``click.ClickException`` (one line, exit code 1), and Ctrl-C
    or SIGTERM into one line saying what was kept (exit code 130 or 143)."""

    def invoke(self, ctx: click.Context):
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if main else None
        try:
            return super().invoke(ctx)
        except SmoothprobeError as exc:
            raise click.ClickException(with_flag(exc)) from None
        except KeyboardInterrupt as exc:
            explain = ctx.meta.get(ON_INTERRUPT)
            if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun rank 0 speaks for all
                text = explain() if explain else "nothing was written"
                click.echo(f"interrupted: {text}", err=True)
            sys.exit(143 if isinstance(exc, Terminated) else 130)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


ON_INTERRUPT = "smoothprobe.on_interrupt"


def on_interrupt(explain) -> None:
    """Registers what the running command says on Ctrl-C: what was saved, how to resume."""
    click.get_current_context().meta[ON_INTERRUPT] = explain


@click.group(cls=SmoothprobeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="smoothprobe", prog_name="smoothprobe")  # read lazily
def cli() -> None:
    """Measure the geometry of a loss landscape from a checkpoint.

    \b
    Examples:
      smoothprobe measure                       # built-in tiny GPT, ℓ2 and ℓ∞
      smoothprobe measure ckpt.pt --data train.bin --norm linf
      smoothprobe info ckpt.pt --data val.bin
    """


def threads_option(default=None, help_default="the cores this process may use that are idle"):
    """``--threads N`` (environment: SMOOTHPROBE_THREADS): torch's CPU threads."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=default,
        envvar="SMOOTHPROBE_THREADS",
        show_envvar=True,
        help=f"CPU threads for torch (default: {help_default}). More threads than free cores "
        "makes every HVP many times slower, with the same numbers.",
    )


def apply_threads(threads: int | None) -> str:
    """Sets torch's thread count; returns the run-header line that states it and its source."""
    from smoothprobe.threads import set_threads, usable_cores

    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("threads") if ctx else None
    n = set_threads(threads)
    if source == click.core.ParameterSource.ENVIRONMENT:
        origin = "from SMOOTHPROBE_THREADS"
    elif threads is not None and source != click.core.ParameterSource.DEFAULT:
        origin = "from --threads"
    else:
        origin = "default: the idle ones; set --threads or SMOOTHPROBE_THREADS"
    return f"torch threads {n} of {usable_cores()} usable cores ({origin})"


def data_options(fn):
    """Options shared by every command that loads a checkpoint."""
    options = [
        click.option(
            "--data",
            "data_path",
            type=click.Path(dir_okay=False),
            help="Evaluation data: nanoGPT .bin tokens (meta.pkl beside it is read), a "
            "text file (bytes as tokens), or .pt/.npz holding x and y.",
        ),
        click.option(
            "--spec",
            help="Python file (function smoothprobe_spec) or module:function "
            "that builds model, loss and data for a plain state dict.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=8,
            show_default=True,
            help="Sequences (examples) per batch of the evaluation sample.",
        ),
        click.option(
            "--num-batches",
            type=click.IntRange(min=1),
            default=4,
            show_default=True,
            help="Batches in the evaluation sample.",
        ),
        click.option(
            "--block-size",
            type=click.IntRange(min=1),
            help="Sequence length for token data (default: the model's).",
        ),
        click.option(
            "--dtype",
            type=click.Choice(["checkpoint", "float32", "float64", "bfloat16"]),
            default="checkpoint",
            show_default=True,
            help="Compute dtype (estimator accumulations stay float64).",
        ),
        click.option(
            "--device",
            default=None,
            help="Compute device: cpu, cuda or cuda:N (default: cuda when available).",
        ),
        click.option(
            "--include-frozen",
            is_flag=True,
            help="Also measure parameters with requires_grad=False.",
        ),
        click.option(
            "--trust-pickle",
            is_flag=True,
            help="UNSAFE: allow unpickling arbitrary objects from the checkpoint (runs "
            "code from the file). Only for files you trust.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Seed of the data sample and of every estimator.",
        ),
        threads_option(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load(
    checkpoint: str,
    *,
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
):
    """Loads a checkpoint with the shared options."""
    from smoothprobe.checkpoints import DataOptions, load_checkpoint
    from smoothprobe.devices import check_dtype, resolve_device

    device = resolve_device(device)

    data = DataOptions(
        path=data_path,
        batch_size=batch_size,
        num_batches=num_batches,
        block_size=block_size,
        seed=seed,
    )
    loaded = load_checkpoint(
        checkpoint,
        data=data,
        spec=spec,
        dtype=dtype,
        device=device,
        include_frozen=include_frozen,
        trust_pickle=trust_pickle,
    )
    check_dtype(loaded.problem.dtype, loaded.problem.device)
    return loaded


def pass_loaded(fn):
    """Decorator: replaces the shared options by a loaded checkpoint argument ``loaded``."""

    @functools.wraps(fn)
    def wrapper(
        checkpoint,
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
        **kwargs,
    ):
        header = apply_threads(threads)
        if "quiet" in kwargs and not kwargs["quiet"]:
            click.echo(f"[smoothprobe] {header}", err=True)
        loaded = load(
            checkpoint,
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
        return fn(loaded=loaded, seed=seed, **kwargs)

    return wrapper


def resolve_device_name(device):
    """The --device value as a checked torch.device."""
    from smoothprobe.devices import resolve_device

    return resolve_device(device)


def join_distributed(device):
    """Joins torchrun's process group when launched by it; returns (context or None, is_main)."""
    import atexit

    from smoothprobe.distributed import init_distributed

    ctx = init_distributed(device)
    if ctx is not None:
        atexit.register(_leave_distributed)
    return ctx, ctx is None or ctx.is_main


def _leave_distributed() -> None:
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 (a peer may already be gone; nothing to tidy then)
        pass


def _register() -> None:
    from smoothprobe_cli import (  # noqa: F401  (commands attach themselves)
        demo,
        info,
        measure,
        report,
        reproduce,
        trajectory,
    )


_register()
