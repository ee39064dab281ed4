"""The ℓ∞ phase resumes where it stopped: an interrupted run, given the same loop checkpoint,
returns exactly the numbers of a run never interrupted (issue 11: a 124M ℓ∞ phase is hours)."""

from __future__ import annotations

import pytest
import torch

from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint
from smoothprobe.linear_operator import as_operator
from smoothprobe.suites.linf import measure_linf

D = 300
OPTIONS = dict(max_hvps=64, restarts=2, ascent_iters=6, max_row_hvps=8, chunk_size=4)


def _matrix() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(D, D, generator=gen, dtype=torch.float64)
    scale = torch.logspace(0, -2, D, dtype=torch.float64)  # skewed rows: the sketch matters
    return (a + a.T) * scale[:, None] * scale[None, :]


class Dies:
    """An operator that raises KeyboardInterrupt at its ``at``-th ``matvec`` call."""

    def __init__(self, inner, at: int | None):
        self.inner, self.at, self.calls = inner, at, 0
        self.d, self.dtype, self.device = inner.d, inner.dtype, inner.device
        self.layout, self.cost = inner.layout, inner.cost

    def matvec(self, vectors):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.matvec(vectors)


def _run(
    prefix,
    at: int | None = None,
    identity: dict | None = None,
    said: list | None = None,
    chunk_size: int = OPTIONS["chunk_size"],
):
    checkpoint = LoopCheckpoint(
        prefix,
        identity or {"run": 1},
        every_seconds=0,
        on_resume=None if said is None else lambda line, hvps: said.append((line, hvps)),
    )
    op = Dies(as_operator(_matrix()), at)
    options = {**OPTIONS, "chunk_size": chunk_size}
    found = measure_linf(op, generator=7, checkpoint=checkpoint, **options).estimates()
    return [(e.quantity, e.value, e.ci_low, e.ci_high, e.hvps) for e in found], op.calls


def test_an_uninterrupted_run_is_the_same_with_or_without_a_checkpoint(tmp_path):
    with_files, calls = _run(tmp_path / "a")
    op = as_operator(_matrix())
    plain = measure_linf(op, generator=7, **OPTIONS).estimates()
    assert with_files == [(e.quantity, e.value, e.ci_low, e.ci_high, e.hvps) for e in plain]
    assert calls > 20
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"a.{loop}.pt" for loop in ("cauchy", "columns", "refine", "sign_ascent")]


@pytest.mark.parametrize("stage", ["cauchy", "columns", "refine", "sign ascent"])
def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path, stage):
    whole, calls = _run(tmp_path / "whole")
    # 24 Cauchy probes (6 calls of 4), 40 columns (10 calls), refinement (2 calls), ascent
    at = {"cauchy": 4, "columns": 11, "refine": 17, "sign ascent": calls - 2}[stage]
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "m", at=at)
    resumed, rest = _run(tmp_path / "m")
    assert resumed == whole
    if stage == "sign ascent":  # kept when it ends: the ascent runs again, nothing before it
        assert rest == calls - 18
    else:  # the products done before are not taken again
        assert rest <= calls - at + 1


@pytest.mark.parametrize("stage", ["cauchy", "columns", "sign ascent"])
def test_a_rerun_with_twice_the_block_resumes_to_the_same_numbers(tmp_path, stage):
    """Interrupted among the sketched columns (Cauchy probes), the exact columns or in the
    ascent with blocks of 4, then rerun with blocks of 8 (a larger memory budget, say): the
    probes are the same stream whatever the block, so the numbers are those of a run never
    interrupted."""
    whole, calls = _run(tmp_path / "whole")
    at = {"cauchy": 4, "columns": 11, "sign ascent": calls - 2}[stage]
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "m", at=at)
    said: list = []
    resumed, _ = _run(tmp_path / "m", said=said, chunk_size=2 * OPTIONS["chunk_size"])
    assert resumed == whole
    assert said and all("resumed" in line for line, _ in said), said  # not started over


def test_a_foreign_or_broken_state_starts_over(tmp_path):
    whole, _ = _run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "m", at=12)
    said = []
    foreign, calls = _run(tmp_path / "m", identity={"run": 2}, said=said)  # another run's files
    assert foreign == whole and calls > 20
    assert said[0] == (f"cauchy: {tmp_path / 'm.cauchy.pt'} is another run's or unreadable: "
                       "this loop starts over", 0)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "n", at=12)
    for path in tmp_path.glob("n.*.pt"):
        path.write_bytes(path.read_bytes()[:100])  # truncated
    broken, calls = _run(tmp_path / "n")
    assert broken == whole and calls > 20


def test_remove_deletes_every_loop_file(tmp_path):
    _run(tmp_path / "m")
    (tmp_path / "other.pt").write_bytes(b"x")
    LoopCheckpoint(tmp_path / "m", {"run": 1}).remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


# ---- blockwise H(Φ): block columns (exact and sketched) and the ascent ----------------------


def _blockwise(prefix, at: int | None = None, *, chunk: int = 4):
    from test_blockwise import partition_of

    from smoothprobe.layout import ParameterLayout
    from smoothprobe.linear_operator import DenseOperator
    from smoothprobe.suites.blockwise import measure_blockwise

    layout = ParameterLayout.from_shapes([("w", (D,))])
    partition = partition_of([5, 7, 3, 60, 25, 200])  # 3 exact columns, 3 sketched (width > 20)
    checkpoint = LoopCheckpoint(prefix, {"run": 1}, every_seconds=0)
    op = Dies(DenseOperator(_matrix(), layout=layout), at)
    found = measure_blockwise(op, partition, upper_method="sketch", restarts=3, iterations=8,
                              generator=5,
                              chunk_size=chunk, checkpoint=checkpoint).estimates()  # fmt: skip
    return [(e.quantity, e.value, e.hvps, e.extra.get("upper_whp")) for e in found], op.calls


@pytest.mark.parametrize("at", [2, 6, 12, "ascent"])
def test_an_interrupted_blockwise_run_resumes_to_the_same_numbers(tmp_path, at):
    whole, calls = _blockwise(tmp_path / "whole")
    at = calls - 3 if at == "ascent" else at  # exact columns, the sketches, then the ascent
    with pytest.raises(KeyboardInterrupt):
        _blockwise(tmp_path / "m", at=at)
    resumed, rest = _blockwise(tmp_path / "m", chunk=8)  # other blocks: the same numbers
    assert resumed == whole
    assert rest < calls


def test_measure_resumes_a_blockwise_phase_and_cleans_up(tmp_path, monkeypatch):
    """run_measurement(resume=...) interrupted inside the per-tensor H(Φ): the rerun restores
    its loops, gives the same records, and leaves no state files."""
    from test_streams import _loaded

    from smoothprobe.measure import MeasureSettings, run_measurement
    from smoothprobe.progress import ProgressOperator

    settings = MeasureSettings(norm="none", blocks=("singleton",), seed=2, chunk_size=2)
    whole = run_measurement(_loaded(), settings, progress=False).records
    monkeypatch.setattr(LoopCheckpoint, "due", lambda self: True)
    real, calls = ProgressOperator.matvec, []

    def dies(self, v):
        if self.desc == "determinism check":  # not an estimator's product
            return real(self, v)
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return real(self, v)

    monkeypatch.setattr(ProgressOperator, "matvec", dies)
    resume = tmp_path / ".m.jsonl.phases.json"
    with pytest.raises(KeyboardInterrupt):
        run_measurement(_loaded(), settings, progress=False, resume=resume)
    assert (tmp_path / ".m.jsonl.phases.blockwise-singleton.upper.pt").is_file()
    monkeypatch.setattr(ProgressOperator, "matvec", real)
    again = run_measurement(_loaded(), settings, progress=False, resume=resume).records
    pick = ("quantity", "value", "bound", "hvps", "partition")
    assert [{k: r.get(k) for k in pick} for r in whole] == [
        {k: r.get(k) for k in pick} for r in again
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.jsonl.phases.json"]
