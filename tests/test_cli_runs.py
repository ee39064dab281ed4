"""Threads, an unwritable --out, and Ctrl-C (issue 16 items 1, 2 and 11)."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

import smoothprobe.threads as threads_mod
from smoothprobe.errors import SmoothprobeError
from smoothprobe.threads import resolve_threads, usable_cores
from smoothprobe_cli.main import cli


@pytest.fixture(autouse=True)
def keep_one_thread():
    yield
    torch.set_num_threads(1)  # conftest's setting, whatever a command set


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, prog_name="smoothprobe")


# ---- 1. threads -------------------------------------------------------------------------------


def test_default_threads_are_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("SMOOTHPROBE_THREADS", raising=False)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads_mod, "_affinity_count", lambda: 3)
    monkeypatch.setattr(threads_mod, "_cgroup_quota", lambda: None)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cores() == 3  # a machine of 64 cores, 3 of them ours
    monkeypatch.setattr(threads_mod, "_cgroup_quota", lambda: 2)
    assert usable_cores() == 2  # a container quota of 2 CPUs
    assert 1 <= resolve_threads() <= 2
    monkeypatch.setenv("SMOOTHPROBE_THREADS", "5")
    assert resolve_threads() == 5 and resolve_threads(4) == 4
    monkeypatch.setenv("SMOOTHPROBE_THREADS", "zero")
    with pytest.raises(SmoothprobeError, match="SMOOTHPROBE_THREADS='zero'"):
        resolve_threads()


def test_idle_cores_leave_busy_ones_out(monkeypatch):
    import psutil

    monkeypatch.setattr(threads_mod, "usable_cores", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda **kw: [100.0, 3.0])
    assert threads_mod.idle_cores() == 1  # the case: one of two cores busy
    monkeypatch.setattr(psutil, "cpu_percent", lambda **kw: [2.0, 3.0])
    assert threads_mod.idle_cores() == 2
    monkeypatch.setattr(psutil, "cpu_percent", lambda **kw: [99.0, 97.0])
    assert threads_mod.idle_cores() == 1


def test_cgroup_quota_is_read(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert threads_mod._cgroup_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads_mod._cgroup_quota(tmp_path) is None


def test_run_header_states_the_threads(nanogpt_run, monkeypatch):
    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--norm", "l2", "--num-batches", 1]
    result = invoke(*args, "--threads", 1)
    assert result.exit_code == 0, result.output
    cores = usable_cores()
    assert result.stderr.splitlines()[0] == (
        f"[smoothprobe] torch threads 1 of {cores} usable cores (from --threads)"
    )
    result = invoke(*args, env={"SMOOTHPROBE_THREADS": "1"})
    assert result.stderr.splitlines()[0] == (
        f"[smoothprobe] torch threads 1 of {cores} usable cores (from SMOOTHPROBE_THREADS)"
    )
    monkeypatch.delenv("SMOOTHPROBE_THREADS", raising=False)
    monkeypatch.setattr(threads_mod, "idle_cores", lambda: 1)  # another process is busy
    result = invoke(*args)
    assert result.stderr.splitlines()[0] == (
        f"[smoothprobe] torch threads 1 of {cores} usable cores (default: the idle ones; set "
        "--threads or SMOOTHPROBE_THREADS)"
    )
    assert torch.get_num_threads() == 1


def test_bad_thread_counts_are_usage_errors(tmp_path):
    assert invoke("measure", tmp_path / "missing.pt", "--threads", 0).exit_code == 2
    result = invoke("measure", tmp_path / "missing.pt", env={"SMOOTHPROBE_THREADS": "x"})
    assert result.exit_code == 2 and "SMOOTHPROBE_THREADS" in result.output


# ---- 2. an unwritable --out ---------------------------------------------------------------------


def test_unwritable_out_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "m.jsonl"  # under a file: can never be written
    result = invoke("measure", tmp_path / "missing.pt", "--out", out)
    assert result.exit_code == 2
    assert result.output.endswith(
        f"Error: Invalid value for '--out': cannot write {out}: {blocker} is a file, "
        "not a directory\n"
    )
    result = invoke("trajectory", tmp_path, "--out", out)
    assert result.exit_code == 2 and "is a file, not a directory" in result.output
    result = invoke("demo", "--out", blocker / "report")
    assert result.exit_code == 2 and "is a file, not a directory" in result.output


def test_failed_final_write_prints_records_and_saves_a_copy(nanogpt_run, tmp_path, monkeypatch):
    ckpt, data = nanogpt_run

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("smoothprobe.records.write_records", read_only)
    out = tmp_path / "m.jsonl"
    args = ["measure", ckpt, "--data", data, "--norm", "l2", "--num-batches", 1, "--quiet"]
    result = invoke(*args, "--out", out, "--format", "json")
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert {"loss", "lambda_max", "d_l2"} <= {r["quantity"] for r in printed}
    prefix = f"Error: could not write {out} ([Errno 30] Read-only file system); the records "
    assert result.stderr.startswith(prefix + "are printed above and a copy was saved to ")
    copy = result.stderr.strip().rsplit(" ", 1)[1]
    try:
        saved = [json.loads(line) for line in open(copy, encoding="utf-8")]
        assert [r["quantity"] for r in saved] == [r["quantity"] for r in printed]
    finally:
        os.unlink(copy)
    assert not out.exists()


# ---- 11. Ctrl-C ---------------------------------------------------------------------------------


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_measure_says_nothing_was_saved(nanogpt_run, tmp_path, monkeypatch):
    ckpt, data = nanogpt_run
    monkeypatch.setattr("smoothprobe.measure.run_measurement", interrupt)
    out = tmp_path / "m.jsonl"
    result = invoke("measure", ckpt, "--data", data, "--quiet", "--out", out)
    assert result.exit_code == 130
    assert result.stderr == (
        "interrupted: no phase had finished, so nothing was kept; run the same command to "
        "start over\n"
    )
    result = invoke("measure", ckpt, "--data", data, "--quiet")
    assert result.exit_code == 130
    assert result.stderr.startswith("interrupted: nothing was saved: without --out")
    monkeypatch.setattr("smoothprobe_cli.main.join_distributed", interrupt)
    result = invoke("measure", ckpt, "--data", data, "--quiet", env={"RANK": "1"})
    assert (result.exit_code, result.stderr) == (130, "")  # under torchrun rank 0 speaks


def test_interrupted_measure_resumes_where_it_stopped(nanogpt_run, tmp_path, monkeypatch):
    """Ctrl-C in the ℓ∞ phase keeps the finished ℓ2 phase; the rerun skips it and writes the
    same records as a run that was never interrupted; the phase file goes at the end."""
    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--hvps", 16, "--max-hvps", 20]
    args += ["--hinf-hvps", 0, "--blocks", "tensor", "--quiet"]
    whole = tmp_path / "whole.jsonl"
    assert invoke(*args, "--out", whole).exit_code == 0
    out = tmp_path / "m.jsonl"
    monkeypatch.setattr("smoothprobe.suites.linf.measure_linf", interrupt)
    result = invoke(*args, "--out", out)
    assert result.exit_code == 130 and not out.exists()
    kept = tmp_path / ".m.jsonl.phases.json"
    assert result.stderr == (
        f"interrupted: finished phases (l2) are kept in {kept}; run the same command again to "
        f"resume: it skips what was done and writes {out} at the end\n"
    )
    monkeypatch.undo()

    def recomputed(*a, **k):
        raise AssertionError("the finished ℓ2 phase ran again")

    monkeypatch.setattr("smoothprobe.suites.l2.measure_l2", recomputed)
    result = invoke(*args[:-1], "--out", out)
    assert result.exit_code == 0, result.output
    assert "resuming: l2 finished before" in result.stderr
    assert not kept.exists()
    fields = ("quantity", "value", "bound", "ci_low", "ci_high", "hvps", "partition", "extra")
    a, b = (
        [
            {k: r.get(k) for k in fields} | {"extra": r["extra"] | {"memory_plan": None}}
            for r in map(json.loads, open(p, encoding="utf-8"))
        ]
        for p in (whole, out)
    )  # the memory plan's budget follows what is free at the time
    assert a == b and {r["quantity"] for r in b} >= {"lambda_max", "l11_norm", "block_upper"}


def test_ctrl_c_in_trajectory_says_what_was_saved(tmp_path, monkeypatch):
    from conftest import make_nanogpt_run

    run = tmp_path / "run"
    run.mkdir()
    make_nanogpt_run(run)
    out = tmp_path / "traj.jsonl"
    calls = []

    def second_interrupts(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    import smoothprobe.measure

    real = smoothprobe.measure.run_measurement
    monkeypatch.setattr("smoothprobe.measure.run_measurement", second_interrupts)
    (run / "ckpt2.pt").write_bytes((run / "ckpt.pt").read_bytes())
    args = ["trajectory", run / "ckpt*.pt", "--data", run / "train.bin", "--norm", "l2"]
    args += ["--num-batches", 1, "--quiet", "--out", out, "--order", "name"]
    result = invoke(*args)
    assert result.exit_code == 130, result.output
    assert result.stderr.endswith(
        f"interrupted: {out} holds the records of 1 checkpoint(s), each saved when it "
        "finished; run the same command again to resume: it skips them\n"
    )


def test_ctrl_c_elsewhere_says_nothing_was_written(monkeypatch):
    monkeypatch.setattr("smoothprobe_cli.main.load", interrupt)
    result = invoke("info")
    assert result.exit_code == 130
    assert result.stderr == "interrupted: nothing was written\n"


def test_openmp_threads_wait_passively_unless_the_user_says_otherwise():
    import subprocess
    import sys

    code = (
        "import os, sys, smoothprobe_cli\n"
        "assert 'torch' not in sys.modules\n"
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "PASSIVE", run.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == "ACTIVE", run.stderr


def test_measure_interrupted_inside_lanczos_resumes_its_state(nanogpt_run, tmp_path, monkeypatch):
    """Ctrl-C at the 6th Lanczos product with the state saved every step: the rerun continues
    the saved Lanczos run and writes the records of a run never interrupted."""
    from smoothprobe.estimators.lanczos_checkpoint import LanczosCheckpoint
    from smoothprobe.progress import ProgressOperator

    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--norm", "l2", "--quiet"]
    whole = tmp_path / "whole.jsonl"
    assert invoke(*args, "--out", whole).exit_code == 0
    monkeypatch.setattr(LanczosCheckpoint, "due", lambda self: True)
    real, calls = ProgressOperator.matvec, []

    def dies(self, v):
        if self.desc == "determinism check":  # not an estimator's product
            return real(self, v)
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(self, v)

    monkeypatch.setattr(ProgressOperator, "matvec", dies)
    out = tmp_path / "m.jsonl"
    result = invoke(*args, "--out", out)
    state = tmp_path / ".m.jsonl.phases.lanczos.pt"
    assert result.exit_code == 130 and state.is_file()
    assert f"the ℓ2 phase's Lanczos state (saved every 10 minutes) is kept in {state}" in (
        result.stderr
    )
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    result = invoke(*args[:-1], "--out", out)
    assert result.exit_code == 0, result.output
    assert "Lanczos resumes at step 5 (5 HVPs, " in result.stderr
    bars = [line for line in result.stderr.split("\r") if line.startswith("lanczos:")]
    counts = [int(re.search(r"\| *(\d+)/", line)[1]) for line in bars]
    assert 5 in counts and counts == sorted(counts), counts  # the 5 HVPs done before count
    assert not state.exists()
    a, b = ([json.loads(line) for line in open(p, encoding="utf-8")] for p in (whole, out))
    pick = ("quantity", "value", "bound", "hvps", "extra")
    for x, y in zip(a[1:], b[1:], strict=True):
        x["extra"]["memory_plan"] = y["extra"]["memory_plan"]  # its budget follows what is free
        assert {k: x[k] for k in pick} == {k: y[k] for k in pick}


def test_a_resumed_run_keeps_the_budget_it_started_with(nanogpt_run, tmp_path, monkeypatch):
    """The default budget follows what is free, which drifts between two stretches of a long
    run; the rerun plans with the budget the run started with, so its saved Lanczos basis fits
    the same plan and resumes. Saved state that cannot resume is said, never dropped silently."""
    import smoothprobe.memory_plan as memory_plan
    from smoothprobe.estimators.lanczos_checkpoint import LanczosCheckpoint
    from smoothprobe.progress import ProgressOperator

    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--norm", "l2"]
    monkeypatch.setattr(LanczosCheckpoint, "due", lambda self: True)
    real, calls = ProgressOperator.matvec, []

    def dies(self, v):
        if self.desc == "determinism check":
            return real(self, v)
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(self, v)

    def free(gib: float):  # what default_budget sees: ``gib`` usable
        return lambda fraction=memory_plan.DEFAULT_FRACTION, **_: int(fraction * gib * 2**30)

    monkeypatch.setattr(ProgressOperator, "matvec", dies)
    monkeypatch.setattr(memory_plan, "default_budget", free(8.0))
    out = tmp_path / "m.jsonl"
    assert invoke(*args, "--quiet", "--out", out).exit_code == 130
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    monkeypatch.setattr(memory_plan, "default_budget", free(7.0))  # less is free now
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    assert "memory budget 5.60 GiB, as when this run started" in result.stderr
    assert "Lanczos resumes at step 5 (5 HVPs, " in result.stderr
    plans = {json.loads(line)["extra"]["memory_plan"]["budget"] for line in open(out)}
    assert plans == {int(0.7 * 8.0 * 2**30)}
    # a Lanczos state from other settings: said, then started over
    monkeypatch.setattr(ProgressOperator, "matvec", dies)
    calls.clear()
    assert invoke(*args, "--quiet", "--out", out).exit_code == 130
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    result = invoke(*args, "--max-hvps", 40, "--out", out)
    assert result.exit_code == 0, result.output
    assert "plan (basis rows): the ℓ2 phase starts over" in result.stderr


def _ctrl_c_after(real, *, probes: int):
    """A ``ProgressOperator.matvec`` that raises KeyboardInterrupt once an estimator has taken
    more than ``probes`` probes (the determinism check's products are not an estimator's)."""
    taken = []

    def dies(self, v):
        if self.desc != "determinism check":
            taken.append(1 if v.ndim == 1 else v.shape[0])
            if sum(taken) > probes:
                raise KeyboardInterrupt
        return real(self, v)

    return dies


def test_measure_interrupted_inside_the_linf_phase_resumes_it(nanogpt_run, tmp_path, monkeypatch):
    """Ctrl-C among the sampled columns with progress saved every chunk: the rerun restores the
    Cauchy sketch and the columns done, and writes the records of a run never interrupted."""
    from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint
    from smoothprobe.progress import ProgressOperator

    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--norm", "linf", "--hvps", 64,
            "--chunk-size", 8]  # fmt: skip
    whole = tmp_path / "whole.jsonl"
    assert invoke(*args, "--quiet", "--out", whole).exit_code == 0
    monkeypatch.setattr(LoopCheckpoint, "due", lambda self: True)
    real = ProgressOperator.matvec
    # 24 Cauchy probes, 16 sampled columns, then Ctrl-C
    monkeypatch.setattr(ProgressOperator, "matvec", _ctrl_c_after(real, probes=40))
    out = tmp_path / "m.jsonl"
    result = invoke(*args, "--quiet", "--out", out)
    prefix = tmp_path / ".m.jsonl.phases.linf"
    assert result.exit_code == 130, result.output
    assert f"the ℓ∞ phase's progress (saved every 10 minutes) is kept in {prefix}.*.pt" in (
        result.stderr
    )
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stderr.replace("\r", "\n").splitlines()  # own lines, not glued to a bar
    assert any(line.startswith("[smoothprobe] ℓ∞ cauchy: resumed (finished)") for line in lines)
    assert any(line.startswith("[smoothprobe] ℓ∞ columns: resumed (at 16 HVPs)") for line in lines)
    counts = [int(re.search(r"\| *(\d+)/", ln)[1]) for ln in lines if ln.startswith("linf:")]
    assert 40 in counts and counts == sorted(counts), counts  # 24 + 16 done before are counted
    assert not list(tmp_path.glob(".m.jsonl.phases*"))
    a, b = ([json.loads(line) for line in open(p, encoding="utf-8")] for p in (whole, out))
    pick = ("quantity", "value", "bound", "ci_low", "ci_high", "hvps")
    assert [{k: x.get(k) for k in pick} for x in a[1:]] == [
        {k: y.get(k) for k in pick} for y in b[1:]
    ]


def test_save_every_sets_how_much_an_interruption_can_lose(nanogpt_run, tmp_path, monkeypatch):
    """--save-every 0 saves the ℓ∞ loops at every chunk (no patched clock): Ctrl-C among the
    sampled columns loses nothing, the note says how often progress was saved, and the rerun
    resumes the columns where they stopped. A negative value is a usage error."""
    from smoothprobe.progress import ProgressOperator

    ckpt, data = nanogpt_run
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--norm", "linf", "--hvps", 64,
            "--chunk-size", 8, "--save-every", 0]  # fmt: skip
    real = ProgressOperator.matvec
    # 24 Cauchy probes, 16 sampled columns, then Ctrl-C
    monkeypatch.setattr(ProgressOperator, "matvec", _ctrl_c_after(real, probes=40))
    out = tmp_path / "m.jsonl"
    result = invoke(*args, "--quiet", "--out", out)
    assert result.exit_code == 130, result.output
    assert "the ℓ∞ phase's progress (saved at every step) is kept in" in result.stderr
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    assert "[smoothprobe] ℓ∞ columns: resumed (at 16 HVPs)" in result.stderr.replace("\r", "\n")
    bad = invoke("measure", ckpt, "--data", data, "--save-every", -1)
    assert bad.exit_code == 2 and "--save-every" in bad.output


def test_sigterm_is_handled_like_ctrl_c(nanogpt_run, tmp_path):
    """``kill`` or a batch scheduler's stop (SIGTERM) inside Lanczos: one line says what was
    kept, exit code 143, and the rerun resumes (shown for Ctrl-C above)."""
    import signal
    import subprocess
    import sys
    import time

    ckpt, data = nanogpt_run
    slow = (  # 0.2 s per product, so the signal lands inside Lanczos
        "import sys, time, smoothprobe.progress as p\n"
        "real = p.ProgressOperator.matvec\n"
        "p.ProgressOperator.matvec = lambda self, v: time.sleep(0.2) or real(self, v)\n"
        "from smoothprobe_cli.main import cli\n"
        "cli(sys.argv[1:], prog_name='smoothprobe')\n"
    )
    out = tmp_path / "m.jsonl"
    args = ["measure", ckpt, "--data", data, "--num-batches", 1, "--norm", "l2", "--out", out]
    proc = subprocess.Popen([sys.executable, "-c", slow, *map(str, args)],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "ℓ2: Lanczos" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 143
    assert "interrupted: " in rest and "run the same command" in rest
    assert not out.exists()
