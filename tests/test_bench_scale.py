"""The small version of ``bench/scale.py``: its cost rows on a tiny nanoGPT written the same way
as the 124M checkpoint (retained graphs, and graphs rebuilt once per block of probes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_costs_rows_for_retained_and_rebuilt_graphs(tmp_path, monkeypatch):
    _module("make_gpt2_small").main(
        str(tmp_path), n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=64
    )
    scale = _module("scale")
    results = tmp_path / "scale.jsonl"
    rebuilt = ["--batches", "2", "--chunk", "1", "--allocators", "default", "heap"]
    for extra in ([], rebuilt):
        argv = ["scale.py", "costs", str(tmp_path), "--k", "3", "--batch-size", "2",
                "--block-size", "16", "--limit-gib", "8", "--results", str(results),
                *extra]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        scale.main()
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["phase"], r["allocator"], r["rc"]) for r in rows] == [
        ("costs k=3", "default", 0),
        ("costs k=3, 2 batches", "default", 0),
        ("costs k=3, 2 batches", "heap", 0),
    ]
    for r in rows:
        assert r["gradient_s"] > 0 and r["peak_rss_gib"] > 0 and len(r["per_probe_s"]) == 2
        assert r["minor_faults"] > 0 and r["system_s"] >= 0 and r["device"] == "cpu"
        assert len(r["per_probe_gradients"]) == 2 and min(r["per_probe_gradients"]) > 0
    assert [r["graphs"] for r in rows] == ["retained", "rebuilt per call", "rebuilt per call"]


def _tiny_checkpoint(root: Path) -> None:
    _module("make_gpt2_small").main(
        str(root), n_layer=1, n_head=2, n_embd=16, block_size=128, vocab_size=64
    )


def test_issue_run_records_its_stretch(tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path)
    scale = _module("scale")
    results = tmp_path / "scale.jsonl"
    monkeypatch.setattr(scale, "ISSUE_RUN", ["--num-batches", "1", "--norm", "l2"])  # seconds
    argv = ["scale.py", "run", str(tmp_path), "--memory", "1GiB", "--batch-size", "2",
            "--results", str(results)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    scale.main()
    row = json.loads(results.read_text())
    assert (row["rc"], row["state_at_start"]) == (0, False)
    assert row["records"]["lambda_max/lower"] > 0 and "--norm l2" in row["argv"]
    assert "--batch-size 2 --block-size 128 --device cpu" in row["argv"]
    assert row["peak_rss_gib"] > 0 and row["user_s"] > 0
    # the run's own report of its peak, from its last log line, within what the OS measured
    assert 0 < row["reported_peak_rss_gib"] <= row["peak_rss_gib"] + 0.01
    assert row["log"][-1].startswith("[smoothprobe] done in")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["both.jsonl"]  # no state left


def test_torchrun_check_compares_two_ranks_with_one_process(tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path)
    scale = _module("scale")
    results = tmp_path / "scale.jsonl"
    argv = ["scale.py", "torchrun", str(tmp_path), "--memory", "1GiB", "--results", str(results)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        scale.main()
    row = json.loads(results.read_text())
    assert done.value.code == 0 and row["passed"], row
    assert [row[name]["rc"] for name in ("one process", "torchrun 2 ranks")] == [0, 0]
    assert row["lambda_max_rel_diff"] <= scale.TORCHRUN_TOLERANCE
    one, two = row["records"].values()
    assert one.keys() == two.keys() and "lambda_max/lower" in one


def test_suite_row_holds_its_records_and_plan(tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path)
    scale = _module("scale")
    results = tmp_path / "scale.jsonl"
    argv = ["scale.py", "suites", str(tmp_path), "--only", "heldout-l2", "--memory", "1GiB",
            "--results", str(results)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    scale.main()
    row = json.loads(results.read_text())
    assert row["rc"] == 0 and "tail" not in row
    assert row["records"]["lambda_max/lower"] > 0
    assert any(line.startswith("[smoothprobe] memory plan: budget 1.00 GiB") for line in row["log"])
    assert row["argv"].endswith("--memory 1GiB")


def test_suites_cut_to_this_cpu_unless_full_and_stop_when_told(tmp_path, monkeypatch):
    """Without --full a suite runs on one batch at cut budgets; with it, at the default sample
    and budgets (the GPU rows). --stop-after sends Ctrl-C: the row says rc 130 and when."""
    _tiny_checkpoint(tmp_path)
    scale = _module("scale")
    results = tmp_path / "scale.jsonl"
    common = ["--batch-size", "2", "--memory", "1GiB", "--results", str(results)]
    for extra in ([], ["--full"]):
        argv = ["scale.py", "suites", str(tmp_path), "--only", "l2", *common, *extra]
        monkeypatch.setattr(sys, "argv", argv)
        scale.main()
    argv = ["scale.py", "suites", str(tmp_path), "--only", "blockwise-tensor", "--full",
            "--stop-after", "2", *common]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    scale.main()
    cut, full, stopped = [json.loads(line) for line in results.read_text().splitlines()]
    assert (cut["rc"], full["rc"]) == (0, 0)
    assert "--num-batches 1 --max-hvps 3" in cut["argv"] and "--max-hvps" not in full["argv"]
    assert "--device cpu" in full["argv"] and full["reported_peak_rss_gib"] > 0
    assert (stopped["rc"], stopped["stopped_after_s"]) == (130, 2.0)
