"""``smoothprobe report`` and ``smoothprobe compare`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from smoothprobe.records import load_records, write_records
from smoothprobe.report import tables
from smoothprobe.report.example_records import example_records
from smoothprobe.report.render import compare_table
from smoothprobe_cli.main import cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic records files: one checkpoint (step 0) and three (steps 0, 500, 1000)."""
    root = tmp_path_factory.mktemp("records")
    paths = {"before": root / "before.jsonl", "after": root / "after.jsonl"}
    write_records(paths["before"], example_records(steps=(0,)))
    write_records(paths["after"], example_records(steps=(0, 500, 1000)))
    return paths


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: {expected}\n"
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory):
    """``smoothprobe report before.jsonl after.jsonl --out DIR --title 'CLI test'``."""
    out = tmp_path_factory.mktemp("reports") / "rep"
    result = invoke("report", runs["before"], runs["after"], "--out", out, "--title", "CLI test")
    return result, out


def test_report_writes_the_report_and_says_where(written):
    result, out = written
    assert result.exit_code == 0, result.output
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures  # the synthetic records have data for every figure kind
    n = len(example_records(steps=(0,))) + len(example_records(steps=(0, 500, 1000)))
    assert result.output == (
        f"wrote {out / 'index.html'} and {out / 'report.md'} ({n} records, "
        f"{len(figures)} figures)\n"
    )
    assert "<title>CLI test</title>" in (out / "index.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# CLI test\n")
    assert f"- records: {n} from 2 source(s)" in markdown


def test_report_headline_follows_checkpoint_option(runs, tmp_path):
    out = tmp_path / "first"
    result = invoke("report", runs["after"], "--out", out, "--checkpoint", "out/ckpt_00000.pt")
    assert result.exit_code == 0, result.output
    headline = json.loads((out / "headline.json").read_text())
    assert (headline["checkpoint"], headline["step"]) == ("out/ckpt_00000.pt", 0)


def test_report_default_out_is_reports_stem_and_is_replaced(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("report", runs["before"]).exit_code == 0
    assert Path("reports/before/report.md").read_text("utf-8").startswith("# smoothprobe report")
    result = invoke("report", runs["before"], "--title", "Second")
    assert result.exit_code == 0, result.output
    assert Path("reports/before/report.md").read_text("utf-8").startswith("# Second\n")
    assert Path("reports/before/index.html").is_file()


def test_report_missing_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    result = invoke("report", missing, "--out", tmp_path / "r")
    assert_one_line_error(
        result, f"records file not found: {missing} (give a .jsonl written by --out)"
    )
    assert not (tmp_path / "r").exists()


def test_report_line_that_is_not_json(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"quantity": "l2_norm", "value": 1.0}\nnot json\n')
    result = invoke("report", bad, "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}:2 is not a JSON record")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("line", ['{"a": 1}', "[1, 2]", '{"quantity": "l2_norm"}'])
def test_report_json_that_is_not_a_record(tmp_path, line):
    bad = tmp_path / "other.jsonl"
    bad.write_text(line + "\n")
    result = invoke("report", bad, "--out", tmp_path / "r")
    assert_one_line_error(
        result,
        f"{bad}:1 is JSON but not a smoothprobe record (no quantity/value); pass files "
        "written by `smoothprobe measure --out`",
    )


def test_report_empty_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke("report", empty, "--out", tmp_path / "r")
    assert_one_line_error(result, "no records to report on; pass JSONL files written by measure")


def test_report_refuses_to_replace_a_foreign_directory(runs, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = invoke("report", runs["before"], "--out", foreign)
    assert_one_line_error(
        result, f"{foreign} exists and is not a smoothprobe report; choose a new --out directory"
    )
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_report_out_is_a_file(runs, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = invoke("report", runs["before"], "--out", target)
    assert result.exit_code == 2  # click rejects a file for a directory option
    assert "is a file" in result.output


def test_report_needs_records():
    result = invoke("report")
    assert result.exit_code == 2
    assert "Missing argument 'RECORDS...'" in result.output


def test_compare_prints_both_sides(runs):
    result = invoke("compare", runs["before"], runs["after"], "--labels", "before,after")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [
        "before: out/ckpt_00000.pt @ step 0",
        "after: out/ckpt_01000.pt @ step 1000",
        "",
    ]
    assert (
        result.output
        == compare_table(
            load_records(runs["before"]), load_records(runs["after"]), labels=("before", "after")
        ).rstrip("\n")
        + "\n"
    )
    # the d·L₂ row states each side's measured value (example truths: 605 at step 0, 1210 at 1000)
    frames = [load_records(runs[k]) for k in ("before", "after")]
    dl2 = [
        f[(f["quantity"] == "d_l2") & (f["step"] == s) & (f["basis"] == "identity")]["value"].iloc[
            0
        ]
        for f, s in zip(frames, (0, 1000), strict=True)
    ]
    row = next(ln for ln in lines if ln.startswith("identity") and "d·L₂" in ln)
    assert tables.fmt_num(dl2[0]) in row and tables.fmt_num(dl2[1]) in row
    assert tables.fmt_num(dl2[1] / dl2[0]) in row


def test_compare_formats_carry_the_same_rows(runs):
    """--format markdown / csv / json: the table's rows and each side's checkpoint, parseable."""
    import csv
    import io

    args = ("compare", runs["before"], runs["after"], "--labels", "before,after", "--format")
    text = invoke(*args, "table").output
    md, sheet, js = (invoke(*args, fmt) for fmt in ("markdown", "csv", "json"))
    assert all(r.exit_code == 0 for r in (md, sheet, js)), md.output + sheet.output + js.output
    found = json.loads(js.output)
    assert found["sides"] == [
        {"label": "before", "checkpoint": "out/ckpt_00000.pt", "step": 0},
        {"label": "after", "checkpoint": "out/ckpt_01000.pt", "step": 1000},
    ]
    rows = list(csv.DictReader(io.StringIO(sheet.output)))
    assert (
        rows == found["rows"] and len(rows) == len(text.splitlines()) - 5
    )  # sides, blank, header, rule
    assert list(rows[0]) == ["Basis", "Constant", "Optimizer", "before value", "before ρ",
                             "after value", "after ρ", "after/before"]  # fmt: skip
    assert md.output.startswith("- before: out/ckpt_00000.pt @ step 0\n- after: ")
    table_lines = [ln for ln in md.output.splitlines() if ln.startswith("|")]
    assert len(table_lines) == len(rows) + 2  # header and separator
    assert all(r["after/before"] in md.output for r in rows)


def test_compare_default_labels(runs):
    result = invoke("compare", runs["after"], runs["before"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "A: out/ckpt_01000.pt @ step 1000",
        "B: out/ckpt_00000.pt @ step 0",
    ]


def test_compare_missing_file(runs, tmp_path):
    missing = tmp_path / "gone.jsonl"
    result = invoke("compare", runs["before"], missing)
    assert_one_line_error(
        result, f"records file not found: {missing} (give a .jsonl written by --out)"
    )


def test_compare_bad_labels(runs):
    result = invoke("compare", runs["before"], runs["after"], "--labels", "only-one")
    assert result.exit_code == 2  # a bad option value is a usage error (issue 16.12)
    assert result.output.endswith(
        "Error: Invalid value for '--labels': 'only-one': give two names separated by a comma, "
        "e.g. before,after\n"
    )


def test_compare_empty_side(runs, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = invoke("compare", runs["before"], empty, "--labels", "x,y")
    assert_one_line_error(result, "y has no records; pass JSONL files written by measure")


def test_commands_are_documented():
    for name in ("report", "compare", "demo"):
        result = invoke(name, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output


def _basis_run(path: Path, basis: str, l11: float, lower: float) -> Path:
    from smoothprobe.estimate import Bound, Estimate
    from smoothprobe.records import RunContext, make_record

    ctx = RunContext(checkpoint="ckpt.pt", d=100, step=600, basis=basis)
    converged = {"residual": 0.0, "converged": True}
    estimates = [
        Estimate("lambda_max", 2.0, Bound.LOWER, geometry="l2", extra=converged),
        Estimate("lambda_min", -0.5, Bound.UPPER, geometry="l2", extra=converged),
        Estimate("l11_norm", l11, Bound.EXACT, geometry="linf"),
        Estimate("linf_lower", lower, Bound.LOWER, geometry="linf"),
    ]
    write_records(path, [make_record(e, ctx) for e in estimates])
    return path


def test_compare_identity_with_rotated_compares_original_with_rotated(tmp_path):
    """README: `compare identity.jsonl rotated.jsonl`. Old code matched rows by basis, so every
    ratio was "—"; now the same quantity is compared across the two files."""
    identity = _basis_run(tmp_path / "identity.jsonl", "identity", 50.0, 30.0)
    rotated = _basis_run(tmp_path / "rotated.jsonl", "hadamard:seed=0", 250.0, 120.0)
    result = invoke("compare", identity, rotated, "--labels", "original,rotated")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "original: ckpt.pt @ step 600\n"
        "rotated: ckpt.pt @ step 600\n"
        "\n"
        "Basis                        Constant  Optimizer  original value     original ρ      "
        "rotated value   rotated ρ      rotated/original\n"
        "───────────────────────────  ────────  ─────────  ─────────────────  ──────────────  "
        "──────────────  ─────────────  ────────────────────────────────────────────────\n"
        "identity vs hadamard:seed=0  d·L₂      SGD        200 [200, 200]     [1.00, 1.00]    "
        "200 [200, 200]  [1.00, 1.00]   1.00 [1.00, 1.00] (Lanczos residual)\n"
        "identity vs hadamard:seed=0  H∞        Adam       50.0 [30.0, 50.0]  [0.150, 0.250]  "
        "200 [120, 200]  [0.600, 1.00]  4.00 [2.40, 6.67] (certified / Lanczos residual)\n"
    )
