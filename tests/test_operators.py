"""The HVP operator is exact: dense Hessian columns, finite differences, batching, weighting."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from smoothprobe.errors import NonDeterministicLossError
from smoothprobe.examples import build_example, exact_hessian
from smoothprobe.linear_operator import dense_matrix
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe.operators import HessianOperator
from smoothprobe.problem import problem_from_module

EXAMPLES = ["mlp", "cnn", "gpt"]


def fd_hvp(problem, v, *, eps):
    """Central finite difference of the gradient: (∇L(θ+εv) − ∇L(θ−εv)) / 2ε."""
    theta = problem.theta
    return (problem.gradient(theta + eps * v) - problem.gradient(theta - eps * v)) / (2 * eps)


@pytest.mark.parametrize("name", EXAMPLES)
def test_dense_hessian_is_symmetric_and_matches_columns(name):
    problem = build_example(name)
    H = exact_hessian(name)
    assert H.shape == (problem.d, problem.d)
    assert (H - H.T).abs().max() <= 1e-12 * H.abs().max()
    op = problem.hvp_operator()
    gen = torch.Generator().manual_seed(1)
    cols = torch.randint(problem.d, (5,), generator=gen)
    probes = torch.zeros(5, problem.d, dtype=torch.float64)
    probes[torch.arange(5), cols] = 1.0
    block = op.matvec(probes)  # k > 1
    assert torch.allclose(block, H[cols], rtol=0, atol=1e-12 * H.abs().max())
    single = op.matvec(probes[0])  # k = 1
    assert torch.allclose(single, H[cols[0]], rtol=0, atol=1e-12 * H.abs().max())


@pytest.mark.parametrize("name", EXAMPLES)
def test_hvp_matches_finite_differences(name):
    problem = build_example(name)
    op = problem.hvp_operator()
    gen = torch.Generator().manual_seed(2)
    V = torch.randn(3, problem.d, generator=gen, dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True)
    HV = op.matvec(V)
    for v, hv in zip(V, HV, strict=True):
        fd = fd_hvp(problem, v, eps=1e-4)
        # central differences: truncation O(ε²·‖∇³L‖) plus round-off O(u/ε); 1e-5 relative is ample
        assert (fd - hv).norm() <= 1e-5 * hv.norm(), name


def test_layernorm_without_bias_and_tied_embeddings():
    cfg = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, bias=False)
    torch.manual_seed(0)
    model = GPT(cfg)
    model.init_weights(torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(11, (6, 8), generator=gen)
    y = torch.randint(11, (6, 8), generator=gen)
    problem = problem_from_module(model, lm_loss, (x, y), batch_size=4, dtype="float64")
    slot = problem.layout.slot("transformer.wte.weight")
    assert "lm_head.weight" in slot.aliases  # tied weights counted once
    n_unique = sum(p.numel() for p in model.parameters())  # parameters() deduplicates
    assert problem.d == n_unique
    assert not any(name.endswith("ln_1.bias") for name in problem.layout.names)
    op = problem.hvp_operator()
    v = torch.randn(problem.d, generator=gen, dtype=torch.float64)
    v = v / v.norm()
    assert (fd_hvp(problem, v, eps=1e-4) - op.matvec(v)).norm() <= 1e-5 * op.matvec(v).norm()


def test_weighted_batches_equal_one_big_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(23, 4), torch.randint(3, (23,))
    ragged = problem_from_module(net, F.cross_entropy, (x, y), batch_size=5, dtype="float64")
    whole = problem_from_module(net, F.cross_entropy, (x, y), dtype="float64")
    assert [b.weight for b in ragged.batches] == [5, 5, 5, 5, 3]
    assert ragged.loss() == pytest.approx(whole.loss(), rel=1e-14)
    V = torch.randn(4, ragged.d, dtype=torch.float64)
    a = ragged.hvp_operator(retain_graphs=False).matvec(V)
    b = whole.hvp_operator(chunk_size=3).matvec(V)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_block_in_chunks_fills_one_result_without_concatenating(monkeypatch):
    """Probes of a block go through the graphs a chunk at a time into one (k, d) result: the
    block holds its probes, the result and one chunk's products (what memory_plan counts)."""
    problem = build_example("mlp")
    V = torch.randn(5, problem.d, dtype=torch.float64)
    expected = problem.hvp_operator(retain_graphs=True).matvec(V)

    def no_cat(*args, **kwargs):
        raise AssertionError("a block's products were concatenated")

    monkeypatch.setattr(torch, "cat", no_cat)
    for retain in (True, False):
        op = problem.hvp_operator(retain_graphs=retain, chunk_size=2)
        assert torch.allclose(op.matvec(V), expected, rtol=1e-13, atol=1e-15)


def test_retained_and_rebuilt_graphs_agree_and_costs_are_counted():
    problem = build_example("mlp")
    V = torch.randn(6, problem.d, dtype=torch.float64)
    kept = problem.hvp_operator(retain_graphs=True)
    rebuilt = problem.hvp_operator(retain_graphs=False, chunk_size=4)
    assert torch.allclose(kept.matvec(V), rebuilt.matvec(V), rtol=1e-13, atol=1e-15)
    assert kept.cost.hvps == rebuilt.cost.hvps == 6
    nb = len(problem.batches)
    assert kept.cost.gradients == nb  # graphs built once
    rebuilt.matvec(V)
    assert rebuilt.cost.gradients == 1 + 2 * nb  # first batch at construction, then per call


def test_batchnorm_uses_running_statistics_and_nothing_is_mutated():
    model = build_example("cnn").model
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    problem = problem_from_module(
        model, F.cross_entropy, (torch.rand(10, 1, 8, 8), torch.randint(10, (10,))), dtype="float64"
    )
    problem.hvp_operator().matvec(torch.randn(2, problem.d, dtype=torch.float64))
    problem.loss()
    assert model.training  # flag restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running stats untouched, dtype untouched
    # eval semantics: the loss does not depend on how the sample is batched
    x, y = torch.rand(12, 1, 8, 8), torch.randint(10, (12,))
    a = problem_from_module(model, F.cross_entropy, (x, y), batch_size=4, dtype="float64").loss()
    b = problem_from_module(model, F.cross_entropy, (x, y), dtype="float64").loss()
    assert a == pytest.approx(b, rel=1e-13)


class _Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return F.dropout(self.lin(x), p=0.5, training=True)  # ignores eval mode


def test_nondeterministic_loss_is_detected():
    problem = problem_from_module(_Noisy(), F.mse_loss, (torch.randn(64, 3), torch.randn(64, 1)))
    with pytest.raises(NonDeterministicLossError, match="dropout"):
        problem.check_determinism()


def test_frozen_parameters_are_excluded_unless_requested():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net[0].weight.requires_grad_(False)
    data = (torch.randn(5, 3), torch.randn(5, 2))
    assert problem_from_module(net, F.mse_loss, data).d == 4 + 8 + 2
    assert problem_from_module(net, F.mse_loss, data, include_frozen=True).d == 12 + 4 + 8 + 2


@pytest.mark.parametrize("dtype", ["float32", "float64", "checkpoint"])
def test_dtype_control(dtype):
    net = nn.Linear(3, 2)
    data = (torch.randn(5, 3), torch.randn(5, 2))
    problem = problem_from_module(net, F.mse_loss, data, dtype=dtype)
    expected = torch.float64 if dtype == "float64" else torch.float32
    assert problem.theta.dtype == expected
    assert problem.hvp_operator().matvec(torch.ones(problem.d)).dtype == torch.float32
    assert net.weight.dtype == torch.float32  # the module is never cast


def test_gradient_from_operator_equals_problem_gradient():
    problem = build_example("gpt")
    op = problem.hvp_operator()
    assert torch.allclose(op.gradient(), problem.gradient(), rtol=1e-12, atol=1e-15)


class BrokenBatching(HessianOperator):
    """Batched products deliberately wrong (as a bad batching rule would make them)."""

    def __init__(self, *args, break_with: str, **kwargs):
        self.break_with = break_with
        super().__init__(*args, **kwargs)

    def _batched_products(self, graph, block):
        out = super()._batched_products(graph, block)
        if self.break_with == "scale":  # wrong but still symmetric
            return out * (1 + 1e-3)
        if self.break_with == "raise":
            raise RuntimeError("no batching rule for this op")
        return out.roll(1, dims=0)  # products assigned to the wrong probes


def loaded_from(problem):
    """A LoadedCheckpoint-shaped wrapper of an in-memory Problem (what run_measurement reads)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        problem=problem,
        path="in-memory",
        sha256="0" * 64,
        step=0,
        kind="module",
        data_path=None,
        n_head=None,
    )


def _small_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 1, generator=gen, dtype=torch.float64)
    return problem_from_module(model, F.mse_loss, (x, y), batch_size=8)


def test_batched_path_passes_its_check_when_it_is_right():
    op = _small_problem().hvp_operator()
    assert op.check_batched(seed=1)
    assert op.cost.hvps == 6


@pytest.mark.parametrize(
    ("broken", "why"),
    [("scale", "differs from single-probe"), ("roll", "differs"), ("raise", "failed")],
)
def test_a_broken_batched_path_falls_back_loudly_to_single_probes(broken, why):
    problem = _small_problem()
    op = BrokenBatching(problem, break_with=broken)
    with pytest.warns(RuntimeWarning, match=why):
        assert not op.check_batched(seed=1)
    h = dense_matrix(problem.hvp_operator())
    block = torch.eye(problem.d, dtype=torch.float64)[:4]
    torch.testing.assert_close(op.matvec(block), h[:4], rtol=1e-12, atol=1e-12)


def test_asymmetric_batched_products_are_refused():
    class Asymmetric(BrokenBatching):
        def _single_products(self, graph, block):  # both paths agree, but H is not symmetric
            return self._skewed(super()._single_products(graph, block), block)

        def _batched_products(self, graph, block):
            return self._skewed(HessianOperator._batched_products(self, graph, block), block)

        @staticmethod
        def _skewed(out, block):
            skew = torch.zeros(block.shape[1], block.shape[1], dtype=block.dtype)
            skew[0, 1], skew[1, 0] = 1.0, -1.0
            return out + block @ skew.T

    op = Asymmetric(_small_problem(), break_with="none")
    with pytest.warns(RuntimeWarning, match="not symmetric"):
        assert not op.check_batched(seed=1)


def test_measurement_checks_the_batched_path_first(monkeypatch):
    from smoothprobe.measure import MeasureSettings, run_measurement

    calls = []
    monkeypatch.setattr(
        HessianOperator, "check_batched", lambda self, **kw: calls.append(kw) or True
    )
    loaded = loaded_from(_small_problem())
    run_measurement(loaded, MeasureSettings(norm="none", seed=3), progress=False)
    assert calls == [{"seed": 3}]
