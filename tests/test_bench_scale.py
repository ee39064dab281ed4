"""The small version of ``bench/scale.py``: its cost rows on a tiny nanoGPT written the same way
as the 124M checkpoint (retained graphs, and graphs rebuilt once per block of probes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

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
    monkeypatch.setattr(scale, "RESULTS", results)
    rebuilt = ["--batches", "2", "--chunk", "1", "--allocators", "default", "heap"]
    for extra in ([], rebuilt):
        argv = ["scale.py", "costs", str(tmp_path), "--k", "3", "--batch-size", "2",
                "--block-size", "16", "--limit-gib", "8", *extra]  # fmt: skip
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
        assert r["minor_faults"] > 0 and r["system_s"] >= 0
    assert [r["graphs"] for r in rows] == ["retained", "rebuilt per call", "rebuilt per call"]
