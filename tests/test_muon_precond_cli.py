"""``--norm spectral`` and ``--preconditioner adam`` through measure, trajectory and the records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import MODEL_ARGS, make_nanogpt_run

from smoothprobe.data import sample_sequences
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe_cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_adam_run(root, *, steps=(4, 8), lr=1e-2):
    """Trains the tiny GPT with nanoGPT's configure_optimizers (AdamW, matrices-first groups)
    and saves nanoGPT checkpoints with the real optimizer state."""
    _, data = make_nanogpt_run(root)  # train.bin (and a ckpt.pt without Adam state)
    (root / "ckpt.pt").unlink()
    tokens = np.fromfile(data, dtype=np.uint16)
    model = GPT(GPTConfig(**MODEL_ARGS))
    model.init_weights(torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    groups = [
        {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    paths = []
    for step in range(1, max(steps) + 1):
        x, y = sample_sequences(tokens, block_size=8, num_sequences=4, seed=step)
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in steps:
            path = root / f"ckpt_{step}.pt"
            torch.save(
                {
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "optimizer": opt.state_dict(),
                    "model_args": dict(MODEL_ARGS),
                    "iter_num": step,
                    "config": {"dataset": "none"},
                },
                path,
            )
            paths.append(path)
    return paths, data


COMMON = ("--batch-size", 2, "--num-batches", 1, "--dtype", "float64", "--quiet")


def test_measure_spectral_and_adam_preconditioner(tmp_path):
    (ckpt, _), data = write_adam_run(tmp_path)
    out = tmp_path / "m.jsonl"
    result = run(
        "measure", ckpt, "--data", data, *COMMON, "--norm", "spectral",
        "--preconditioner", "adam", "--max-hvps", 400, "--tol", 1e-8, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by = {(r["quantity"], r["partition"]): r for r in records}
    for part in ("matrices", "mixed"):
        low, up = by[("op_lower", part)], by[("op_upper", part)]
        assert low["geometry"] == up["geometry"] == "spectral"
        assert low["bound"] == "lower" and up["bound"] == "upper"  # d is small: exact
        assert 0 < low["value"] <= up["value"]
        rho = by[("rho_op", part)]
        assert rho["ci_low"] <= rho["value"] <= 1
    assert "transformer.wte.weight" not in by[("op_lower", "matrices")]["settings"]["matrices"]
    top = next(r for r in records if r["quantity"] == "precond_lambda_max")
    threshold = next(r for r in records if r["quantity"] == "aeos_threshold")
    assert threshold["value"] == pytest.approx((2 + 2 * 0.9) / (0.1 * 1e-2))
    assert top["settings"]["state_order"] == "nanogpt" and top["bound"] == "lower"
    assert top["value"] > 0 and top["extra"]["unpreconditioned_lambda_max"] > 0
    assert "op_lower" in result.output and "precond_lambda_max" in result.output


def test_trajectory_shows_preconditioned_sharpness_over_time(tmp_path):
    paths, data = write_adam_run(tmp_path, steps=(2, 4, 6))
    out = tmp_path / "traj.jsonl"
    args = [
        "trajectory", str(tmp_path / "ckpt_*.pt"), "--data", data, *COMMON, "--norm", "none",
        "--preconditioner", "adam", "--max-hvps", 60, "--step-geometries", "l2", "--out", out,
    ]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    from smoothprobe.trajectory import trajectory_records, trajectory_table

    table = trajectory_table(trajectory_records(out))
    assert list(table.index.get_level_values("step")) == [2, 4, 6]
    sharp = table["precond_lambda_max[preconditioned]"]
    assert bool((sharp > 0).all())
    assert table["aeos_threshold[preconditioned]"].nunique() == 1


def test_one_line_errors_for_bad_optimizer_state(tmp_path, nanogpt_run):
    ckpt, data = nanogpt_run  # its optimizer entry is not an Adam state
    result = run("measure", ckpt, "--data", data, *COMMON, "--preconditioner", "adam")
    assert result.exit_code == 1
    assert "not Adam/AdamW" in result.output and len(result.output.strip().splitlines()) == 1
    obj = torch.load(ckpt, weights_only=True)
    del obj["optimizer"]
    torch.save(obj, tmp_path / "no_opt.pt")
    result = run("measure", tmp_path / "no_opt.pt", "--data", data, *COMMON,
                 "--preconditioner", "adam")  # fmt: skip
    assert result.exit_code == 1 and "no optimizer state" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run("measure", ckpt, "--data", data, *COMMON, "--preconditioner", "sgd")
    assert result.exit_code == 2
    result = run("measure", ckpt, "--data", data, *COMMON, "--norm", "spectral",
                 "--spectral-matrices", "ln_1")  # fmt: skip
    assert result.exit_code == 1 and "not a matrix" in result.output
