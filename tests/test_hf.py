"""Hugging Face model directories as checkpoints: exact HVPs, loss convention, tied weights, CLI.

Every model is built here from a tiny config and saved locally; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from smoothprobe.batches import default_weight
from smoothprobe.checkpoints import DataOptions, load_checkpoint
from smoothprobe.data import sample_sequences, write_token_file
from smoothprobe.errors import CheckpointError, DataError, SmoothprobeError
from smoothprobe.hf import CausalLMForward, Float64Mode, causal_lm_loss
from smoothprobe.linear_operator import dense_matrix
from smoothprobe.partitions import build_partition
from smoothprobe.problem import problem_from_module
from smoothprobe_cli.main import cli

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: loading uses local_files_only

needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers not installed (pip install 'smoothprobe[hf]')",
)

VOCAB = 30
CHARS = "abcdefghijklmnopqrstuvwxyz .,"  # 29 characters + [UNK] = VOCAB tokens
COMMON = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, initializer_range=0.3)


def _gpt2(*, tie: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=4, n_positions=8, tie_word_embeddings=tie, **COMMON
    )  # dropout 0.1 everywhere (the default): must be off in eval
    return GPT2LMHeadModel(config)


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=4,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8,
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
        **COMMON,
    )
    return LlamaForCausalLM(config)


BUILDERS = {"gpt2": _gpt2, "gpt2-untied": lambda: _gpt2(tie=False), "llama": _llama}


def save_model(directory, arch: str, *, seed: int = 0):
    """Builds a tiny randomly initialized model (seeded, global RNG restored) and saves it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BUILDERS[arch]()
        with torch.no_grad():  # non-trivial norm weights, so their curvature is exercised
            for name, p in model.named_parameters():
                if "norm" in name or ".ln_" in name:
                    p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def save_tokenizer(directory):
    """A character-level tokenizer with VOCAB ids, saved beside the model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(CHARS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(directory)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """{arch: model directory} plus "bin" (token ids < VOCAB) and "txt" (plain text) data."""
    root = tmp_path_factory.mktemp("hf")
    out = {arch: save_model(root / arch, arch) for arch in BUILDERS}
    rng = np.random.default_rng(0)
    write_token_file(root / "val.bin", rng.integers(0, VOCAB, 400))
    (root / "val.txt").write_text("the quick brown fox, jumps over the lazy dog. " * 20)
    out["bin"], out["txt"] = root / "val.bin", root / "val.txt"
    return out


def load(path, data, *, dtype="float64", **options):
    options = {"batch_size": 2, "num_batches": 2, **options}
    return load_checkpoint(path, data=DataOptions(path=str(data), **options), dtype=dtype)


def fd_hvp(problem, v, *, eps):
    theta = problem.theta
    return (problem.gradient(theta + eps * v) - problem.gradient(theta - eps * v)) / (2 * eps)


@needs_transformers
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_hvp_matches_finite_differences_in_float64(hf_dirs, arch):
    loaded = load(hf_dirs[arch], hf_dirs["bin"])
    problem = loaded.problem
    assert loaded.kind == "hf" and problem.dtype == torch.float64
    op = problem.hvp_operator()
    gen = torch.Generator().manual_seed(3)
    V = torch.randn(3, problem.d, generator=gen, dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True)
    HV = op.matvec(V)  # k > 1
    assert torch.allclose(op.matvec(V[0]), HV[0], rtol=0, atol=1e-13 * HV[0].norm())  # k = 1
    for v, hv in zip(V, HV, strict=True):
        fd = fd_hvp(problem, v, eps=1e-4)
        assert (fd - hv).norm() <= 1e-5 * hv.norm(), arch


@needs_transformers
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_dense_hessian_is_symmetric_to_float64_precision(hf_dirs, arch):
    problem = load(hf_dirs[arch], hf_dirs["bin"], batch_size=2, num_batches=1).problem
    assert problem.d < 600
    H = dense_matrix(problem.hvp_operator())
    assert H.abs().max() > 0
    # float32 anywhere in the forward (e.g. LLaMA's RMSNorm upcast) shows up here as ~1e-7
    assert (H - H.T).abs().max() <= 1e-12 * H.abs().max(), arch


def test_float64_mode_redirects_float32_requests():
    x = torch.ones(3, dtype=torch.float64)
    with Float64Mode():
        outs = [
            x.float(),
            x.to(torch.float32),
            x.to(dtype=torch.float32),
            torch.softmax(x, 0, dtype=torch.float32),
            torch.arange(3).float(),
            torch.zeros(2, dtype=torch.float32),
        ]
        assert torch.arange(3).dtype == torch.int64 and x.half().dtype == torch.float16
    assert all(o.dtype == torch.float64 for o in outs)
    assert x.float().dtype == torch.float32  # outside the mode nothing changes


@needs_transformers
def test_loss_and_weights_match_transformers_own_loss(hf_dirs):
    """Targets are shifted inputs (Hugging Face shifts labels itself); -100 and -1 are skipped,
    and unequal batches weighted by scored tokens give the loss over all scored tokens."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        hf_dirs["gpt2"], local_files_only=True, attn_implementation="eager"
    )
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(VOCAB, (3, 8), generator=gen)
    x, y = seq[:, :-1], seq[:, 1:].clone()
    y[0, :4], y[1, 2] = -100, -1
    labels = seq.clone()
    labels[:, 1:][y < 0] = -100
    with torch.no_grad():
        theirs = float(model(input_ids=seq, labels=labels).loss)
        ours = float(causal_lm_loss(model(input_ids=x).logits, y))
    assert ours == pytest.approx(theirs, rel=1e-6)
    problem = problem_from_module(
        model,
        causal_lm_loss,
        [(x[:1], y[:1]), (x[1:], y[1:])],
        forward=CausalLMForward(dtype=torch.float32),
    )
    assert [b.weight for b in problem.batches] == [3.0, 13.0] == [default_weight(y[:1]), 13.0]
    assert problem.loss() == pytest.approx(theirs, rel=1e-6)


@needs_transformers
def test_tied_embeddings_counted_once(hf_dirs):
    tied = load(hf_dirs["gpt2"], hf_dirs["bin"]).problem
    untied = load(hf_dirs["gpt2-untied"], hf_dirs["bin"]).problem
    wte = tied.layout.slots[0]
    assert (wte.name, tuple(wte.aliases)) == ("transformer.wte.weight", ("lm_head.weight",))
    assert sum(s.numel for s in tied.layout.slots) == tied.d
    assert sum(p.numel() for p in tied.model.parameters()) == tied.d  # unique tensors only
    assert untied.d == tied.d + VOCAB * 4
    assert all(not s.aliases for s in untied.layout.slots)
    # the shared slot's gradient is the sum over both uses, as autograd gives the module
    model = tied.model
    batch = tied.batches[0]
    loss = causal_lm_loss(model.double()(input_ids=batch.inputs).logits, batch.targets)
    (grad,) = torch.autograd.grad(loss, model.transformer.wte.weight)
    single = problem_from_module(
        model,
        causal_lm_loss,
        [(batch.inputs, batch.targets)],
        forward=CausalLMForward(dtype=torch.float64),
    )
    assert torch.allclose(
        single.gradient()[wte.slice].view(wte.shape), grad, rtol=1e-12, atol=1e-15
    )


@needs_transformers
def test_dtype_follows_the_checkpoint_unless_asked(hf_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dirs["gpt2"], local_files_only=True)
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert load(tmp_path / "bf16", hf_dirs["bin"], dtype="checkpoint").problem.dtype == (
        torch.bfloat16
    )
    assert load(tmp_path / "bf16", hf_dirs["bin"], dtype="float32").problem.dtype == torch.float32
    assert load(hf_dirs["gpt2"], hf_dirs["bin"], dtype=None).problem.dtype == torch.float32


@needs_transformers
def test_evaluation_has_no_randomness(hf_dirs):
    loaded = load(hf_dirs["gpt2"], hf_dirs["bin"])
    model, problem = loaded.problem.model, loaded.problem
    assert model.config.attn_pdrop > 0 and model.config.resid_pdrop > 0
    x = problem.batches[0].inputs
    model.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        a, b = model(input_ids=x).logits, model(input_ids=x).logits
    assert not torch.equal(a, b)  # dropout is live in training mode...
    problem.check_determinism()  # ...and off in every evaluation
    assert model.training  # the module's own mode is restored, not changed


@needs_transformers
def test_head_partitions_follow_config(hf_dirs):
    gpt2 = load(hf_dirs["gpt2"], hf_dirs["bin"])
    llama = load(hf_dirs["llama"], hf_dirs["bin"])
    assert gpt2.n_head == llama.n_head == 2
    assert gpt2.model_args["block_size"] == llama.model_args["block_size"] == 8
    for loaded, name, key, cols in [
        (gpt2, "transformer.h.0.attn.c_attn.weight", "q.head1", np.s_[:, 2:4]),  # Conv1D (C, 3C)
        (llama, "model.layers.0.self_attn.k_proj.weight", "head1", np.s_[2:4, :]),  # (out, in)
    ]:
        part = build_partition("head", loaded.problem.layout, n_head=loaded.n_head)
        slot = next(s for s in loaded.problem.layout.slots if s.name == name)
        block = part.block_names.index(f"{name}:{key}")
        mask = (part.labels[slot.slice] == block).view(slot.shape)
        expected = torch.zeros(slot.shape, dtype=torch.bool)
        expected[cols] = True
        assert torch.equal(mask, expected), name


@needs_transformers
def test_text_is_tokenized_with_the_models_tokenizer(hf_dirs, tmp_path):
    from transformers import AutoTokenizer

    directory = save_model(tmp_path / "with_tok", "gpt2")
    save_tokenizer(directory)
    loaded = load(directory, hf_dirs["txt"], block_size=6, seed=5)
    tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    ids = np.asarray(tok(hf_dirs["txt"].read_text(), add_special_tokens=False)["input_ids"])
    x, y = sample_sequences(ids, block_size=6, num_sequences=4, seed=5)
    assert torch.equal(torch.cat([b.inputs for b in loaded.problem.batches]), x)
    assert torch.equal(torch.cat([b.targets for b in loaded.problem.batches]), y)
    # without a tokenizer, text is bytes: ids ≥ 30 do not fit this vocabulary
    with pytest.warns(UserWarning, match="no tokenizer"), pytest.raises(DataError, match="vocab"):
        load(hf_dirs["gpt2"], hf_dirs["txt"], block_size=6)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@needs_transformers
def test_cli_info_and_measure_on_hf_directory(hf_dirs, tmp_path):
    directory = save_model(tmp_path / "model", "gpt2")
    save_tokenizer(directory)
    result = run("info", directory, "--data", hf_dirs["txt"], "--batch-size", 2, "--num-batches", 2)
    assert result.exit_code == 0, result.output
    assert f"{directory} (hf" in result.output
    assert "transformer.wte.weight = lm_head.weight (counted once)" in result.output
    summary = json.loads(
        run("info", directory, "--data", hf_dirs["txt"], "--format", "json").output
    )
    assert summary["kind"] == "hf" and summary["model_args"]["n_head"] == 2
    assert summary["d"] == sum(t["numel"] for t in summary["tensors"])
    out = tmp_path / "m.jsonl"
    result = run(
        "measure",
        directory,
        "--data",
        hf_dirs["bin"],
        "--norm",
        "l2",
        "--max-hvps",
        12,
        "--dtype",
        "float64",
        "--format",
        "json",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert "lambda_max" in {r["quantity"] for r in records}
    assert records and all(r["d"] == summary["d"] for r in records)
    assert {r["checkpoint"] for r in records} == {str(directory)}


def test_missing_transformers_is_one_line(hf_dirs, tmp_path, monkeypatch):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers → ImportError
    with pytest.raises(CheckpointError, match=r"pip install 'smoothprobe\[hf\]'") as info:
        load(directory, hf_dirs["bin"])
    assert "\n" not in str(info.value)
    result = run("info", directory, "--data", hf_dirs["bin"])
    assert result.exit_code == 1
    assert "pip install 'smoothprobe[hf]'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@needs_transformers
def test_bad_hf_directories_give_one_line_errors(hf_dirs, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((hf_dirs["gpt2"] / "config.json").read_text())
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps(
            {
                "model_type": "mine",
                "auto_map": {
                    "AutoConfig": "configuration_mine.MineConfig",
                    "AutoModelForCausalLM": "modeling_mine.Mine",
                },
            }
        )
    )
    truncated = save_model(tmp_path / "truncated", "gpt2")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cases = [
        (plain, hf_dirs["bin"], {}, CheckpointError, "config.json"),
        (no_weights, hf_dirs["bin"], {}, CheckpointError, "cannot load"),
        (unknown, hf_dirs["bin"], {}, CheckpointError, "cannot load"),
        (truncated, hf_dirs["bin"], {}, CheckpointError, "cannot load"),
        (custom, hf_dirs["bin"], {}, CheckpointError, "does not run"),
        (hf_dirs["gpt2"], hf_dirs["bin"], {"block_size": 9}, DataError, "context length 8"),
        (hf_dirs["gpt2"], tmp_path / "missing.bin", {}, DataError, "not found"),
    ]
    for directory, data, options, error, words in cases:
        with pytest.raises(error, match=words) as info:
            load(directory, data, **options)
        assert "\n" not in str(info.value), directory
    with pytest.raises(SmoothprobeError, match="a spec does not apply"):
        load_checkpoint(hf_dirs["gpt2"], data=DataOptions(path=str(hf_dirs["bin"])), spec="spec.py")
    with pytest.raises(DataError, match="no evaluation data"):
        load_checkpoint(hf_dirs["gpt2"], data=DataOptions())
