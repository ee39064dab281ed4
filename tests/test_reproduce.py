"""smoothprobe reproduce: the optimizer family, rotation invariance, steps to target, verdicts,
and the quick end-to-end run whose verdicts are recomputed from its records."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from smoothprobe.reproduce.compare import (
    constants_table,
    paired_ratios,
    ratio_side,
    running_min,
    steps_to_target,
)
from smoothprobe.reproduce.optimizers import BETAS, BY_NAME, EPS, BlockAdam
from smoothprobe.reproduce.pipeline import read_outputs
from smoothprobe.reproduce.runs import RunConfig, train
from smoothprobe.reproduce.tasks import build_task
from smoothprobe.reproduce.verdicts import analyse
from smoothprobe_cli.main import cli


def _grads(d: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(d, generator=gen, dtype=torch.float64) * (1 + i) for i in range(steps)]


def test_block_adam_with_singleton_blocks_is_torch_adam():
    d, lr = 11, 3e-2
    a = torch.linspace(-1, 1, d, dtype=torch.float64).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    ours = BlockAdam([a], labels=torch.arange(d), lr=lr)
    ref = torch.optim.Adam([b], lr=lr, betas=BETAS, eps=EPS)
    for g in _grads(d, 20):
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(a, torch.linspace(-1, 1, d, dtype=torch.float64))


def test_block_adam_with_one_block_is_adasgd():
    d, lr = 7, 1e-2
    beta1, beta2 = BETAS
    phi = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    opt = BlockAdam([phi], labels=torch.zeros(d, dtype=torch.int64), lr=lr)
    x, m, v = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), 0.0
    for t, g in enumerate(_grads(d, 10, seed=1), 1):
        phi.grad = g.clone()
        opt.step()
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * float((g * g).mean())
        x = x - lr * (m / (1 - beta1**t)) / (math.sqrt(v / (1 - beta2**t)) + EPS)
    assert torch.allclose(phi.detach(), x, rtol=1e-12, atol=1e-14)


def test_block_adam_blocks_share_one_scale():
    phi = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = BlockAdam([phi], labels=torch.tensor([0, 0, 1, 1]), lr=1.0)
    phi.grad = torch.tensor([3.0, 4.0, 1.0, -1.0], dtype=torch.float64)
    opt.step()
    # first step: update = -lr·g/rms_b(g) per block
    expected = torch.tensor([-3 / 12.5**0.5, -4 / 12.5**0.5, -1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(phi.detach(), expected, rtol=1e-6)


@pytest.fixture(scope="module")
def gpt_task():
    return build_task("example:gpt", quick=True)


def test_sgd_trajectory_is_rotation_invariant_and_adams_is_not(gpt_task):
    config = RunConfig(lr=0.3, seed=0, steps=8, eval_every=4)
    _, plain = train(gpt_task, BY_NAME["sgd"], config, dtype=torch.float64)
    _, rotated = train(gpt_task, BY_NAME["sgd_rot"], config, dtype=torch.float64)
    for key in plain:
        scale = float(plain[key].abs().max())
        assert float((plain[key] - rotated[key]).abs().max()) <= 1e-10 * scale
    adam = RunConfig(lr=1e-2, seed=0, steps=8, eval_every=4)
    _, a = train(gpt_task, BY_NAME["adam"], adam, dtype=torch.float64)
    _, b = train(gpt_task, BY_NAME["adam_rot"], adam, dtype=torch.float64)
    assert torch.allclose(a["step_0"], b["step_0"], rtol=0, atol=1e-12)  # same init (R Rᵀ θ₀)
    assert float((a["step_8"] - b["step_8"]).abs().max()) > 1e-4


def test_same_seed_same_run_and_different_seed_different_init(gpt_task):
    config = RunConfig(lr=1e-2, seed=0, steps=4, eval_every=2)
    s1, k1 = train(gpt_task, BY_NAME["adam_mini"], config)
    s2, k2 = train(gpt_task, BY_NAME["adam_mini"], config)
    assert s1["loss"] == s2["loss"] and torch.equal(k1["step_4"], k2["step_4"])
    other = RunConfig(lr=1e-2, seed=1, steps=4, eval_every=2)
    _, k3 = train(gpt_task, BY_NAME["adam_mini"], other)
    assert not torch.equal(k1["step_0"], k3["step_0"])


def _run(losses, steps=None):
    steps = steps or list(range(0, 10 * len(losses), 10))
    return {"eval_steps": steps, "loss": losses, "steps": steps[-1], "final_loss": losses[-1]}


def test_steps_to_target_interpolates_the_running_minimum():
    run = _run([4.0, 3.0, 3.5, 2.0, 1.0])
    assert running_min(run["loss"]) == [4.0, 3.0, 3.0, 2.0, 1.0]
    assert steps_to_target(run, 3.0) == 10.0
    assert steps_to_target(run, 2.5) == pytest.approx(25.0)  # between 3.0 @20 and 2.0 @30
    assert steps_to_target(run, 0.5) is None
    assert steps_to_target(run, 9.0) == 0.0


def test_paired_ratios_mark_censored_seeds():
    fast = {0: _run([4.0, 2.0, 1.0]), 1: _run([4.0, 3.0, 1.0])}
    slow = {0: _run([4.0, 3.5, 1.5]), 1: _run([4.0, 3.9, 3.0])}
    rows = paired_ratios(fast, slow, 2.0)
    assert rows[0]["kind"] == "exact" and rows[0]["ratio"] == pytest.approx(10 / 17.5)
    assert rows[1]["kind"] == "upper"  # the slow run never reaches 2.0
    assert ratio_side(rows) == "below"
    back = paired_ratios(slow, fast, 2.0)
    assert back[1]["kind"] == "lower" and ratio_side(back) == "above"


def _record(quantity, value, *, partition="", ci_high=None, basis="identity", step=0):
    return {
        "quantity": quantity,
        "value": value,
        "ci_high": ci_high,
        "partition": partition,
        "d": 10,
        "step": step,
        "extra": {"model": "m", "trajectory": "adam", "measure_basis": basis},
    }


def test_constants_bracket_caps_the_surrogate_at_d_l2():
    records = [
        _record("l2_norm", 2.0, ci_high=2.0),
        _record("l11_norm", 30.0, ci_high=35.0, partition="singleton"),
        _record("linf_lower", 5.0, partition="singleton"),
        _record("block_lower", 8.0, partition="tensor"),
        _record("block_upper", 12.0, partition="tensor"),
    ]
    rows = {r["partition"]: r for r in constants_table(records)}
    assert (rows["singleton"]["lower"], rows["singleton"]["upper"]) == (5.0, 20.0)  # d·L₂ = 20
    assert rows["singleton"]["l11_surrogate"] == 30.0
    assert (rows["tensor"]["lower"], rows["tensor"]["upper"]) == (8.0, 12.0)
    assert rows["one"]["rho_lower"] == rows["one"]["rho_upper"] == 1.0
    with_hinf = records + [_record("hinf_upper", 9.0, partition="singleton")]
    assert {r["partition"]: r for r in constants_table(with_hinf)}["singleton"]["upper"] == 9.0


def _independent_c5(runs) -> tuple[float, str]:
    """C5 from the raw curves without the library's helpers: (worst curve gap, verdict)."""
    grid = [r for r in runs if r["optimizer"] == "sgd" and r.get("grid", True)]
    finals = {}
    for r in grid:
        finals.setdefault(r["lr"], []).append(r["final_loss"] or math.inf)
    lr = min(sorted(finals), key=lambda x: sum(finals[x]) / len(finals[x]))
    plain = {r["seed"]: r for r in grid if r["lr"] == lr}
    rotated = {r["seed"]: r for r in runs if r["optimizer"] == "sgd_rot"}
    gap = max(
        abs(a - b) / abs(b)
        for s in plain
        for a, b in zip(rotated[s]["loss"], plain[s]["loss"], strict=True)
    )

    def best_so_far(run):
        out = []
        for x in run["loss"]:
            out.append(min(out[-1], x) if out else x)
        return out

    target = max(best_so_far(r)[-1] for r in [*plain.values(), *rotated.values()])

    def steps(run):
        curve, at = best_so_far(run), run["eval_steps"]
        i = next(i for i, x in enumerate(curve) if x <= target)
        if i == 0:
            return float(at[0])
        frac = (curve[i - 1] - target) / (curve[i - 1] - curve[i])
        return at[i - 1] + frac * (at[i] - at[i - 1])

    base = {s: steps(r) for s, r in plain.items()}
    changes = [abs(max(steps(rotated[s]), 1) / max(base[s], 1) - 1) for s in base]
    spread = (max(base.values()) - min(base.values())) / (sum(base.values()) / len(base))
    verdict = (
        "reproduced"
        if max(changes) <= spread
        else "not reproduced"
        if min(changes) > spread
        else "inconclusive"
    )
    return gap, verdict


def test_quick_reproduction_end_to_end_and_resume(tmp_path):
    out = tmp_path / "repro"
    runner = CliRunner()
    result = runner.invoke(cli, ["reproduce", "--quick", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for name in ("index.html", "report.md", "verdicts.json", "run_info.json"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "figures").glob("*.png"))) == 5
    runs, records, verdicts = read_outputs(out)
    # the verdicts follow from the records alone
    assert analyse(runs, records)["verdicts"] == verdicts
    assert {v["verdict"] for v in verdicts} <= {"reproduced", "not reproduced", "inconclusive"}
    assert len(verdicts) == 8 and all(v["model"] == "gpt" for v in verdicts)
    # every optimizer × 4 learning rates × 3 seeds, plus SGD rotated × 3 seeds
    assert len(runs) == 8 * 4 * 3 + 3
    # no point value outside its bracket
    for row in constants_table(records):
        assert row["lower"] <= row["upper"] * (1 + 1e-9), row
    # C5 recomputed independently from the curves
    c5 = next(v for v in verdicts if v["claim"].startswith("C5"))
    gap, verdict = _independent_c5(runs)
    assert f"largest relative loss difference over the run {gap:.2g}" in c5["evidence"]
    assert c5["verdict"] == verdict
    # resume: a rerun trains nothing and redoes only a lost measurement
    cache = out / ".cache"
    run_times = {p: p.stat().st_mtime_ns for p in (cache / "runs").glob("*.json")}
    lost = sorted((cache / "measure").glob("*.json"))[-1]
    lost.unlink()
    again = runner.invoke(cli, ["reproduce", "--quick", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert lost.exists()
    assert {p: p.stat().st_mtime_ns for p in (cache / "runs").glob("*.json")} == run_times
    assert json.loads((out / "verdicts.json").read_text()) == verdicts


def test_reproduce_rejects_bad_options(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["reproduce", "--steps", "2"]).exit_code == 2
    out = tmp_path / "never"
    bad = runner.invoke(cli, ["reproduce", "--quick", "--model", "example:nope", "--out", out])
    assert bad.exit_code == 1 and "unknown model" in bad.output
    assert not out.exists()


def test_checkpoint_task_fine_tunes_from_its_weights(nanogpt_run):
    ckpt, data = nanogpt_run
    task = build_task(str(ckpt), data_path=str(data), batch_size=4)
    assert task.n_head == 2 and task.mini_partition == "head"
    summary, keep = train(task, BY_NAME["adam_mini"], RunConfig(1e-2, 0, 6, 3))
    state = torch.load(ckpt, weights_only=True)["model"]
    first = state["transformer.wte.weight"].reshape(-1).to(torch.float64)
    assert torch.allclose(keep["step_0"][: first.numel()], first)
    assert summary["loss"][-1] < summary["loss"][0]


def test_committed_report_verdicts_follow_from_its_records():
    from pathlib import Path

    out = Path(__file__).resolve().parents[1] / "reports" / "reproduction"
    assert (out / "verdicts.json").exists(), "the committed reproduction report is missing"
    runs, records, verdicts = read_outputs(out)
    assert analyse(runs, records)["verdicts"] == verdicts
    for row in constants_table(records):
        assert row["lower"] <= row["upper"] * (1 + 1e-9), row


def test_measure_point_uses_the_hinf_bracket_when_asked(gpt_task):
    import dataclasses

    from smoothprobe.reproduce.measure_step import QUICK_BUDGET, MeasurePoint, measure_point

    _, keep = train(gpt_task, BY_NAME["adam"], RunConfig(1e-2, 0, 4, 2))
    point = MeasurePoint("k", "adam", 4, "identity", ())
    budget = dataclasses.replace(QUICK_BUDGET, hinf_hvps=160)
    records = measure_point(gpt_task, keep["step_4"], point, budget)
    by_q = {r["quantity"]: r for r in records}
    assert {"hinf_lower", "hinf_upper", "linf_lower", "l11_norm"} <= set(by_q)
    row = next(r for r in constants_table(records) if r["partition"] == "singleton")
    assert row["upper"] == by_q["hinf_upper"]["value"]
    assert row["lower"] == max(by_q["hinf_lower"]["value"], by_q["linf_lower"]["value"])
    assert row["lower"] <= row["upper"]
    assert point.key(gpt_task, budget) != point.key(gpt_task, QUICK_BUDGET)
