"""Adam's preconditioned sharpness λ(P⁻¹H) from real optimizer state (MATH.md §9)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothprobe.estimate import Bound
from smoothprobe.estimators.preconditioned import preconditioned_sharpness
from smoothprobe.linear_operator import DenseOperator
from smoothprobe.optimizer_state import OptimizerStateError, adam_preconditioner
from smoothprobe.problem import layout_of_module


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 2)).double()


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 3, generator=g, dtype=torch.float64)
        loss = model(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def expected_diagonal(model, optimizer) -> torch.Tensor:
    parts = []
    for _, p in model.named_parameters():
        st, group = (
            optimizer.state[p],
            next(g for g in optimizer.param_groups if any(p is q for q in g["params"])),
        )
        v_hat = st["exp_avg_sq"] / (1 - group["betas"][1] ** int(st["step"]))
        parts.append((v_hat.sqrt() + group["eps"]).reshape(-1))
    return torch.cat(parts)


def nanogpt_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """nanoGPT's configure_optimizers: ≥2-D tensors decayed, the rest not, AdamW."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    decay = [p for p in params.values() if p.dim() >= 2]
    nodecay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def test_single_group_adam_maps_in_named_order():
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    train(model, opt)
    pre = adam_preconditioner(opt.state_dict(), layout_of_module(model))
    assert pre.order == "named_parameters" and pre.step == 5
    assert torch.allclose(pre.diagonal, expected_diagonal(model, opt).detach(), rtol=1e-12)
    assert pre.aeos_threshold == pytest.approx((2 + 2 * 0.9) / (0.1 * 3e-3))


def test_nanogpt_groups_map_matrices_first():
    model = tiny_model()
    opt = nanogpt_optimizer(model)
    train(model, opt)
    pre = adam_preconditioner(opt.state_dict(), layout_of_module(model))
    assert pre.order == "nanogpt"
    assert torch.allclose(pre.diagonal, expected_diagonal(model, opt).detach(), rtol=1e-12)
    assert pre.beta1 == 0.9 and pre.beta2 == 0.95 and pre.weight_decay == (0.1, 0.0)


def test_bad_state_is_a_one_line_error():
    model = tiny_model()
    layout = layout_of_module(model)
    with pytest.raises(OptimizerStateError, match="no optimizer state"):
        adam_preconditioner(None, layout)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, sgd)
    with pytest.raises(OptimizerStateError, match="not Adam/AdamW"):
        adam_preconditioner(sgd.state_dict(), layout)
    other = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.LayerNorm(5), nn.Linear(5, 2)).double()
    opt = torch.optim.Adam(other.parameters())
    train(other, opt)
    with pytest.raises(OptimizerStateError, match="different model"):
        adam_preconditioner(opt.state_dict(), layout)
    for err in (OptimizerStateError,):
        try:
            adam_preconditioner(opt.state_dict(), layout)
        except err as exc:
            assert "\n" not in str(exc)


def test_ambiguous_groups_need_an_explicit_order():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2)).double()
    first, second = model[0].weight, model[1].weight
    opt = torch.optim.Adam([{"params": [second]}, {"params": [first, model[1].bias], "lr": 2e-3}])
    train_x = torch.randn(4, 2, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        model(train_x).square().sum().backward()
        opt.step()
    layout = layout_of_module(model)
    with pytest.raises(OptimizerStateError, match="more than one order"):
        adam_preconditioner(opt.state_dict(), layout)
    pre = adam_preconditioner(opt.state_dict(), layout, order=["1.weight", "0.weight", "1.bias"])
    assert pre.order == "user" and pre.lr == 2e-3
    want = expected_diagonal(model, opt).detach()
    want[4:8] *= 2.0  # 1.weight's group ran at half the largest rate: P folded by η/η_i
    assert torch.allclose(pre.diagonal, want, rtol=1e-12)


def test_lambda_of_p_inverse_h_against_dense_float64():
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, steps=7)
    layout = layout_of_module(model)
    pre = adam_preconditioner(opt.state_dict(), layout)
    g = torch.Generator().manual_seed(4)
    a = torch.randn(layout.d, layout.d, generator=g, dtype=torch.float64)
    h = (a + a.T) / 2
    dense = torch.diag(pre.diagonal.rsqrt()) @ h @ torch.diag(pre.diagonal.rsqrt())
    truth = torch.linalg.eigvalsh(dense)
    # the same spectrum as the non-symmetric P⁻¹H
    nonsym = torch.linalg.eigvals(torch.diag(1 / pre.diagonal) @ h).real.sort().values
    assert torch.allclose(truth, nonsym, rtol=1e-8, atol=1e-8 * float(truth.abs().max()))
    result = preconditioned_sharpness(
        DenseOperator(h, layout=layout), pre, tol=1e-10, max_hvps=layout.d, top_k=2
    )
    est = {e.quantity: e for e in result.estimates()}
    top = est["precond_lambda_max"]
    assert top.value == pytest.approx(float(truth[-1]), rel=1e-8)
    assert top.bound is Bound.LOWER and top.geometry == "preconditioned"
    assert top.extra["top_values"][1] == pytest.approx(float(truth[-2]), rel=1e-6)
    assert est["precond_lambda_min"].value == pytest.approx(float(truth[0]), rel=1e-8)
    assert est["aeos_threshold"].value == pytest.approx(38 / 1e-2)
    assert est["gd_threshold"].value == pytest.approx(2 / 1e-2)
    assert top.extra["ratio_to_threshold"] == pytest.approx(top.value / (38 / 1e-2))
    upper = est["precond_lambda_max_upper"]
    assert upper.bound is Bound.PROB_UPPER and upper.failure_prob == 1e-3
    assert upper.value >= float(truth[-1]) * (1 - 1e-12)
    # a bounded basis restarts: same λ, and the upper end from the first basis-full
    small = preconditioned_sharpness(
        DenseOperator(h, layout=layout), pre, tol=1e-10, max_hvps=layout.d, max_basis=8,
        basis_dtype=torch.float32,
    )  # fmt: skip
    assert small.spectrum.restarts > 0 and small.spectrum.basis_bytes == 8 * layout.d * 4
    est = {e.quantity: e for e in small.estimates()}
    assert est["precond_lambda_max"].value == pytest.approx(float(truth[-1]), rel=1e-6)
    upper = est["precond_lambda_max_upper"]
    assert upper.value == small.spectrum.prob_bounds.lambda_max_upper >= float(truth[-1])


def test_tridiagonal_rebuilt_from_ritz_pairs_gives_the_same_kw_bound():
    from smoothprobe.estimators.krylov_bound import lanczos_upper_bounds
    from smoothprobe.estimators.lanczos import lanczos
    from smoothprobe.estimators.ritz_bounds import ritz_upper_bounds, tridiagonal_from_ritz

    g = torch.Generator().manual_seed(2)
    a = torch.randn(200, 200, generator=g, dtype=torch.float64)
    h = (a + a.T) / 2
    r = lanczos(DenseOperator(h), max_hvps=25, tol=1e-14, keep_basis=True, generator=3)
    alpha, beta, beta_last = tridiagonal_from_ritz(r.ritz_values, r.ritz_residuals)
    tri_alpha = r.krylov.projection.diagonal().tolist()  # no restart: T is tridiagonal
    tri_beta = r.krylov.projection.diagonal(1).tolist()
    assert alpha == pytest.approx(tri_alpha, rel=1e-8, abs=1e-8)
    assert beta == pytest.approx(tri_beta, rel=1e-8, abs=1e-8)
    assert beta_last == pytest.approx(float(r.krylov.residual.norm()), rel=1e-10)
    want = lanczos_upper_bounds(tri_alpha, tri_beta, beta_last, d=200, failure_prob=1e-3)
    got = ritz_upper_bounds(r.ritz_values, r.ritz_residuals, d=200, failure_prob=1e-3)
    assert got.lambda_max_upper == pytest.approx(want.lambda_max_upper, rel=1e-8)
    assert got.norm_upper == pytest.approx(want.norm_upper, rel=1e-8)
    truth = torch.linalg.eigvalsh(h)
    assert got.lambda_max_upper >= float(truth[-1])


SPEC = """
import torch
from torch import nn

def smoothprobe_spec(*, data_path, batch_size, num_batches, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(12, 2, generator=g), torch.randint(2, (12,), generator=g)
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2))
    return {"model": model, "loss_fn": nn.functional.cross_entropy, "data": (x, y),
            "optimizer_order": ORDER}
"""


@pytest.mark.parametrize("order", [None, ["1.weight", "0.weight", "1.bias"]])
def test_plain_checkpoint_with_spec_supplied_order(tmp_path, order):
    """{"model", "optimizer"} saved by plain PyTorch; the ambiguous order comes from the spec."""
    from smoothprobe.checkpoints import DataOptions, load_checkpoint

    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2))
    opt = torch.optim.Adam(
        [{"params": [model[1].weight]}, {"params": [model[0].weight, model[1].bias]}]
    )
    x = torch.randn(4, 2)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "c.pt")
    (tmp_path / "spec.py").write_text(SPEC.replace("ORDER", repr(order)))
    loaded = load_checkpoint(
        tmp_path / "c.pt", spec=str(tmp_path / "spec.py"), data=DataOptions(batch_size=6)
    )
    assert loaded.optimizer_state is not None
    if order is None:
        with pytest.raises(OptimizerStateError, match="more than one order"):
            adam_preconditioner(loaded.optimizer_state, loaded.problem.layout)
    else:
        pre = adam_preconditioner(
            loaded.optimizer_state, loaded.problem.layout, order=loaded.optimizer_order
        )
        assert pre.order == "user"
        want = expected_diagonal(model, opt).detach()
        assert torch.allclose(pre.diagonal, want.to(torch.float64), rtol=1e-6)
