"""Gradient noise: agrees with brute-force per-example gradients; scaling, invariances, errors."""

import copy
import math

import pytest
import torch
from torch import nn

from smoothprobe.bases import build_basis
from smoothprobe.errors import DataError, SmoothprobeError
from smoothprobe.estimate import Bound
from smoothprobe.estimators.noise import gradient_noise
from smoothprobe.examples import build_example, build_model
from smoothprobe.models.gpt import lm_loss
from smoothprobe.partitions import one_block, per_tensor, singleton
from smoothprobe.problem import problem_from_module


def brute_force_gradients(problem, x, y):
    """Per-example gradients by plain autograd on a float64 copy of the module (one per row)."""
    model = copy.deepcopy(problem.model).double().eval()
    params = dict(model.named_parameters())
    rows = []
    for n in range(x.shape[0]):
        model.zero_grad()
        target = y[n : n + 1]
        problem.loss_fn(model(x[n : n + 1]), target).backward()
        rows.append(torch.cat([params[s.name].grad.reshape(-1) for s in problem.layout.slots]))
    return torch.stack(rows)


def pooled(problem):
    x = torch.cat([b.inputs for b in problem.batches])
    y = torch.cat([b.targets for b in problem.batches])
    return x, y


def token_weights(y):
    return (
        (y >= 0).reshape(y.shape[0], -1).sum(1).double()
        if y.ndim >= 2
        else torch.ones(y.shape[0], dtype=torch.float64)
    )


def brute_force_variance(G, w, batch_size):
    """σ²_B = Σ_n (w_n/w̄)² (g_n − ḡ)² / ((N−1)B), ḡ = Σ w_n g_n / Σ w_n, written as a loop."""
    n = G.shape[0]
    mean_w = float(w.sum()) / n
    g_bar = sum(float(w[i]) * G[i] for i in range(n)) / float(w.sum())
    total = torch.zeros(G.shape[1], dtype=torch.float64)
    for i in range(n):
        total += (float(w[i]) / mean_w) ** 2 * (G[i] - g_bar) ** 2
    return total / ((n - 1) * batch_size), g_bar


def values(result, **kwargs):
    return {(e.quantity, e.settings["partition"]): e for e in result.estimates(**kwargs)}


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt"])
def test_per_example_noise_matches_brute_force(name):
    problem = build_example(name)
    x, y = pooled(problem)
    G = brute_force_gradients(problem, x, y)
    var, g_bar = brute_force_variance(G, token_weights(y), batch_size=8)
    assert torch.allclose(g_bar, problem.gradient(), rtol=0, atol=1e-12 * float(g_bar.abs().max()))
    partition = per_tensor(problem.layout)
    result = gradient_noise(problem, batch_size=8, partition=partition)
    assert result.gradient_mode == "vmap" and result.units == x.shape[0]
    assert torch.allclose(result.variance, var, rtol=1e-9, atol=1e-14 * float(var.max()))
    sigma = var.sqrt()
    est = values(result)
    d = problem.d
    assert est[("noise_l1", "singleton")].value == pytest.approx(float(sigma.sum()), rel=1e-9)
    assert est[("noise_l2_sqrtd", "one")].value == pytest.approx(
        math.sqrt(d) * float(sigma.norm()), rel=1e-9
    )
    block = sum(math.sqrt(s.numel) * float(sigma[s.slice].norm()) for s in problem.layout.slots)
    assert est[("noise_block", "tensor")].value == pytest.approx(block, rel=1e-9)
    assert est[("snr_l1", "singleton")].value == pytest.approx(
        float(g_bar.abs().sum() / sigma.sum()), rel=1e-9
    )
    assert est[("snr_l2", "one")].value == pytest.approx(
        float(g_bar.norm() / sigma.norm()), rel=1e-9
    )
    for e in est.values():
        assert e.settings["batch_size"] == 8 and e.bound == Bound.ESTIMATE
        assert 0 < e.stderr < e.value


def test_unequal_token_weights_match_the_weighted_brute_force():
    base = build_example("gpt")
    model = build_model("gpt")
    batches = []
    for i, b in enumerate(base.batches):
        targets = b.targets.clone()
        targets[0, : 3 + 4 * i] = -1  # unscored tokens: sequences now weigh differently
        batches.append((b.inputs, targets))
    problem = problem_from_module(model, lm_loss, batches, dtype="float64")
    x, y = pooled(problem)
    w = token_weights(y)
    assert len(set(w.tolist())) > 1
    G = brute_force_gradients(problem, x, y)
    var, g_bar = brute_force_variance(G, w, batch_size=3)
    assert torch.allclose(g_bar, problem.gradient(), rtol=0, atol=1e-12 * float(g_bar.abs().max()))
    result = gradient_noise(problem, batch_size=3, groups=0)
    assert torch.allclose(result.variance, var, rtol=1e-9, atol=1e-14 * float(var.max()))
    assert result.jackknife is None and result.estimates()[0].stderr is None


def test_minibatch_method_matches_brute_force_and_loop_mode():
    problem = build_example("mlp")
    x, y = pooled(problem)
    size, seed = 25, 4
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    model = copy.deepcopy(problem.model).double().eval()
    params = dict(model.named_parameters())
    grads = []
    for j in range(x.shape[0] // size):
        idx = order[j * size : (j + 1) * size]
        model.zero_grad()
        problem.loss_fn(model(x[idx]), y[idx]).backward()
        grads.append(torch.cat([params[s.name].grad.reshape(-1) for s in problem.layout.slots]))
    G = torch.stack(grads)
    expected = G.var(dim=0, unbiased=True) * size / 50  # restated at B = 50
    result = gradient_noise(
        problem, batch_size=50, method="minibatch", minibatch_size=size, generator=seed
    )
    assert result.units == x.shape[0] // size and result.minibatch_size == size
    assert torch.allclose(result.variance, expected, rtol=1e-8, atol=1e-14)
    looped = gradient_noise(problem, batch_size=8, gradient_mode="loop")
    vmapped = gradient_noise(problem, batch_size=8, gradient_mode="vmap")
    assert looped.gradient_mode == "loop"
    assert torch.allclose(looped.variance, vmapped.variance, rtol=1e-10)


def test_basis_rotates_per_example_gradients():
    problem = build_example("mlp")
    x, y = pooled(problem)
    basis = build_basis("hadamard", problem.layout, seed=1)
    G = basis.from_params(brute_force_gradients(problem, x, y))
    var, _ = brute_force_variance(G, token_weights(y), batch_size=1)
    result = gradient_noise(problem, batch_size=1, basis=basis, groups=0)
    assert torch.allclose(result.variance, var, rtol=1e-8, atol=1e-14 * float(var.max()))
    assert result.estimates()[0].settings["basis"] == basis.name


def test_batch_size_scaling_and_partition_invariances():
    problem = build_example("mlp")
    one = gradient_noise(problem, batch_size=1)
    four = gradient_noise(problem, batch_size=4)
    assert torch.allclose(one.variance / 4, four.variance, rtol=1e-12)
    restated = values(one.at_batch_size(4))
    for key, e in values(four).items():
        assert restated[key].value == pytest.approx(e.value, rel=1e-12)
        assert restated[key].stderr == pytest.approx(e.stderr, rel=1e-9)
    a, b = values(one), values(four)
    assert b[("noise_l1", "singleton")].value == pytest.approx(
        a[("noise_l1", "singleton")].value / 2, rel=1e-12
    )
    assert b[("snr_l2", "one")].value == pytest.approx(2 * a[("snr_l2", "one")].value, rel=1e-12)
    blocks = values(one, partitions=[singleton(problem.layout), one_block(problem.layout)])
    assert blocks[("noise_block", "singleton")].value == pytest.approx(
        a[("noise_l1", "singleton")].value, rel=1e-12
    )
    assert blocks[("noise_block", "one")].value == pytest.approx(
        a[("noise_l2_sqrtd", "one")].value, rel=1e-12
    )
    # ‖σ‖₁ ≤ √d‖σ‖₂ always (MATH.md §5)
    assert a[("noise_l1", "singleton")].value <= a[("noise_l2_sqrtd", "one")].value


class Linear(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w


def test_iid_minibatch_variance_is_per_example_variance_over_b():
    """The per-example estimator assumes Var[g_B] = Var[g_1]/B for iid minibatches; on iid data
    the direct minibatch estimate (M = 200 minibatches of B = 10) agrees within its sampling
    error (≈ √(2/199) ≈ 10% per coordinate variance, ~5% on σ, less on the sum)."""
    gen = torch.Generator().manual_seed(0)
    n, d = 2000, 6
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 2.0, d)
    y = x @ torch.ones(d, dtype=torch.float64) + torch.randn(n, generator=gen, dtype=torch.float64)
    problem = problem_from_module(Linear(d), nn.functional.mse_loss, (x, y), batch_size=500)
    per_example = values(gradient_noise(problem, batch_size=10))
    minibatch = values(gradient_noise(problem, batch_size=10, method="minibatch", generator=1))
    for key in [("noise_l1", "singleton"), ("noise_l2_sqrtd", "one")]:
        assert minibatch[key].value == pytest.approx(per_example[key].value, rel=0.1)


def test_user_errors():
    problem = build_example("mlp")
    with pytest.raises(SmoothprobeError):
        gradient_noise(problem, batch_size=0)
    with pytest.raises(SmoothprobeError):
        gradient_noise(problem, batch_size=4, method="bootstrap")
    with pytest.raises(DataError, match="at least 2 minibatches"):
        gradient_noise(problem, batch_size=200, method="minibatch")

    def coupled(out, y):  # couples the examples of a batch: not a mean of per-example losses
        return ((out - out.mean(0)) ** 2).mean() + nn.functional.mse_loss(out, y)

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=gen), torch.randn(20, generator=gen)
    model = Linear(3)
    with torch.no_grad():  # nonzero weights, so the coupling term has a gradient
        model.w.copy_(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    bad = problem_from_module(model, coupled, (x.double(), y.double()), batch_size=10)
    with pytest.raises(SmoothprobeError, match="not a weighted mean"):
        gradient_noise(bad, batch_size=2)


class Branching(nn.Module):
    """A linear model whose forward branches on the data (vmap cannot batch it)."""

    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, d, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w if bool(x.sum() > -1e30) else -(x @ self.w)


def test_models_vmap_cannot_handle_fall_back_to_the_loop_with_a_warning():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(30, generator=gen, dtype=torch.float64)
    problem = problem_from_module(Branching(4), nn.functional.mse_loss, (x, y), batch_size=12)
    with pytest.warns(RuntimeWarning, match="falling back"):
        result = gradient_noise(problem, batch_size=2)
    assert result.gradient_mode == "loop"
    G = brute_force_gradients(problem, x, y)
    expected = G.var(dim=0, unbiased=True) / 2
    assert torch.allclose(result.variance, expected, rtol=1e-10)
