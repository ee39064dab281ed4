"""``run_reproduction``: train the family, measure the checkpoints, compare, write the report.

Order of work, model by model (so a model's results are complete before the next starts): the
learning-rate grid of every optimizer over every seed; SGD in the rotated basis at SGD's chosen
rate (the invariance check); then the constants at start, middle and end of the seed-0 runs of
Adam, SGD with momentum (identity basis, with the blockwise partitions; and the Hadamard basis)
and rotated Adam (both bases). Every run and measurement is cached by content hash under
``<out>/.cache``: rerunning the same command skips what is done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from smoothprobe.errors import SmoothprobeError
from smoothprobe.reproduce.cache import Cache
from smoothprobe.reproduce.compare import chosen_lr, lr_table
from smoothprobe.reproduce.measure_step import (
    QUICK_BUDGET,
    MeasureBudget,
    MeasurePoint,
    cached_point,
)
from smoothprobe.reproduce.optimizers import BY_NAME, FAMILY, SGD_ROTATED
from smoothprobe.reproduce.runs import RunConfig, cached_run

GRIDS = {  # the first default run chose 3e-2 (adaptive) and 0.3 (sgdm) at the grid's top: extended
    "adaptive": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "sgd": (0.1, 0.3, 1.0, 3.0),
    "sgdm": (0.01, 0.03, 0.1, 0.3, 1.0),
}
QUICK_GRIDS = {
    "adaptive": (1e-3, 3e-3, 1e-2, 3e-2),
    "sgd": (0.1, 0.3, 1.0, 3.0),
    "sgdm": (0.01, 0.03, 0.1, 0.3),
}
MEASURED = ("adam", "sgdm", "adam_rot")  # trajectories whose checkpoints are measured
PARTITIONS = ("mini", "tensor", "layer")


@dataclass(frozen=True)
class ReproduceConfig:
    """What ``smoothprobe reproduce`` does.

    Attributes:
        models: ``example:gpt``, ``example:cnn`` or checkpoint paths.
        data_path: data of a checkpoint model.
        batch_size: minibatch of a checkpoint model (the examples have their own).
        steps: optimizer steps per run.
        eval_every: steps between evaluations of the training loss.
        seeds: seeds (initialisation and data order) per optimizer and learning rate.
        grids: learning-rate grid per optimizer group (``adaptive``, ``sgd``, ``sgdm``).
        budget: HVP budgets of each measurement point.
        quick: the small test setting (recorded in the report).
    """

    models: tuple[str, ...] = ("example:gpt", "example:cnn")
    data_path: str | None = None
    batch_size: int = 16
    steps: int = 240
    eval_every: int = 8
    seeds: int = 3
    grids: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(GRIDS))
    budget: MeasureBudget = MeasureBudget()
    quick: bool = False

    def validate(self) -> None:
        checks = [
            (self.steps >= 4, f"steps={self.steps}: use at least 4"),
            (1 <= self.eval_every <= self.steps, "eval_every must lie in 1..steps"),
            (self.seeds >= 1, f"seeds={self.seeds}: use at least 1"),
            (all(len(g) >= 1 for g in self.grids.values()), "every lr grid needs a value"),
            (bool(self.models), "give at least one model"),
        ]
        for ok, message in checks:
            if not ok:
                raise SmoothprobeError(message)


def quick_config(**changes: Any) -> ReproduceConfig:
    """The ``--quick`` setting: the tiny GPT, 16 steps, 4-value grids, 3 seeds, tiny budgets."""
    base = ReproduceConfig(
        models=("example:gpt",),
        steps=16,
        eval_every=4,
        grids=dict(QUICK_GRIDS),
        budget=QUICK_BUDGET,
        quick=True,
    )
    return replace(base, **changes)


class Progress:
    """Timestamped progress lines on stderr (and nothing when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled, self.t0 = enabled, time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.t0
            print(f"[reproduce {elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _train_model(cache, task, config: ReproduceConfig, say) -> list[dict[str, Any]]:
    plan = [
        (spec, lr, seed)
        for spec in FAMILY
        for lr in config.grids[spec.grid]
        for seed in range(config.seeds)
    ]
    runs = []
    for i, (spec, lr, seed) in enumerate(plan, 1):
        run, hit = cached_run(
            cache, task, spec, RunConfig(lr, seed, config.steps, config.eval_every)
        )
        runs.append({**run, "grid": True})
        say(
            f"{task.name}: run {i}/{len(plan)} {spec.name} lr={lr:g} seed {seed}: final loss "
            f"{run['final_loss'] if run['final_loss'] is None else round(run['final_loss'], 4)}"
            + (" (cached)" if hit else f" in {run['seconds']:.1f} s")
        )
    sgd_lr = chosen_lr(lr_table(runs))[(task.name, "sgd")]
    for seed in range(config.seeds):
        run, hit = cached_run(
            cache, task, SGD_ROTATED, RunConfig(sgd_lr, seed, config.steps, config.eval_every)
        )
        runs.append({**run, "grid": False})
        say(f"{task.name}: SGD in the rotated basis, seed {seed}{' (cached)' if hit else ''}")
    return runs


def _measure_model(cache, task, runs, config: ReproduceConfig, say) -> list[dict[str, Any]]:
    lrs = chosen_lr(lr_table(runs))
    plan = []
    for name in MEASURED:
        run = next(
            r
            for r in runs
            if r["optimizer"] == name and r["lr"] == lrs[(task.name, name)] and r["seed"] == 0
        )
        rotated = BY_NAME[name].basis != "identity"
        for step in (0, config.steps // 2, config.steps):
            key = f"init-{task.key}-seed0" if step == 0 else run["key"]
            for basis in ("identity", "hadamard"):
                parts = PARTITIONS if basis == "identity" and not rotated else ()
                plan.append((run, MeasurePoint(key, name, step, basis, parts)))
    records = []
    for i, (run, point) in enumerate(plan, 1):
        theta = cache.load_tensors("runs", run["key"])[f"step_{point.step}"]
        t0 = time.perf_counter()
        found, hit = cached_point(cache, task, point, config.budget, theta)
        records += found
        say(
            f"{task.name}: measured {i}/{len(plan)} {point.optimizer} step {point.step} "
            f"{point.basis}{' +' + ','.join(point.partitions) if point.partitions else ''}"
            f"{' (cached)' if hit else f' in {time.perf_counter() - t0:.1f} s'}"
        )
    return records


def run_reproduction(
    config: ReproduceConfig, out: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Runs (or resumes) the whole reproduction and writes the report under ``out``.

    Returns:
        The analysis (``smoothprobe.reproduce.verdicts.analyse``) plus ``info`` (timing, load).

    Raises:
        SmoothprobeError: bad configuration or model.
    """
    from smoothprobe.reproduce.report import write_report
    from smoothprobe.reproduce.tasks import build_task
    from smoothprobe.reproduce.verdicts import analyse

    config.validate()
    say = Progress(progress)
    say(f"loading {', '.join(config.models)}")
    tasks = [
        build_task(m, data_path=config.data_path, quick=config.quick, batch_size=config.batch_size)
        for m in config.models
    ]  # every model is checked before any work or output
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(out / ".cache")
    info: dict[str, Any] = {
        "config": {**asdict(config), "budget": asdict(config.budget)},
        "load_average_start": load_average(),
        "cpu_count": os.cpu_count(),
        "models": {},
    }
    n_runs = sum(len(config.grids[s.grid]) for s in FAMILY) * config.seeds + config.seeds
    say(
        f"plan: {len(config.models)} model(s) × {n_runs} training runs of {config.steps} steps, "
        f"{len(MEASURED) * 6} measurement points each; load average {info['load_average_start']}"
    )
    say(f"cache: {cache.root} (rerun the same command to resume)")
    runs: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    analysis: dict[str, Any] = {}
    for task in tasks:
        t0 = time.perf_counter()
        say(f"{task.name}: {task.describe}")
        model_runs = _train_model(cache, task, config, say)
        t1 = time.perf_counter()
        model_records = _measure_model(cache, task, model_runs, config, say)
        runs += model_runs
        records += model_records
        info["models"][task.name] = {
            "describe": task.describe,
            "d": model_runs[0]["d"],
            "train_seconds": round(t1 - t0, 1),
            "measure_seconds": round(time.perf_counter() - t1, 1),
            "train_compute_seconds": round(sum(r["seconds"] for r in model_runs), 1),
            "measure_compute_seconds": round(
                sum(
                    {
                        r["extra"]["run_key"] + str(r["step"]) + r["extra"]["measure_basis"]: r[
                            "extra"
                        ]["measure_seconds"]
                        for r in model_records
                    }.values()
                ),
                1,
            ),
            "load_average": load_average(),
        }
        analysis = analyse(runs, records)
        info["load_average_end"] = load_average()
        write_report(out, runs=runs, records=records, analysis=analysis, info=info)
        say(f"{task.name}: done; report written to {out}")
    for v in analysis["verdicts"]:
        say(f"{v['model']}: {v['claim']}: {v['verdict'].upper()} ({v['evidence']})")
    return {**analysis, "info": info}


def read_outputs(out: str | os.PathLike) -> tuple[list[dict], list[dict], dict]:
    """Runs, measurement records and verdicts.json of a written report."""
    from smoothprobe.records import read_records

    out = Path(out)
    runs = [json.loads(line) for line in (out / "records" / "runs.jsonl").read_text().splitlines()]
    records = read_records(out / "records" / "measurements.jsonl")
    verdicts = json.loads((out / "verdicts.json").read_text())
    return runs, records, verdicts
