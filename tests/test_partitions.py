"""Partitions Φ: builders on real layouts (nanoGPT, MLP), refinement order, CLI specs, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothprobe.errors import SmoothprobeError
from smoothprobe.layout import ParameterLayout
from smoothprobe.models.gpt import GPT, GPTConfig
from smoothprobe.partitions import (
    Partition,
    build_partition,
    by_regex,
    from_function,
    layer_of,
    one_block,
    per_head,
    per_layer,
    per_row,
    per_tensor,
    singleton,
)
from smoothprobe.problem import layout_of_module

C, N_HEAD = 8, 2


@pytest.fixture(scope="module")
def gpt_layout() -> ParameterLayout:
    cfg = GPTConfig(block_size=4, vocab_size=10, n_layer=2, n_head=N_HEAD, n_embd=C, bias=True)
    return layout_of_module(GPT(cfg))


@pytest.fixture(scope="module")
def mlp_layout() -> ParameterLayout:
    return ParameterLayout.from_shapes(
        [
            ("net.0.weight", (5, 3)),
            ("net.0.bias", (5,)),
            ("net.2.weight", (2, 5)),
            ("net.2.bias", (2,)),
        ]
    )


def name_of(p: Partition, layout: ParameterLayout, tensor: str, index: tuple) -> str:
    """Block name of one element of a tensor."""
    slot = layout.slot(tensor)
    flat = slot.start + int(torch.arange(slot.numel).view(slot.shape)[index])
    return p.block_names[int(p.labels[flat])]


def blocks_by_name(p: Partition) -> dict[str, int]:
    return {n: int(s) for n, s in zip(p.block_names, p.sizes, strict=True)}


def test_singleton_one_tensor(gpt_layout):
    d = gpt_layout.d
    s = singleton(gpt_layout)
    assert s.num_blocks == d and bool((s.sizes == 1).all())
    assert s.block_names[0] == "transformer.wte.weight[0]"
    last = gpt_layout.slots[-1]
    assert s.block_names[d - 1] == f"{last.name}[{last.numel - 1}]"
    assert s.block_names[-1] == s.block_names[d - 1]
    o = one_block(gpt_layout)
    assert o.num_blocks == 1 and int(o.sizes[0]) == d
    t = per_tensor(gpt_layout)
    assert list(t.block_names) == gpt_layout.names
    assert t.sizes.tolist() == [s.numel for s in gpt_layout.slots]


@pytest.mark.parametrize(
    "name, layer",
    [
        ("transformer.h.3.attn.c_attn.weight", "transformer.h.3"),
        ("transformer.h.10.ln_1.bias", "transformer.h.10"),
        ("transformer.wte.weight", "transformer.wte"),
        ("transformer.ln_f.weight", "transformer.ln_f"),
        ("net.0.weight", "net.0"),
        ("0.weight", "0"),
        ("layer1.0.conv1.weight", "layer1.0"),
        ("fc.weight", "fc"),
        ("scale", "scale"),
    ],
)
def test_layer_rule(name, layer):
    assert layer_of(name) == layer


def test_per_layer_gpt(gpt_layout):
    p = per_layer(gpt_layout)
    sizes = blocks_by_name(p)
    assert list(sizes) == [
        "transformer.wte",
        "transformer.wpe",
        "transformer.h.0",
        "transformer.h.1",
        "transformer.ln_f",
    ]
    h0 = sum(s.numel for s in gpt_layout.slots if s.name.startswith("transformer.h.0."))
    assert sizes["transformer.h.0"] == h0
    assert sum(sizes.values()) == gpt_layout.d


def test_per_row_and_unit(mlp_layout):
    p = per_row(mlp_layout)
    sizes = blocks_by_name(p)
    assert sizes["net.0.weight[4]"] == 3 and sizes["net.2.weight[1]"] == 5
    assert sizes["net.0.bias"] == 5 and p.num_blocks == 5 + 1 + 2 + 1
    assert name_of(p, mlp_layout, "net.0.weight", (2, 1)) == "net.0.weight[2]"
    u = per_row(mlp_layout, vectors="unit")
    assert u.num_blocks == 7 and bool((u.sizes[:5] == 4).all())
    assert name_of(u, mlp_layout, "net.0.bias", (3,)) == "net.0.weight[3]"
    with pytest.raises(SmoothprobeError, match="vectors"):
        per_row(mlp_layout, vectors="rows")


def test_per_head_gpt(gpt_layout):
    hs = C // N_HEAD
    p = per_head(gpt_layout, n_head=N_HEAD)
    w = "transformer.h.1.attn.c_attn.weight"
    sizes = blocks_by_name(p)
    for h in range(N_HEAD):
        assert sizes[f"{w}:q.head{h}"] == hs * C and sizes[f"{w}:k.head{h}"] == hs * C
    assert all(sizes[f"{w}:v[{j}]"] == C for j in range(C))
    # element (row, col): query rows 0..C-1, key rows C..2C-1 by head; value rows alone
    assert name_of(p, gpt_layout, w, (hs + 1, 0)) == f"{w}:q.head1"
    assert name_of(p, gpt_layout, w, (C + 0, 5)) == f"{w}:k.head0"
    assert name_of(p, gpt_layout, w, (2 * C + 3, 7)) == f"{w}:v[3]"
    b = "transformer.h.1.attn.c_attn.bias"
    assert sizes[f"{b}:q.head0"] == hs and sizes[f"{b}:v"] == C
    assert sizes["transformer.h.1.attn.c_proj.weight[0]"] == C  # by output neuron
    assert sizes["transformer.h.0.mlp.c_fc.weight[31]"] == C
    assert sizes["transformer.wte.weight[9]"] == C  # by token
    assert sizes["transformer.ln_f.weight"] == C
    # per layer: 7 vectors whole, c_attn.weight 2H + C, c_attn.bias 2H + 1, rows of c_proj (C),
    # c_fc (4C), mlp.c_proj (C); plus wte (10 tokens), wpe (4 positions), ln_f (2 vectors)
    per_layer_blocks = 7 + (2 * N_HEAD + C) + (2 * N_HEAD + 1) + C + 4 * C + C
    assert p.num_blocks == 10 + 4 + 2 * per_layer_blocks + 2
    u = per_head(gpt_layout, n_head=N_HEAD, vectors="unit")
    assert name_of(u, gpt_layout, b, (1,)) == f"{w}:q.head0"
    assert name_of(u, gpt_layout, b, (2 * C + 2,)) == f"{w}:v[2]"
    assert blocks_by_name(u)[f"{w}:q.head0"] == hs * C + hs


def test_per_head_hf_conv1d_orientation():
    layout = ParameterLayout.from_shapes(
        [("h.0.attn.c_attn.weight", (C, 3 * C)), ("h.0.attn.c_proj.weight", (C, C))]
    )
    p = per_head(layout, n_head=N_HEAD)
    w = "h.0.attn.c_attn.weight"
    assert name_of(p, layout, w, (5, 1)) == f"{w}:q.head0"  # column 1: query, head 0
    assert name_of(p, layout, w, (0, C + C // 2)) == f"{w}:k.head1"
    assert name_of(p, layout, w, (7, 2 * C + 4)) == f"{w}:v[4]"


def test_per_head_separate_projections_and_user_rule():
    layout = ParameterLayout.from_shapes(
        [
            ("attn.q_proj.weight", (8, 4)),
            ("attn.k_proj.weight", (8, 4)),
            ("attn.v_proj.weight", (8, 4)),
            ("fc.weight", (6, 4)),
        ]
    )
    p = per_head(layout, n_head=4)
    sizes = blocks_by_name(p)
    assert sizes["attn.q_proj.weight:head3"] == 8 and sizes["attn.v_proj.weight[7]"] == 4

    def rule(slot, n_head):
        if slot.name != "fc.weight":
            return None
        return torch.arange(slot.numel) // (slot.numel // n_head), [
            f"fc:g{i}" for i in range(n_head)
        ]

    q = per_head(layout, n_head=2, rule=rule)
    assert blocks_by_name(q)["fc:g1"] == 12 and "attn.q_proj.weight[0]" in blocks_by_name(q)


def test_per_head_errors(gpt_layout, mlp_layout):
    with pytest.raises(SmoothprobeError, match="not divisible"):
        per_head(gpt_layout, n_head=3)
    with pytest.raises(SmoothprobeError, match="no attention tensor"):
        per_head(mlp_layout, n_head=2)
    with pytest.raises(SmoothprobeError, match="n_head"):
        per_head(gpt_layout, n_head=0)


def test_by_regex(gpt_layout):
    p = by_regex(gpt_layout, [r"\.attn\.", r"mlp", r"lm_head"])
    sizes = blocks_by_name(p)
    attn = sum(s.numel for s in gpt_layout.slots if ".attn." in s.name)
    assert sizes[r"re:\.attn\."] == attn
    assert sizes["re:lm_head"] == gpt_layout.slot("lm_head.weight").numel  # matched by alias
    assert sizes["transformer.wpe.weight"] == gpt_layout.slot("transformer.wpe.weight").numel
    assert p.name == r"regex:\.attn\.;mlp;lm_head"
    with pytest.raises(SmoothprobeError, match="invalid regex"):
        by_regex(gpt_layout, ["attn("])
    with pytest.raises(SmoothprobeError, match="matches no parameter"):
        by_regex(gpt_layout, ["decoder"])


def test_from_function(mlp_layout):
    p = from_function(mlp_layout, lambda s: "weights" if s.name.endswith("weight") else "biases")
    assert blocks_by_name(p) == {"weights": 25, "biases": 7}

    def halves(slot):
        if len(slot.shape) == 2:
            return torch.arange(slot.numel) % 2, ["even", "odd"]
        return slot.name

    q = from_function(mlp_layout, halves, name="halves")
    assert q.name == "halves" and blocks_by_name(q)["even"] == 8 + 5
    with pytest.raises(SmoothprobeError, match="one label per element"):
        from_function(mlp_layout, lambda s: (torch.zeros(2, dtype=torch.int64), ["x"]))
    with pytest.raises(SmoothprobeError, match="must lie in"):
        from_function(mlp_layout, lambda s: (torch.full((s.numel,), 3), ["x"]))


def test_build_partition_specs(gpt_layout):
    for spec, expected in [
        ("singleton", gpt_layout.d),
        ("one", 1),
        ("tensor", len(gpt_layout.slots)),
        ("layer", 5),
    ]:
        assert build_partition(spec, gpt_layout).num_blocks == expected
    assert build_partition("row", gpt_layout).name == "row"
    assert build_partition("head", gpt_layout, n_head=N_HEAD).name == "head"
    assert build_partition(" attn;mlp ", gpt_layout).name == "regex:attn;mlp"
    assert build_partition("regex:ln_f", gpt_layout).name == "regex:ln_f"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty partition"),
        ("head", "n_head"),
        ("rows", "tensor|layer|row|head"),
        ("attn[", "invalid regex"),
    ],
)
def test_build_partition_errors(gpt_layout, spec, message):
    with pytest.raises(SmoothprobeError, match=message) as err:
        build_partition(spec, gpt_layout)
    assert "\n" not in str(err.value)


def test_partition_validation_and_helpers(mlp_layout):
    with pytest.raises(SmoothprobeError, match="sizes do not match"):
        Partition("bad", torch.tensor([0, 0, 1]), ("a", "b"), torch.tensor([1, 2]))
    with pytest.raises(SmoothprobeError, match="one name per block"):
        Partition("bad", torch.tensor([0, 1]), ("a",), torch.tensor([1, 1]))
    with pytest.raises(SmoothprobeError, match="int64"):
        Partition("bad", torch.tensor([0.0, 1.0]), ("a", "b"), torch.tensor([1, 1]))
    p = per_row(mlp_layout)
    text = p.summary()
    assert "9 blocks" in text and f"d = {mlp_layout.d}" in text and "max 5" in text
    v = torch.randn(3, mlp_layout.d, dtype=torch.float64)
    norms = p.block_norms(v)
    for b in range(p.num_blocks):
        idx = p.block_indices(b)
        assert bool((p.labels[idx] == b).all())
        torch.testing.assert_close(norms[:, b], v[:, idx].norm(dim=1))
    torch.testing.assert_close(p.block_norms(v, entries=7), norms)  # coordinate chunks of 2
    for s, ids, coords in p.size_groups:
        assert bool((p.sizes[ids] == s).all()) and coords.shape == (ids.numel(), s)


shapes = st.lists(
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=6
)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_partitions_refine_each_other(shape_list):
    names = [f"m.{i // 2}.p{i}" for i in range(len(shape_list))]
    layout = ParameterLayout.from_shapes(list(zip(names, shape_list, strict=True)))
    chain = [
        singleton(layout),
        per_row(layout),
        per_tensor(layout),
        per_layer(layout),
        one_block(layout),
    ]
    for p in chain:
        assert int(p.sizes.sum()) == layout.d and p.labels.numel() == layout.d
        assert torch.equal(torch.bincount(p.labels, minlength=p.num_blocks), p.sizes)
    for fine, coarse in zip(chain, chain[1:], strict=False):
        # every fine block lies inside exactly one coarse block
        pairs = torch.unique(torch.stack([fine.labels, coarse.labels]), dim=1)
        assert pairs.shape[1] == fine.num_blocks, (fine.name, coarse.name)
