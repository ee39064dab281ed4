"""The memory plan sizes a run before it starts, and refuses plans that cannot fit."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from smoothprobe.devices import DeviceError, resolve_device
from smoothprobe.errors import SmoothprobeError
from smoothprobe.memory_plan import GIB, MemoryBudgetError, parse_memory, plan_memory

GPT2 = dict(d=124_475_904, element_bytes=4, lanczos_steps=300)


def test_gpt2_small_fits_16_gib_with_a_bounded_basis():
    plan = plan_memory(budget=16 * GIB, graph_bytes=int(1.7 * GIB), num_batches=1, **GPT2)
    assert plan.peak <= 16 * GIB and plan.retain_graphs
    assert 8 <= plan.basis_rows < 300  # never the (max_hvps × d) float64 basis of 300 GB
    assert plan.chunk_size >= 1
    four = plan_memory(budget=16 * GIB, graph_bytes=int(3.3 * GIB), num_batches=4, **GPT2)
    assert not four.retain_graphs and four.peak <= 16 * GIB  # 13 GiB of graphs do not fit
    assert "memory plan" in four.summary() and "one at a time" in four.summary()


def test_tiny_model_keeps_the_fastest_settings():
    plan = plan_memory(budget=2 * GIB, d=2410, element_bytes=4, graph_bytes=10_000,
                       num_batches=4, lanczos_steps=300)  # fmt: skip
    assert plan.retain_graphs and plan.chunk_size == 32
    assert plan.basis_rows == 300 and plan.basis_dtype == "float64"  # plain Lanczos


def test_a_plan_that_cannot_fit_is_one_clear_line():
    with pytest.raises(MemoryBudgetError, match=r"needs at least .* GiB") as info:
        plan_memory(budget=2 * GIB, graph_bytes=GIB, num_batches=1, **GPT2)
    assert "\n" not in str(info.value)
    bf16 = {**GPT2, "element_bytes": 2}  # a run that fits, but not one direction's 40·d bytes
    with pytest.raises(MemoryBudgetError, match="gradient differences need .* per direction"):
        plan_memory(budget=73 * GPT2["d"], graph_bytes=1000, num_batches=1, graddiff_samples=16,
                    **bf16)  # fmt: skip


def test_gradient_differences_stream_in_chunks_that_fit():
    plan = plan_memory(budget=16 * GIB, graph_bytes=GIB, num_batches=1, graddiff_samples=16, **GPT2)
    assert 1 <= plan.graddiff_samples < 16  # 16 directions × 5 float64 d-vectors = 74 GiB
    assert plan.peak <= 16 * GIB
    small = plan_memory(budget=16 * GIB, d=2410, element_bytes=4, graph_bytes=10_000,
                        num_batches=1, lanczos_steps=300, graddiff_samples=16)  # fmt: skip
    assert small.graddiff_samples == 16


def test_parse_memory():
    assert parse_memory("16GiB") == 16 * GIB and parse_memory("800MB") == 800 * 10**6
    assert 0 < parse_memory("0.5") <= parse_memory("1.0")
    for bad in ("lots", "-3G", "0"):
        with pytest.raises(SmoothprobeError, match="not a size"):
            parse_memory(bad)


def test_on_a_gpu_the_default_budget_is_a_fraction_of_the_gpus_memory(monkeypatch):
    """A run on CUDA holds its graphs, probes and basis on the device: the default budget and a
    fractional --memory come from the GPU's free memory (plus what this process reserved
    there), never from the host's."""
    from smoothprobe import memory_plan

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (30 * GIB, 141 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 10 * GIB)
    gpu = torch.device("cuda", 0)
    assert memory_plan.default_budget(0.5, device=gpu) == 20 * GIB
    assert memory_plan.default_budget(device=gpu) == int(0.7 * 40 * GIB)
    assert parse_memory("0.25", device=gpu) == 10 * GIB
    assert parse_memory("0.25") != 10 * GIB  # the host's, read with psutil
    assert parse_memory("3GiB", device=gpu) == 3 * GIB


def test_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            resolve_device("cuda:1")


def test_cli_prints_the_plan_and_rejects_bad_budgets_and_devices():
    from smoothprobe_cli.main import cli

    runner = CliRunner()
    bad = runner.invoke(cli, ["measure", "example:mlp", "--memory", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.output
    small = runner.invoke(cli, ["measure", "example:mlp", "--memory", "1KiB", "--norm", "l2"])
    assert small.exit_code == 1 and "needs at least" in small.output
    problems = [ln for ln in small.output.splitlines() if not ln.startswith("[smoothprobe]")]
    assert len(problems) == 1  # one line, no traceback (the threads header aside)
    if not torch.cuda.is_available():
        dev = runner.invoke(cli, ["measure", "example:mlp", "--device", "cuda"])
        assert dev.exit_code == 1 and "no CUDA" in dev.output
    ok = runner.invoke(
        cli, ["measure", "example:mlp", "--norm", "l2", "--max-hvps", "30", "--memory", "1GiB"]
    )
    assert ok.exit_code == 0, ok.output
    assert "memory plan: budget 1.00 GiB" in ok.output


def test_a_batched_hvp_out_of_memory_halves_the_block(monkeypatch):
    examples = pytest.importorskip("smoothprobe.examples")
    problem = examples.build_example("mlp", dtype=torch.float64)
    op = problem.hvp_operator()
    v = torch.randn(8, problem.d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = op.matvec(v)
    real = torch.autograd.grad

    def tight(*args, **kwargs):
        if kwargs.get("is_grads_batched") and kwargs["grad_outputs"][0].shape[0] > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", tight)
    with pytest.warns(RuntimeWarning, match="ran out of memory"):
        got = op.matvec(v)
    torch.testing.assert_close(got, expected)
    assert op.chunk_size == 2 and op._batched_ok  # still batched, in smaller blocks


def test_an_h_inf_bracket_that_cannot_fit_is_skipped_and_said():
    big = plan_memory(budget=16 * GIB, graph_bytes=GIB, num_batches=1, hinf_hvps=2048, **GPT2)
    assert big.hinf_hvps == 0 and "H∞ bracket skipped" in big.summary()
    assert "1,901 GiB" in big.hinf_skipped and big.peak <= 16 * GIB
    small = plan_memory(budget=2 * GIB, d=28_544, element_bytes=4, graph_bytes=10_000,
                        num_batches=1, lanczos_steps=300, hinf_hvps=2048)  # fmt: skip
    assert small.hinf_hvps == 2048 and small.hinf_skipped == ""
    assert small.peak >= 1025 * 2 * 8 * 28_544  # the certificate's basis is planned


def test_cli_runs_on_without_a_bracket_that_does_not_fit(tmp_path):
    from smoothprobe_cli.main import cli

    out = tmp_path / "m.jsonl"
    args = ["measure", "example:gpt", "--norm", "linf", "--hvps", "64", "--out", str(out)]
    run = CliRunner().invoke(cli, [*args, "--memory", "30MiB"])  # d = 2,676: 44 MB needed
    assert run.exit_code == 0, run.output
    assert "H∞ bracket skipped: at 2048 HVPs its certificate needs" in run.output
    assert '"hinf_upper"' not in out.read_text() and '"l11_norm"' in out.read_text()


def test_blockwise_sketches_are_planned():
    """GPT-2-small per tensor (widest block: wte, 50,304 × 768) fits 16 GiB; 12 GiB refuses."""
    wte = 50_304 * 768
    fits = plan_memory(budget=16 * GIB, graph_bytes=int(3.2 * GIB), num_batches=1,
                       largest_block=wte, **GPT2)  # fmt: skip
    assert fits.peak <= 16 * GIB and fits.chunk_size == 1
    sketch = 4 * (4 * GPT2["d"] + 8 * wte) + 16 * GPT2["d"]
    bare = plan_memory(budget=16 * GIB, graph_bytes=int(3.2 * GIB), num_batches=1, **GPT2)
    assert fits.peak >= bare.fixed + bare.graph + sketch
    with pytest.raises(MemoryBudgetError, match=r"blockwise H\(Φ\) needs .* GiB") as info:
        plan_memory(budget=12 * GIB, graph_bytes=int(3.2 * GIB), num_batches=1,
                    largest_block=wte, **GPT2)  # fmt: skip
    assert "\n" not in str(info.value)
    small = plan_memory(budget=GIB, d=28_544, element_bytes=4, graph_bytes=10_000,
                        num_batches=1, lanczos_steps=300, largest_block=512)  # fmt: skip
    assert small.peak <= GIB and small.ascent_restarts == 8


def test_every_lanczos_phase_is_planned():
    """ℓ2, the spectral suite's own L₂ run and the Adam-preconditioned run keep a basis."""
    from smoothprobe.measure import MeasureSettings, runs_lanczos

    assert [runs_lanczos(MeasureSettings(norm=n)) for n in ("none", "l2", "linf", "spectral")] == [
        False, True, False, True,
    ]  # fmt: skip
    assert runs_lanczos(MeasureSettings(norm="none", preconditioner="adam"))
    plan = plan_memory(budget=16 * GIB, graph_bytes=int(3.2 * GIB), num_batches=1,
                       **{**GPT2, "lanczos_steps": 0})  # fmt: skip
    assert plan.basis_rows == 0 and "Lanczos" not in plan.summary()


def test_rebuilt_graphs_serve_a_block_of_probes():
    """Four 3.3 GiB graphs are rebuilt at every call: estimators hand over blocks of probes
    (inputs and outputs planned), while each backward still takes one probe."""
    four = plan_memory(budget=16 * GIB, graph_bytes=int(3.3 * GIB), num_batches=4, **GPT2)
    assert not four.retain_graphs and four.chunk_size == 1 and 2 <= four.block <= 8
    assert (
        four.peak <= 16 * GIB
        and four.peak >= four.fixed + four.graph + 2 * four.block * 4 * GPT2["d"]
    )
    assert f"probe blocks of {four.block} per rebuild, 1 per backward" in four.summary()
    kept = plan_memory(budget=16 * GIB, graph_bytes=int(1.7 * GIB), num_batches=1, **GPT2)
    assert kept.retain_graphs and kept.block == kept.chunk_size  # nothing to amortize
    tight = plan_memory(budget=13 * GIB, graph_bytes=int(3.3 * GIB), num_batches=4, **GPT2)
    assert tight.block == 1 and tight.peak <= 13 * GIB  # no room: one probe per rebuild


def test_rebuilt_blocks_give_the_same_records_with_fewer_rebuilds(monkeypatch):
    """The ℓ∞ and blockwise phases take the same probes in blocks (one rebuild per block) as
    one at a time; only the number of graph rebuilds changes."""
    from test_streams import RANDOM_QUANTITIES, _loaded

    from smoothprobe import memory_plan
    from smoothprobe.measure import MeasureSettings, run_measurement
    from smoothprobe.operators import HessianOperator

    builds = []
    build = HessianOperator._build
    monkeypatch.setattr(
        HessianOperator, "_build", lambda self, i: builds.append(i) or build(self, i)
    )
    settings = MeasureSettings(norm="linf", blocks=("tensor",), seed=5, hvps=40,
                               retain_graphs=False, chunk_size=1)  # fmt: skip

    def run() -> tuple[dict, int]:
        builds.clear()
        records = run_measurement(_loaded(), settings, progress=False).records
        found = {(r["quantity"], r.get("partition")): r for r in records}
        return {k: r["value"] for k, r in found.items() if k[0] in RANDOM_QUANTITIES}, len(builds)

    blocked, blocked_builds = run()
    monkeypatch.setattr(memory_plan, "REBUILD_BLOCK", 1)
    single, single_builds = run()
    assert blocked.keys() == single.keys() and len(blocked) >= 4
    for key, value in single.items():
        assert blocked[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key
    assert blocked_builds * 3 < single_builds, (blocked_builds, single_builds)
