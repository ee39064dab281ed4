"""Data-parallel HVPs over torch.distributed (gloo, 2 processes spawned here, like torchrun).

Each test picks a free port, starts the ranks as ``python -m smoothprobe …`` with torchrun's
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a timeout, and compares rank 0's
records with a one-process run of the same command.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from smoothprobe.distributed import (
    DistContext,
    DistributedError,
    launched_world,
    shard_of,
    split_for_ranks,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # generous: the shared CI box can be slow to start Python

SPEC = """
import torch
from torch import nn

def loss_fn(out, y):
    # the sqrt term is 0 but has an infinite derivative where out == 0 (a "bad" example)
    return ((out - y) ** 2).mean() + 0.0 * out.abs().sqrt().mean()

def smoothprobe_spec(*, data_path, batch_size, num_batches, seed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 6, generator=g, dtype=torch.float64)
    y = torch.randn(7, 1, generator=g, dtype=torch.float64)
    if data_path == "bad":
        x[3] = 0.0  # batch 1 (examples 3-5) -> rank 1's shard
    model = nn.Sequential(
        nn.Linear(6, HIDDEN, bias=False), nn.Tanh(), nn.Linear(HIDDEN, 1, bias=False)
    )
    return {"model": model, "loss_fn": loss_fn, "data": (x, y)}
"""


def write_model(tmp: Path, hidden: int = 8, steps: int = 1) -> tuple[Path, list[Path]]:
    spec = tmp / "spec.py"
    spec.write_text(SPEC.replace("HIDDEN", str(hidden)))
    torch.manual_seed(1)
    layers = [torch.nn.Linear(6, hidden, bias=False), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(hidden, 1, bias=False)).double()
    paths = []
    for step in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.9).add_(0.05)
        path = tmp / f"model_{step}.pt"
        torch.save(model.state_dict(), path)
        paths.append(path)
    return spec, paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(rank: int, world: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
               SMOOTHPROBE_DIST_TIMEOUT="30")  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "cli"), env.get("PYTHONPATH", "")])
    return env


def launch(args: list[str], *, world: int = 2) -> list[subprocess.Popen]:
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-m", "smoothprobe", *args],
            env=env_for(rank, world, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in range(world)
    ]


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + TIMEOUT
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a rank hung (timeout)")
        out.append((p.returncode, so, se))
    return out


def single(args: list[str]) -> subprocess.Popen:
    """The one-process reference run, started now (it runs alongside the ranks)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "cli"), env.get("PYTHONPATH", "")])
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "smoothprobe", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def by_key(path: Path) -> dict[tuple, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = {}
    for r in rows:
        key = (r["quantity"], r["bound"], r.get("partition"), r.get("checkpoint"))
        out[key] = r["value"]
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12), (key, x, y)


COMMON = ["--num-batches", "3", "--batch-size", "3", "--dtype", "float64", "-q"]


def test_measure_two_ranks_equal_one_process(tmp_path):
    spec, (ckpt,) = write_model(tmp_path)
    args = ["measure", str(ckpt), "--spec", str(spec), *COMMON, "--norm", "both",
            "--max-hvps", "40", "--hvps", "16",
            "--blocks", "tensor", "--block-hvps", "1000"]  # fmt: skip
    ref = single([*args, "--out", str(tmp_path / "one.jsonl")])
    *results, (ref_rc, _, ref_err) = finish(
        [*launch([*args, "--out", str(tmp_path / "two.jsonl")]), ref]
    )
    assert ref_rc == 0, ref_err
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert results[1][1] == ""  # only rank 0 prints
    one, two = by_key(tmp_path / "one.jsonl"), by_key(tmp_path / "two.jsonl")
    quantities = {k[0] for k in one}
    assert {"lambda_max", "l11_norm", "block_upper"} <= quantities
    assert_same(one, two)
    assert not list(tmp_path.glob(".*phases.json"))  # rank 0 shared, kept and removed them


def test_trajectory_two_ranks_equal_one_process(tmp_path):
    spec, _ = write_model(tmp_path, steps=2)
    args = ["trajectory", str(tmp_path / "model_*.pt"), "--spec", str(spec), *COMMON,
            "--norm", "l2", "--max-hvps", "30", "--step-geometries", "l2"]  # fmt: skip
    ref = single([*args, "--out", str(tmp_path / "one.jsonl")])
    *results, (ref_rc, _, ref_err) = finish(
        [*launch([*args, "--out", str(tmp_path / "two.jsonl")]), ref]
    )
    assert ref_rc == 0, ref_err
    assert [rc for rc, _, _ in results] == [0, 0], results
    one, two = by_key(tmp_path / "one.jsonl"), by_key(tmp_path / "two.jsonl")
    assert len({k[3] for k in one}) == 2 and any(k[0] == "step_ratio" for k in one)
    assert_same(one, two)


def test_a_failing_shard_stops_every_rank_with_one_error(tmp_path):
    spec, (ckpt,) = write_model(tmp_path)
    out = tmp_path / "two.jsonl"
    args = ["measure", str(ckpt), "--spec", str(spec), "--data", "bad", *COMMON,
            "--norm", "l2", "--out", str(out)]  # fmt: skip
    results = finish(launch(args))
    assert [rc for rc, _, _ in results] == [1, 1], results
    assert "Inf" in results[1][2] or "NaN" in results[1][2]  # the failing rank says why
    assert "other rank(s) failed" in results[0][2]
    for _, _, err in results:
        assert len([ln for ln in err.splitlines() if ln.startswith("Error")]) == 1
    assert not out.exists()


def test_a_killed_rank_stops_the_others_without_a_hang(tmp_path):
    spec, (ckpt,) = write_model(tmp_path, hidden=300)
    out = tmp_path / "two.jsonl"
    args = ["measure", str(ckpt), "--spec", str(spec), "--num-batches", "3", "--batch-size", "3",
            "--dtype", "float64", "--norm", "l2", "--tol", "1e-15", "--max-hvps", "2000",
            "--retain-graphs", "no", "--out", str(out)]  # fmt: skip
    procs = launch(args)
    deadline = time.monotonic() + 60
    for line in procs[0].stderr:  # wait until the ranks are in Lanczos
        if "Lanczos" in line or time.monotonic() > deadline:
            break
    procs[1].send_signal(signal.SIGKILL)
    rc0 = procs[0].wait(timeout=TIMEOUT)
    err0 = procs[0].stderr.read()
    procs[1].wait(timeout=10)
    assert rc0 == 1 and "stopped responding" in err0
    assert not out.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two", "RANK": "0"}, "not an integer"),
        ({"WORLD_SIZE": "0", "RANK": "0"}, "at least 1"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "not in 0"),
    ],
)
def test_bad_world_size_inputs_are_one_line_errors(env, message, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DistributedError, match=message) as info:
        launched_world()
    assert "\n" not in str(info.value)


def test_more_ranks_than_batches_is_refused():
    assert shard_of(5, DistContext(1, 2, "gloo")) == [1, 3]
    with pytest.raises(DistributedError, match="4 ranks but only 3 batches"):
        shard_of(3, DistContext(0, 4, "gloo"))


def test_fewer_batches_than_ranks_split_into_examples_with_the_same_hessian():
    """One batch of sequences with masked tokens, cut for 3 ranks: same loss, same H·v."""
    from smoothprobe.batches import default_weight
    from smoothprobe.examples import build_example

    problem = build_example("gpt")
    whole = problem.batches[0]
    whole.targets[0, :5] = problem.ignore_index  # unequal scored tokens per sequence
    weight = default_weight(whole.targets, ignore_index=problem.ignore_index)
    whole = type(whole)(whole.inputs, whole.targets, weight)
    one = copy.copy(problem)
    one.batches, one.total_weight = [whole], whole.weight
    split = split_for_ranks(one, 3)
    assert len(split.batches) == whole.targets.shape[0] and split_for_ranks(split, 3) is split
    assert math.isclose(sum(b.weight for b in split.batches), whole.weight)
    assert math.isclose(split.loss(), one.loss(), rel_tol=1e-12)
    v = torch.randn(problem.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = one.hvp_operator().matvec(v), split.hvp_operator().matvec(v)
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-12 * float(a.abs().max()))
    with pytest.raises(DistributedError, match="only .* examples"):
        split_for_ranks(one, 10_000)


def test_the_all_reduce_sums_in_place_row_by_row(tmp_path, monkeypatch):
    """One gloo process: the block comes back summed in place (no float64 (k, d) copy, no
    concatenation), and a failure flag stops every rank before any tensor is sent."""
    import torch.distributed as dist

    from smoothprobe.distributed import DistributedError, all_reduce_checked

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        block = torch.randn(3, 7, dtype=torch.float32)
        expected = block.clone()
        sizes = []
        real = dist.all_reduce
        monkeypatch.setattr(
            dist, "all_reduce", lambda t, *a, **k: sizes.append(t.numel()) or real(t)
        )
        assert all_reduce_checked(block, False) is block and torch.equal(block, expected)
        assert sizes == [1, 7, 7, 7]  # the flag, then one float64 row at a time
        sizes.clear()
        with pytest.raises(DistributedError, match="failed on their shard"):
            all_reduce_checked(block, True)
        assert sizes == [1]
    finally:
        dist.destroy_process_group()
