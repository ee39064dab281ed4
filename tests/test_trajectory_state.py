"""A step ratio across changed BatchNorm statistics is not a bound (issue 10.8)."""

from __future__ import annotations

import torch

from smoothprobe.problem import problem_from_module
from smoothprobe.trajectory import changed_state, run_trajectory


def net_with_batchnorm():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()


def write_run(root, *, stats_move: bool):
    """Three checkpoints: weights move each step; BatchNorm statistics too if ``stats_move``."""
    net = net_with_batchnorm()
    for step in range(3):
        with torch.no_grad():
            net[0].weight.add_(0.01 * step)
            if stats_move:
                net[1].running_mean.fill_(0.1 * step)
                net[1].running_var.fill_(1.0 + 0.2 * step)
        torch.save(net.state_dict(), root / f"ckpt_{step}.pt")


def gradient_of(path):
    net = net_with_batchnorm()
    net.load_state_dict(torch.load(path, weights_only=True))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 1, generator=gen, dtype=torch.float64)
    problem = problem_from_module(net, torch.nn.functional.mse_loss, (x, y))
    return problem.theta, problem.gradient(), problem.layout, problem.constants


def step_ratios(tmp_path, *, stats_move):
    root = tmp_path / ("moving" if stats_move else "fixed")
    root.mkdir()
    write_run(root, stats_move=stats_move)
    records = run_trajectory(
        str(root / "ckpt_*.pt"),
        out=root / "traj.jsonl",
        gradient_of=gradient_of,
        geometries=("l2",),
        order="name",
        progress=False,
    )
    return [r for r in records if r["quantity"] == "step_ratio"]


def test_same_function_gives_a_lower_bound(tmp_path):
    ratios = step_ratios(tmp_path, stats_move=False)
    assert len(ratios) == 2
    assert all(r["bound"] == "lower" and "different_functions" not in r["extra"] for r in ratios)


def test_moved_batchnorm_statistics_are_said_to_make_two_functions(tmp_path):
    ratios = step_ratios(tmp_path, stats_move=True)
    assert len(ratios) == 2
    for r in ratios:
        assert r["bound"] == "estimate"
        assert r["extra"]["different_functions"] == (
            "2 buffer(s) or frozen tensor(s) differ between the checkpoints (1.running_mean, "
            "1.running_var), e.g. BatchNorm running statistics: the two gradients are of "
            "different functions, so this ratio is not a lower bound on a smoothness constant"
        )


def test_changed_state_names_what_differs():
    a = {"bn.running_mean": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(3)}
    assert changed_state(a, dict(a)) == []
    b = {**a, "bn.running_mean": torch.ones(2)}
    assert changed_state(a, b) == ["bn.running_mean"]
    assert changed_state(None, b) == [] and changed_state(a, {}) == sorted(a)
