"""The command line: outputs, records, one-line errors, exit codes, no half-written files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from smoothprobe_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_every_command_is_documented():
    result = run("--help")
    assert result.exit_code == 0
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 40, name
        assert "Example" in command.help, name
        assert run(name, "--help").exit_code == 0
    assert run("--version").output.startswith("smoothprobe, version")


def test_info_on_nanogpt_checkpoint(nanogpt_run):
    ckpt, data = nanogpt_run
    result = run("info", ckpt, "--data", data, "--batch-size", 2, "--num-batches", 2)
    assert result.exit_code == 0, result.output
    assert "transformer.wte.weight = lm_head.weight (counted once)" in result.output
    assert "step 100" in result.output
    summary = json.loads(run("info", ckpt, "--data", data, "--format", "json").output)
    assert summary["d"] == sum(t["numel"] for t in summary["tensors"])


def test_measure_l2_writes_records_and_formats(nanogpt_run, tmp_path):
    ckpt, data = nanogpt_run
    out = tmp_path / "m.jsonl"
    args = [
        "measure",
        ckpt,
        "--data",
        data,
        "--batch-size",
        2,
        "--num-batches",
        2,
        "--norm",
        "l2",
        "--dtype",
        "float64",
        "--quiet",
    ]
    result = run(*args, "--out", out, "--format", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    stored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["quantity"] for r in printed] == [r["quantity"] for r in stored]
    by = {r["quantity"]: r for r in stored}
    assert {"loss", "lambda_max", "lambda_min", "l2_norm", "d_l2"} <= set(by)
    for r in stored:
        for key in (
            "value",
            "bound",
            "hvps",
            "seconds",
            "seed",
            "d",
            "geometry",
            "basis",
            "partition",
            "checkpoint",
        ):
            assert key in r, key
        assert r["checkpoint"] == str(ckpt) and r["step"] == 100 and r["dtype"] == "float64"
    assert by["d_l2"]["value"] == pytest.approx(by["l2_norm"]["value"] * by["d_l2"]["d"])
    table = run(*args).output
    assert "lambda_max" in table and "d = " in table
    csv = run(*args, "--format", "csv").output.splitlines()
    assert csv[0].startswith("quantity,value,bound") and len(csv) == len(stored) + 1
    run(*args, "--out", out, "--append")
    assert len(out.read_text().splitlines()) == 2 * len(stored)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, c, d: ["measure", t / "missing.pt"], "checkpoint not found"),
        (lambda t, c, d: ["measure", c, "--data", t / "missing.bin"], "data file not found"),
        (lambda t, c, d: ["measure", t / "short.pt"], "truncated or corrupt"),
        (lambda t, c, d: ["measure", c, "--data", t / "short.bin"], "shorter than one sequence"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_no_output_file(nanogpt_run, tmp_path, make_args, message):
    ckpt, data = nanogpt_run
    (tmp_path / "short.pt").write_bytes(ckpt.read_bytes()[:200])
    np.arange(3, dtype=np.uint16).tofile(tmp_path / "short.bin")
    out = tmp_path / "never.jsonl"
    result = CliRunner().invoke(
        cli, [str(a) for a in make_args(tmp_path, ckpt, data)] + ["--out", str(out), "--quiet"]
    )
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".never.jsonl.*"))


def test_usage_errors_exit_2(nanogpt_run):
    ckpt, data = nanogpt_run
    assert run("measure", ckpt, "--norm", "l3").exit_code == 2
    assert run("measure", ckpt, "--hvps", 0).exit_code == 2
    assert run("measure", ckpt, "--tol", 2).exit_code == 2


def test_measure_graddiff_and_noise_flags(nanogpt_run):
    ckpt, data = nanogpt_run
    result = run(
        "measure",
        ckpt,
        "--data",
        data,
        "--batch-size",
        2,
        "--num-batches",
        2,
        "--norm",
        "none",
        "--graddiff",
        1e-3,
        "--graddiff",
        1e-2,
        "--graddiff-samples",
        3,
        "--noise",
        2,
        "--dtype",
        "float64",
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    radii = {r["settings"]["radius"] for r in records if r["quantity"] == "graddiff_max"}
    assert radii == {1e-3, 1e-2}
    noise = [r for r in records if r["quantity"].startswith("noise_")]
    assert noise and all(r["settings"]["batch_size"] == 2 for r in noise)


def test_trajectory_command_resumes(tmp_path):
    from conftest import make_nanogpt_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt, data = make_nanogpt_run(run_dir, iter_num=0)
    for step in (10, 20):  # more checkpoints of the same architecture
        obj = __import__("torch").load(ckpt, weights_only=True)
        obj["iter_num"] = step
        for v in obj["model"].values():
            v.add_(0.01 * step)
        __import__("torch").save(obj, run_dir / f"ckpt_{step}.pt")
    out = tmp_path / "traj.jsonl"
    args = [
        "trajectory",
        str(run_dir / "*.pt"),
        "--data",
        data,
        "--batch-size",
        2,
        "--num-batches",
        1,
        "--norm",
        "l2",
        "--max-hvps",
        20,
        "--tol",
        1e-3,
        "--out",
        out,
        "--quiet",
    ]
    first = run(*args)
    assert first.exit_code == 0, first.output
    lines = out.read_text().splitlines()
    steps = {json.loads(line)["step"] for line in lines}
    assert steps == {0, 10, 20}
    second = run(*args)  # same settings: nothing re-measured
    assert second.exit_code == 0 and out.read_text().splitlines() == lines
    as_json = run(*args, "--format", "json")  # resumed, printed as records
    assert as_json.exit_code == 0, as_json.output
    assert [json.dumps(r) for r in json.loads(as_json.output)] == [
        json.dumps(json.loads(line)) for line in lines
    ]
    as_csv = run(*args, "--format", "csv")
    assert as_csv.exit_code == 0 and as_csv.output.startswith("quantity,value,bound,")
    assert len(as_csv.output.splitlines()) == len(lines) + 1


def test_measure_all_geometries_in_a_rotated_basis(nanogpt_run):
    ckpt, data = nanogpt_run
    result = run(
        "measure",
        ckpt,
        "--data",
        data,
        "--batch-size",
        2,
        "--num-batches",
        2,
        "--dtype",
        "float64",
        "--norm",
        "both",
        "--with",
        "trace,frobenius",
        "--top-k",
        2,
        "--method",
        "two-phase",
        "--hvps",
        64,
        "--confidence",
        0.9,
        "--blocks",
        "tensor",
        "--block-hvps",
        2000,
        "--basis",
        "hadamard",
        "--seed",
        3,
        "--quiet",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    by = {r["quantity"]: r for r in records}
    assert {
        "trace",
        "frobenius_sq",
        "l11_norm",
        "linf_lower",
        "l11_over_dl2",
        "block_upper",
        "block_lower",
    } <= set(by)
    assert "rho" not in by  # ‖H‖₁,₁/(d·L₂) is not ρ; it is recorded as what it is
    assert all(r["basis"] == "hadamard:seed=3" for r in records)
    assert by["block_upper"]["partition"] == "tensor"
    assert by["l11_norm"]["confidence"] == 0.9 and by["l11_norm"]["hvps"] <= 64
    assert len(by["lambda_max"]["extra"]["top_values"]) == 2
    # H∞ ≤ H(Φ) for every Φ (the ℓ∞ ball lies inside the Φ ball); U(Φ) is certified here
    # because --block-hvps leaves more than d = 1,144 HVPs for the exact block norms
    assert by["block_upper"]["bound"] == "upper"
    assert by["linf_lower"]["value"] <= by["block_upper"]["value"] * (1 + 1e-9)
    # L₂ from Lanczos is a lower bound, so ‖H‖₁,₁/(d·L₂) is not exact (old code: "rho … exact")
    assert by["l11_over_dl2"]["bound"] != "exact"
