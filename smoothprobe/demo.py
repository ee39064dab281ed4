"""The demo: train a tiny character-level GPT with Adam, measure its geometry, write the report.

``run_demo`` does what ``smoothprobe demo`` runs, with no input but Python's own standard
library:

1. **data** — the standard library's ``.py`` text, encoded with a character vocabulary, split
   90/10 into nanoGPT's ``train.bin`` / ``val.bin`` with ``meta.pkl`` beside them;
2. **training** — a nanoGPT-compatible GPT trained with Adam (seeded batches and initialization,
   one thread: deterministic), saving nanoGPT-style checkpoints ``ckpt_NNNNNN.pt`` (``model``,
   ``optimizer``, ``model_args``, ``iter_num``, ``best_val_loss``, ``config``) at evenly
   spaced steps;
3. **measurement** — each checkpoint loaded with ``load_checkpoint`` (the same path as
   ``smoothprobe measure ckpt.pt --data val.bin``) on a fixed held-out sample, and measured
   with ``run_measurement``: ℓ2 and ℓ∞ at every checkpoint (the over-training plot), and on the
   final one also blockwise H(Φ) for several partitions, in the identity basis and a rotated
   (Hadamard) basis;
4. **report** — the records as ``records.jsonl`` and the report (``index.html``, ``report.md``,
   PNGs, CSVs, ``headline.json``) written by ``smoothprobe.report.render.write_report``.

The work directory (data and checkpoints, a few MB) is kept so that every other command can be
tried on it, and holds a ``.gitignore`` so that it never lands in git; the report directory is
small and meant to be committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothprobe.checkpoints import DataOptions, load_checkpoint
from smoothprobe.data import (
    CharVocab,
    python_version_tag,
    sample_sequences,
    stdlib_text,
    write_token_file,
)
from smoothprobe.errors import SmoothprobeError
from smoothprobe.measure import MeasureSettings, run_measurement
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe.records import write_records

REPORT_MARKERS = ("index.html", "report.md", "headline.json")
RECORDS_NAME = "records.jsonl"
DATASET = "stdlib_char"


@dataclass(frozen=True)
class DemoBudget:
    """How much the demo trains and measures.

    Attributes:
        name: ``full`` (the committed report, < 3 min on 2 cores) or ``small`` (tests, seconds).
        model: nanoGPT ``model_args`` of the GPT.
        steps: Adam steps.
        checkpoints: checkpoints saved, evenly spaced, the last at ``steps``.
        lr: Adam learning rate (constant after a linear warm-up of ``warmup`` steps).
        warmup: warm-up steps.
        train_batch: sequences per training batch.
        max_chars: characters of standard-library text used.
        eval_batch_size: sequences per batch of the evaluation sample (held-out data).
        eval_batches: batches of the evaluation sample.
        dtype: compute dtype of every measurement.
        tol: Lanczos relative tolerance.
        final_hvps: (1,1)-norm HVP budget on the final checkpoint.
        step_hvps: (1,1)-norm HVP budget on the earlier checkpoints.
        blocks: partitions measured on the final checkpoint.
        block_hvps: HVP budget per partition (ascent plus upper bound).
        bases: bases of the final checkpoint (the first is the original one).
        extras: ℓ2 extras of the final checkpoint in the original basis (the spectrum is
            rotation invariant, so it is not measured again).
        graddiff: radii of the gradient-difference sweep (final checkpoint, original basis).
        graddiff_geometry: geometry of that sweep's perturbations.
        noise_batch_size: minibatch size of the gradient-noise estimate (0: off).
        spectral_hvps: HVP budget of the spectral upper bound on the final checkpoint (None:
            exact when d ≤ 20,000).
    """

    name: str
    model: dict[str, Any]
    steps: int
    checkpoints: int
    lr: float
    warmup: int
    train_batch: int
    max_chars: int
    eval_batch_size: int
    eval_batches: int
    dtype: str
    tol: float
    final_hvps: int
    step_hvps: int
    blocks: tuple[str, ...]
    block_hvps: int
    bases: tuple[str, ...] = ("identity", "hadamard")
    extras: tuple[str, ...] = ("density",)
    graddiff: tuple[float, ...] = ()
    graddiff_geometry: str = "linf"
    noise_batch_size: int = 0
    spectral_hvps: int | None = None


# The full budget, measured on this project's 2-core machine (one thread): d = 28,544, one HVP on
# the 16 × 32-token sample ≈ 20–30 ms in float32 and about twice that in float64, so float32 (the
# headline's uncertainty is the (1,1)-norm's CI, orders above float32 round-off); ≈ 6,300 HVPs in
# all, ≈ 140 s of CPU. block_hvps = 8 × 100 ascent steps + 560 for the sketched U(Φ) of the
# 28-tensor partition (Σ_b min(d_b, 20)); Adam-mini's head partition (594 blocks) would need
# ≈ 11,700 HVPs for a sketch, and its row-Frobenius fallback is too loose to say anything.
# The spectral (Muon) geometry on the final checkpoint adds ≈ 2,000 HVPs: 8 × ≤ 100 polar-ascent
# steps per geometry (matrices, mixed), 560 for the sketched block norms (spectral_hvps = 600;
# exact ones would cost d = 28,544) and a random-start Lanczos for R·L₂'s upper end; Adam's
# preconditioned sharpness adds 20–45 Lanczos HVPs per checkpoint (measured on 3 Dec 2026).
BUDGETS: dict[str, DemoBudget] = {
    "full": DemoBudget(
        name="full",
        model=dict(
            n_layer=2, n_head=4, n_embd=32, block_size=32, bias=True, vocab_size=64, dropout=0.0
        ),
        steps=600,
        checkpoints=5,
        lr=3e-3,
        warmup=30,
        train_batch=16,
        max_chars=200_000,
        eval_batch_size=8,
        eval_batches=2,
        dtype="float32",
        tol=1e-5,
        final_hvps=256,
        step_hvps=128,
        blocks=("tensor", "layer"),
        block_hvps=1360,
        graddiff=(1e-4, 1e-3, 1e-2, 3e-2),
        noise_batch_size=4,
        spectral_hvps=600,
    ),
    "small": DemoBudget(
        name="small",
        model=dict(
            n_layer=1, n_head=2, n_embd=8, block_size=16, bias=True, vocab_size=32, dropout=0.0
        ),
        steps=40,
        checkpoints=2,
        lr=1e-2,
        warmup=4,
        train_batch=8,
        max_chars=30_000,
        eval_batch_size=4,
        eval_batches=2,
        dtype="float64",
        tol=1e-6,
        final_hvps=64,
        step_hvps=32,
        blocks=("tensor", "layer"),
        block_hvps=1200,
        graddiff=(1e-3, 1e-2),
        noise_batch_size=2,
    ),
}


@dataclass
class StageTime:
    """Wall-clock and CPU seconds of one stage (CPU: this process, all threads)."""

    wall: float = 0.0
    cpu: float = 0.0


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        report_dir: the report directory.
        records_path: ``records.jsonl`` inside it.
        work_dir: data and checkpoints.
        checkpoints: checkpoint paths in training order.
        headline: ``bounds.headline_numbers`` of the final checkpoint.
        times: stage name → StageTime (``data``, ``training``, ``measuring``, ``report``,
            ``total``).
    """

    report_dir: Path
    records_path: Path
    work_dir: Path
    checkpoints: list[Path]
    headline: dict[str, Any]
    times: dict[str, StageTime] = field(default_factory=dict)


def log(message: str, *, enabled: bool) -> None:
    """Prints a demo step message on stderr."""
    if enabled:
        print(f"[smoothprobe demo] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(n)`` and restores the previous count.

    Tiny models gain nothing from intra-op threads, and on a busy machine spinning threads make
    them many times slower; one thread also makes every run bit-for-bit repeatable.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def timed(times: dict[str, StageTime], name: str) -> Iterator[None]:
    """Adds the wall-clock and CPU time of the block to ``times[name]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        stage = times.setdefault(name, StageTime())
        stage.wall += time.perf_counter() - wall
        stage.cpu += time.process_time() - cpu


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` distinct steps spaced evenly in (0, steps], the last one ``steps``.

    Raises:
        SmoothprobeError: ``steps`` < 1 or ``count`` < 1.
    """
    if steps < 1 or count < 1:
        raise SmoothprobeError(f"steps={steps} and checkpoints={count} must both be ≥ 1")
    return sorted({max(1, round(steps * (i + 1) / count)) for i in range(count)})


def check_report_dir(out: Path) -> None:
    """Fails early (before minutes of work) when ``out`` could not be replaced by a report.

    Raises:
        SmoothprobeError: ``out`` is a file, or a non-empty directory that is not a report.
    """
    if out.exists() and not out.is_dir():
        raise SmoothprobeError(f"--out {out} is a file; pass a directory name")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not names & set(REPORT_MARKERS):
            raise SmoothprobeError(
                f"--out {out} exists and is not a smoothprobe report; choose a new directory"
            )


def default_work_dir(out: Path) -> Path:
    """The work directory beside the report: ``reports/demo`` → ``reports/demo-run``."""
    return out.parent / f"{out.name}-run"


def prepare_data(work_dir: Path, *, vocab_size: int, max_chars: int) -> tuple[np.ndarray, Path]:
    """Writes ``train.bin``, ``val.bin`` and ``meta.pkl`` of standard-library text.

    Args:
        work_dir: target directory.
        vocab_size: character vocabulary size (the rarest characters share one id).
        max_chars: characters of text.

    Returns:
        (training tokens, path of ``val.bin``).
    """
    text = stdlib_text(max_chars=max_chars)
    vocab = CharVocab.from_text(text, size=vocab_size)
    tokens = vocab.encode(text)
    split = int(0.9 * len(tokens))
    write_token_file(work_dir / "train.bin", tokens[:split], meta=vocab.meta())
    write_token_file(work_dir / "val.bin", tokens[split:])
    return tokens[:split], work_dir / "val.bin"


def learning_rate(step: int, *, lr: float, warmup: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


def nanogpt_checkpoint(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    val_loss: float,
    config: dict[str, Any],
) -> dict[str, Any]:
    """The dict nanoGPT's ``train.py`` saves as ``ckpt.pt``."""
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "model_args": dataclasses.asdict(model.config),
        "iter_num": step,
        "best_val_loss": val_loss,
        "config": config,
    }


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary sibling, then rename: complete or absent."""
    from smoothprobe.atomic import atomic_write

    atomic_write(path, lambda fh: torch.save(obj, fh))


@torch.no_grad()
def evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean loss of ``model`` on (x, y) in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    loss = float(lm_loss(model(x), y))
    model.train(was_training)
    return loss


def train(
    work_dir: Path,
    tokens: np.ndarray,
    val_path: Path,
    *,
    budget: DemoBudget,
    steps: int,
    seed: int,
    progress: bool,
) -> list[Path]:
    """Trains the demo GPT with Adam and saves nanoGPT-style checkpoints.

    Args:
        work_dir: where ``ckpt_NNNNNN.pt`` go.
        tokens: training tokens.
        val_path: held-out tokens (for the validation loss stored in each checkpoint).
        budget: model and training settings.
        steps: Adam steps.
        seed: seed of initialization and batches.
        progress: tqdm bar on stderr.

    Returns:
        The checkpoint paths in training order.
    """
    from tqdm import tqdm

    config = GPTConfig.from_model_args(budget.model)
    block = config.block_size
    with torch.random.fork_rng(devices=[]):  # module construction draws from the global RNG
        torch.manual_seed(seed)
        model = GPT(config)
    model.init_weights(torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    val_tokens = np.fromfile(val_path, dtype=np.uint16)
    val_x, val_y = sample_sequences(val_tokens, block_size=block, num_sequences=64, seed=seed)
    run_config = {
        "dataset": DATASET,
        "python": python_version_tag(),
        "max_chars": budget.max_chars,
        "max_iters": steps,
        "learning_rate": budget.lr,
        "warmup_iters": budget.warmup,
        "batch_size": budget.train_batch,
        "block_size": block,
        "seed": seed,
        "optimizer": "adam",
        "beta1": 0.9,
        "beta2": 0.999,
        "weight_decay": 0.0,
        "budget": budget.name,
    }
    save_at = set(checkpoint_steps(steps, budget.checkpoints))
    paths: list[Path] = []
    model.train()
    bar = tqdm(
        range(1, steps + 1),
        desc="training",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, lr=budget.lr, warmup=budget.warmup)
        x, y = sample_sequences(
            tokens, block_size=block, num_sequences=budget.train_batch, seed=seed * 1_000_003 + step
        )
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step in save_at:
            val = evaluate(model, val_x, val_y)
            path = work_dir / f"ckpt_{step:06d}.pt"
            save_atomic(
                nanogpt_checkpoint(model, optimizer, step=step, val_loss=val, config=run_config),
                path,
            )
            paths.append(path)
            if progress:
                bar.write(
                    f"[smoothprobe demo] step {step}: train loss {loss.item():.3f}, "
                    f"val loss {val:.3f} → {path}",
                    file=sys.stderr,
                )
    bar.close()
    return paths


def measurement_plan(budget: DemoBudget, *, final: bool, seed: int) -> list[MeasureSettings]:
    """The ``run_measurement`` settings of one checkpoint.

    Every checkpoint gets ℓ2, ℓ∞ and Adam's preconditioned sharpness λ(P⁻¹H) from its saved
    optimizer state (the over-training plot and sharpness against the threshold); the final one
    also the partitions in ``budget.blocks``, the spectral (Muon) geometry, the spectral density,
    the gradient-difference sweep and the gradient noise, then ℓ2, ℓ∞ and the partitions again
    in each rotated basis.
    """
    if not final:  # the H∞ bracket only on the final checkpoint (≈ 2,000 HVPs per basis)
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


def write_outputs(records: list[dict[str, Any]], out: Path, work_dir: Path, *, title: str) -> Path:
    """Writes the report into ``out`` and the records beside it; returns the records path."""
    from smoothprobe.report.render import write_report

    scratch = work_dir / RECORDS_NAME
    write_records(scratch, records)
    write_report(scratch, out, title=title)
    final = out / RECORDS_NAME
    write_records(final, records)
    return final


def describe_times(times: dict[str, StageTime]) -> str:
    """One line: each stage's wall-clock (and CPU) seconds."""
    parts = [f"{name} {t.wall:.0f} s (CPU {t.cpu:.0f} s)" for name, t in times.items()]
    return ", ".join(parts)


def run_demo(
    out: str | os.PathLike = "reports/demo-local",
    *,
    budget: str | DemoBudget = "full",
    steps: int | None = None,
    seed: int = 0,
    work_dir: str | os.PathLike | None = None,
    threads: int | None = 1,
    progress: bool = True,
    title: str | None = None,
) -> DemoResult:
    """Trains, measures and reports (what ``smoothprobe demo`` runs).

    Args:
        out: report directory (replaced as a whole; must be new, empty or a previous report).
        budget: ``"full"``, ``"small"`` or a DemoBudget.
        steps: Adam steps (default: the budget's).
        seed: seed of data sample, initialization, batches and estimators.
        work_dir: data and checkpoints (default: ``OUT-run`` beside the report).
        threads: torch intra-op threads while the demo runs (None: leave as is).
        progress: progress bars and step messages on stderr.
        title: report title (default names the model and the steps).

    Returns:
        The DemoResult.

    Raises:
        SmoothprobeError: unknown budget, bad steps/seed, or ``out`` not replaceable.
    """
    from smoothprobe.compare import headline_numbers
    from smoothprobe.records import load_records

    spec = resolve_budget(budget)
    steps = spec.steps if steps is None else steps
    if steps < spec.checkpoints:
        raise SmoothprobeError(
            f"--steps {steps}: use at least {spec.checkpoints} (one per checkpoint)"
        )
    if seed < 0:
        raise SmoothprobeError(f"--seed {seed}: use a non-negative integer")
    out = Path(out)
    check_report_dir(out)
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    if work.resolve() == out.resolve() or out.resolve() in work.resolve().parents:
        raise SmoothprobeError(
            f"--work-dir {work} is inside the report directory {out}, which "
            "is replaced as a whole; choose another"
        )
    work.mkdir(parents=True, exist_ok=True)
    (work / ".gitignore").write_text("# smoothprobe demo: data and checkpoints, not for git\n*\n")
    times: dict[str, StageTime] = {}
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    with torch_threads(threads):
        with timed(times, "data"):
            tokens, val_path = prepare_data(
                work, vocab_size=spec.model["vocab_size"], max_chars=spec.max_chars
            )
        log(
            f"data: {len(tokens):,} training characters of Python {python_version_tag()}'s "
            f"standard library → {work}",
            enabled=progress,
        )
        with timed(times, "training"):
            paths = train(
                work, tokens, val_path, budget=spec, steps=steps, seed=seed, progress=progress
            )
        with timed(times, "measuring"):
            records = measure(paths, val_path, budget=spec, seed=seed, progress=progress)
        with timed(times, "report"):
            model = spec.model
            name = (
                f"tiny character-level GPT ({model['n_layer']} layers, "
                f"{model['n_embd']} wide, {model['n_head']} heads) on Python's standard "
                f"library, {steps} Adam steps"
            )
            records_path = write_outputs(
                records, out, work, title=title or f"smoothprobe demo: {name}"
            )
    times["total"] = StageTime(time.perf_counter() - total_wall, time.process_time() - total_cpu)
    log(f"report: {out / 'index.html'} ({describe_times(times)})", enabled=progress)
    headline = headline_numbers(load_records(records_path))
    return DemoResult(out, records_path, work, paths, headline, times)


def resolve_budget(budget: str | DemoBudget) -> DemoBudget:
    """A DemoBudget from its name.

    Raises:
        SmoothprobeError: unknown name.
    """
    if isinstance(budget, DemoBudget):
        return budget
    if budget not in BUDGETS:
        raise SmoothprobeError(f"--budget {budget!r}: use one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]
