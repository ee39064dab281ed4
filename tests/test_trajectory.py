"""Trajectories: checkpoint ordering, step-wise ratios, one table, resuming after interruptions."""

import functools
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from smoothprobe.data import sample_sequences
from smoothprobe.errors import CheckpointError, SmoothprobeError
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.examples import gpt_config, text_tokens, train_adam
from smoothprobe.geometries import resolve_geometry
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe.partitions import per_tensor
from smoothprobe.problem import problem_from_module
from smoothprobe.records import RunContext, make_record, read_records
from smoothprobe.trajectory import (
    list_checkpoints,
    read_iter_num,
    run_trajectory,
    step_ratio_estimates,
    trajectory_table,
)

STEPS, EVERY = 30, 5  # six checkpoints
TESTS_DIR = Path(__file__).resolve().parent


def obscure_name(step: int) -> str:
    """A file name whose sort order is unrelated to the step (only iter_num orders them)."""
    return "ckpt_" + hashlib.sha256(str(step).encode()).hexdigest()[:8] + ".pt"


def new_gpt(config: GPTConfig) -> GPT:
    with torch.random.fork_rng(devices=[]):  # nn.Linear init draws from the global RNG
        return GPT(config)


def write_run(directory: Path) -> list[Path]:
    """Trains the tiny GPT with Adam and saves nanoGPT-style checkpoints every EVERY steps."""
    cfg = gpt_config("test")
    model = new_gpt(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    tokens, _ = text_tokens(cfg.vocab_size)
    model_args = dict(
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        block_size=cfg.block_size,
        bias=cfg.bias,
        vocab_size=cfg.vocab_size,
        dropout=0.0,
    )
    paths = []

    def next_batch(step):
        return sample_sequences(tokens, block_size=cfg.block_size, num_sequences=8, seed=step)

    def on_step(step, loss):
        if (step + 1) % EVERY == 0:
            path = directory / obscure_name(step + 1)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            torch.save(
                {
                    "model": state,
                    "model_args": model_args,
                    "iter_num": step + 1,
                    "config": {"learning_rate": 1e-2, "batch_size": 8},
                },
                path,
            )
            paths.append(path)

    train_adam(model, lm_loss, next_batch, steps=STEPS, lr=1e-2, on_step=on_step)
    return paths


@functools.lru_cache(maxsize=1)
def eval_sample():
    cfg = gpt_config("test")
    tokens, _ = text_tokens(cfg.vocab_size)
    return sample_sequences(tokens[-5000:], block_size=cfg.block_size, num_sequences=12, seed=1)


def load_problem(path):
    """The checkpoint as a float64 Problem on a fixed 12-sequence sample (the lead's loader does
    this for real runs)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = new_gpt(GPTConfig.from_model_args(ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return problem_from_module(model, lm_loss, eval_sample(), batch_size=5, dtype="float64")


@functools.lru_cache(maxsize=32)
def evaluate(path: str):
    """(loss, θ, ∇L, layout) of a checkpoint, cached: the checkpoints of a test never change."""
    problem = load_problem(path)
    return problem.loss(), problem.theta, problem.gradient(), problem.layout


class Calls:
    """Injected functions that count their calls (and can interrupt or slow down)."""

    def __init__(self, *, interrupt_at=None, sleep=0.0):
        self.measured: list[str] = []
        self.gradients: list[str] = []
        self.interrupt_at = interrupt_at
        self.sleep = sleep

    def measure_one(self, path):
        if self.interrupt_at is not None and len(self.measured) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.sleep)
        self.measured.append(Path(path).name)
        loss, theta, _, _ = evaluate(str(path))
        estimate = Estimate("loss", loss, Bound.EXACT, method="exact")
        return [make_record(estimate, RunContext(checkpoint=str(path), d=theta.numel()))]

    def gradient_of(self, path):
        self.gradients.append(Path(path).name)
        return evaluate(str(path))[1:]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("run")
    write_run(directory)
    return directory


def checkpoints_in(records):
    return Counter(r["checkpoint_sha256"] for r in records if r["quantity"] == "loss")


def assert_complete(records, n):
    keys = [(r["checkpoint_sha256"], r["quantity"], r["geometry"], r["partition"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicate records"
    assert set(checkpoints_in(records).values()) == {1} and len(checkpoints_in(records)) == n


def test_checkpoints_are_ordered_by_iter_num_then_name(run_dir, tmp_path):
    entries = list_checkpoints(run_dir)
    assert [e.step for e in entries] == list(range(EVERY, STEPS + 1, EVERY))
    assert [e.path.name for e in entries] == [
        obscure_name(s) for s in range(EVERY, STEPS + 1, EVERY)
    ]
    assert sorted(e.path.name for e in entries) != [e.path.name for e in entries]
    assert [e.step for e in list_checkpoints(str(run_dir / "ckpt_*.pt"))] == [
        e.step for e in entries
    ]
    assert read_iter_num(entries[0].path) == EVERY
    for step in (10, 9, 100):  # names only: natural sort, 9 < 10 < 100
        torch.save({"w": torch.zeros(1)}, tmp_path / f"model_{step}.pt")
    auto = list_checkpoints(tmp_path)
    assert [e.path.name for e in auto] == ["model_9.pt", "model_10.pt", "model_100.pt"]
    assert all(e.step is None for e in auto)
    with pytest.raises(CheckpointError, match="iter_num"):
        list_checkpoints(tmp_path, order="iter_num")
    with pytest.raises(CheckpointError):
        list_checkpoints(tmp_path / "nothing_*.pt")
    with pytest.raises(SmoothprobeError):
        list_checkpoints(tmp_path, order="mtime")


def test_step_ratio_on_a_quadratic_is_the_exact_directional_value():
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    A = (M + M.T) / 2
    t0, t1 = (
        torch.randn(6, generator=gen, dtype=torch.float64),
        torch.randn(6, generator=gen, dtype=torch.float64),
    )
    geos = [
        resolve_geometry("l2"),
        resolve_geometry("linf"),
        resolve_geometry(torch.tensor([0, 0, 0, 1, 1, 2])),
    ]
    got = step_ratio_estimates(t0, A @ t0, t1, A @ t1, geos)
    step, change = t1 - t0, A @ (t1 - t0)
    assert got[0].value == pytest.approx(float(change.norm() / step.norm()), rel=1e-12)
    assert got[1].value == pytest.approx(float(change.abs().sum() / step.abs().max()), rel=1e-12)
    assert got[0].value <= float(torch.linalg.matrix_norm(A, 2)) * (1 + 1e-12)
    assert all(e.bound == Bound.LOWER and e.quantity == "step_ratio" for e in got)
    assert got[2].geometry == "block"


def test_trajectory_table_has_every_step_and_the_step_ratios(run_dir, tmp_path):
    calls = Calls()
    out = tmp_path / "traj.jsonl"
    partition = per_tensor(load_problem(next(run_dir.glob("*.pt"))).layout)
    records = run_trajectory(
        run_dir,
        out=out,
        measure_one=calls.measure_one,
        gradient_of=calls.gradient_of,
        settings={"data": "stdlib", "n": 12},
        geometries=("l2", "linf", partition),
        progress=False,
    )
    entries = list_checkpoints(run_dir)
    assert calls.measured == [e.path.name for e in entries]
    assert calls.gradients == calls.measured  # each gradient once: the previous one is cached
    assert_complete(records, len(entries))
    table = trajectory_table(records)
    assert list(table.index.get_level_values("step")) == [e.step for e in entries]
    assert {
        "loss",
        "grad_norm[l2]",
        "grad_norm[linf]",
        "step_ratio[l2]",
        "step_ratio[linf]",
        "step_ratio[block:tensor]",
    } <= set(table.columns)
    assert table["step_ratio[l2]"].isna().tolist() == [True] + [False] * (len(entries) - 1)
    # the ratio of steps 2→3, recomputed directly
    (t1, g1, _), (t2, g2, _) = (calls.gradient_of(e.path) for e in entries[1:3])
    expected = float((g2 - g1).norm() / (t2 - t1).norm())
    assert table["step_ratio[l2]"].iloc[2] == pytest.approx(expected, rel=1e-12)
    assert table["grad_norm[linf]"].iloc[2] == pytest.approx(float(g2.abs().sum()), rel=1e-12)
    assert table["loss"].iloc[-1] < table["loss"].iloc[0]  # training went somewhere
    assert all(r["settings_sha256"] == records[0]["settings_sha256"] for r in records)


def test_resume_after_keyboard_interrupt_measures_only_the_rest(run_dir, tmp_path):
    out = tmp_path / "traj.jsonl"
    kwargs = dict(out=out, settings={"v": 1}, geometries=("l2", "linf"), progress=False)
    first = Calls(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_trajectory(
            run_dir, measure_one=first.measure_one, gradient_of=first.gradient_of, **kwargs
        )
    names = [e.path.name for e in list_checkpoints(run_dir)]
    assert first.measured == names[:2]
    assert len(checkpoints_in(read_records(out))) == 2
    second = Calls()
    records = run_trajectory(
        run_dir, measure_one=second.measure_one, gradient_of=second.gradient_of, **kwargs
    )
    assert second.measured == names[2:]
    assert second.gradients == names[1:]  # the last finished checkpoint's gradient, once
    assert_complete(records, len(names))
    assert_complete(read_records(out), len(names))
    clean = Calls()
    reference = run_trajectory(
        run_dir,
        measure_one=clean.measure_one,
        gradient_of=clean.gradient_of,
        **{**kwargs, "out": tmp_path / "clean.jsonl"},
    )
    assert trajectory_table(records).equals(trajectory_table(reference))
    third = Calls()
    run_trajectory(run_dir, measure_one=third.measure_one, gradient_of=third.gradient_of, **kwargs)
    assert third.measured == [] and third.gradients == []


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_trajectory import Calls
    from smoothprobe.trajectory import run_trajectory
    calls = Calls(sleep=1.0)
    run_trajectory({run!r}, out={out!r}, measure_one=calls.measure_one,
                   gradient_of=calls.gradient_of, settings={{"v": 1}}, geometries=("l2",))
    """
)


def test_resume_after_the_process_is_killed(run_dir, tmp_path):
    out = tmp_path / "traj.jsonl"
    script = SCRIPT.format(tests=str(TESTS_DIR), run=str(run_dir), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 120
    try:
        while not (out.exists() and out.read_text().strip()):
            if proc.poll() is not None:
                pytest.fail(f"the trajectory process ended early: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no records after 120 s")
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    done = checkpoints_in(read_records(out))  # every line parses: no torn writes
    names = [e.path.name for e in list_checkpoints(run_dir)]
    assert 1 <= len(done) < len(names), "killed too late to test resuming"
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert all("settings_sha256" in r for r in lines)
    calls = Calls()
    records = run_trajectory(
        run_dir,
        out=out,
        measure_one=calls.measure_one,
        gradient_of=calls.gradient_of,
        settings={"v": 1},
        geometries=("l2",),
        progress=False,
    )
    assert calls.measured == names[len(done) :]
    assert_complete(records, len(names))


def test_new_settings_measure_again_and_changed_predecessors_are_replaced(run_dir, tmp_path):
    out = tmp_path / "traj.jsonl"
    entries = list_checkpoints(run_dir)
    paths = [e.path for e in entries]
    names = [p.name for p in paths]

    def run(source, settings):
        calls = Calls()
        records = run_trajectory(
            source,
            out=out,
            measure_one=calls.measure_one,
            gradient_of=calls.gradient_of,
            settings=settings,
            geometries=("l2",),
            progress=False,
        )
        return calls, records

    calls, _ = run(paths[:3], {"v": 1})
    assert calls.measured == names[:3]
    calls, records = run(paths, {"v": 1})  # the run grew: only the new checkpoints
    assert calls.measured == names[3:]
    assert_complete(records, 6)
    calls, other = run(paths, {"v": 2})  # different settings: everything again
    assert calls.measured == names
    assert_complete(other, 6)
    assert len(read_records(out)) == 2 * len(records)  # both runs kept in the file
    calls, records = run(paths[:2] + paths[3:], {"v": 1})  # checkpoint 3 left out
    assert calls.measured == [names[3]]  # its successor's step ratio changed
    assert_complete(records, 5)
    step = [
        r for r in records if r["quantity"] == "step_ratio" and r["checkpoint"] == str(paths[3])
    ]
    assert len(step) == 1 and step[0]["extra"]["previous_checkpoint"] == str(paths[1])
    with pytest.raises(SmoothprobeError, match="nothing to measure"):
        run_trajectory(paths, out=out)
