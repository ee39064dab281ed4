"""The finished-phase store behind ``measure``'s resume."""

from __future__ import annotations

import math

import torch

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.finished_phases import FinishedPhases, phases_path


def test_round_trip_keeps_every_value(tmp_path):
    path = phases_path(tmp_path / "m.jsonl")
    assert path == tmp_path / ".m.jsonl.phases.json"
    est = Estimate("l2_norm", 3.5, Bound.LOWER, stderr=math.nan, ci_high=math.inf,
                   extra={"top": torch.tensor([1.0, 2.0]), "pair": (1, 2)})  # fmt: skip
    store = FinishedPhases(path, {"settings": "abc", "loss": repr(0.1)})
    assert store.put("l2", [est]) == [est] and path.is_file()
    back = FinishedPhases(path, {"settings": "abc", "loss": repr(0.1)}).load().get("l2")
    assert len(back) == 1 and back[0].bound is Bound.LOWER and back[0].value == 3.5
    assert math.isnan(back[0].stderr) and back[0].ci_high == math.inf
    assert back[0].extra == {"top": [1.0, 2.0], "pair": [1, 2]}
    other = FinishedPhases(path, {"settings": "abc", "loss": repr(0.2)}).load()
    assert other.names == [] and other.get("l2") is None  # another sample: start over
    store.remove()
    assert not path.exists()


def test_unreadable_file_and_no_path_start_over(tmp_path):
    path = tmp_path / ".m.phases.json"
    path.write_text("{not json")
    assert FinishedPhases(path, {"k": 1}).load().names == []
    memory_only = FinishedPhases(None, {"k": 1}).load()
    memory_only.put("noise", [Estimate("noise", 1.0)])
    assert memory_only.get("noise")[0].value == 1.0
    reader = FinishedPhases(path, {"k": 1}, writer=False)
    reader.put("l2", [Estimate("l2_norm", 1.0)])
    assert path.read_text() == "{not json"  # a rank other than 0 never writes
