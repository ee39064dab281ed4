"""Loading checkpoints and data, and every bad input the core issue lists."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import MODEL_ARGS, make_nanogpt_run
from torch import nn

from smoothprobe.checkpoints import DataOptions, load_checkpoint, strip_prefixes
from smoothprobe.data import load_data, read_meta
from smoothprobe.errors import CheckpointError, DataError, NonFiniteError, SmoothprobeError

OPTS = DataOptions(batch_size=2, num_batches=2)


def _with_data(data):
    return DataOptions(path=str(data), batch_size=2, num_batches=2)


@pytest.mark.parametrize("prefix", ["", "_orig_mod.", "module.", "module._orig_mod."])
def test_nanogpt_checkpoint_loads_with_any_prefix(tmp_path, prefix):
    ckpt, data = make_nanogpt_run(tmp_path, prefix=prefix, iter_num=7)
    loaded = load_checkpoint(ckpt, data=_with_data(data), dtype="float64")
    assert loaded.kind == "nanogpt" and loaded.step == 7 and loaded.n_head == 2
    assert loaded.problem.d == sum(p.numel() for p in loaded.problem.model.parameters())
    assert len(loaded.problem.batches) == 2
    assert loaded.problem.batches[0].weight == 2 * MODEL_ARGS["block_size"]  # tokens
    assert np.isfinite(loaded.problem.loss())
    assert len(loaded.sha256) == 64


def test_nanogpt_data_found_beside_checkpoint(nanogpt_run):
    ckpt, _ = nanogpt_run
    loaded = load_checkpoint(ckpt, data=OPTS)  # train.bin sits beside ckpt.pt
    assert loaded.data_path.endswith("train.bin")


def test_same_seed_same_sample_other_seed_other_sample(nanogpt_run):
    ckpt, data = nanogpt_run
    a = load_checkpoint(ckpt, data=DataOptions(path=str(data), batch_size=2, num_batches=2, seed=1))
    b = load_checkpoint(ckpt, data=DataOptions(path=str(data), batch_size=2, num_batches=2, seed=1))
    c = load_checkpoint(ckpt, data=DataOptions(path=str(data), batch_size=2, num_batches=2, seed=2))
    assert torch.equal(a.problem.batches[0].inputs, b.problem.batches[0].inputs)
    assert not torch.equal(a.problem.batches[0].inputs, c.problem.batches[0].inputs)


def test_strip_prefixes():
    assert strip_prefixes({"module._orig_mod.a.b": 1, "c": 2}) == {"a.b": 1, "c": 2}


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("cut", [0, 100, -50])
def test_truncated_checkpoint(nanogpt_run, tmp_path, cut):
    ckpt, data = nanogpt_run
    raw = ckpt.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(raw[: (cut if cut >= 0 else len(raw) + cut)])
    with pytest.raises(CheckpointError, match="empty|truncated|corrupt"):
        load_checkpoint(bad, data=_with_data(data))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/smoothprobe_pwned",))


def test_code_executing_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model": Evil(), "model_args": {}}, fh)
    if os.path.exists("/tmp/smoothprobe_pwned"):
        os.unlink("/tmp/smoothprobe_pwned")
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        load_checkpoint(path)
    assert not os.path.exists("/tmp/smoothprobe_pwned")


def test_mismatched_keys_are_listed(nanogpt_run, tmp_path):
    ckpt, data = nanogpt_run
    obj = torch.load(ckpt, weights_only=True)
    obj["model"]["transformer.h.0.extra.weight"] = obj["model"].pop("transformer.h.0.ln_1.weight")
    torch.save(obj, tmp_path / "mismatch.pt")
    with pytest.raises(
        CheckpointError,
        match=r"missing \['transformer.h.0.ln_1.weight'\].*"
        r"unexpected \['transformer.h.0.extra.weight'\]",
    ):
        load_checkpoint(tmp_path / "mismatch.pt", data=_with_data(data))


def test_nan_parameters(nanogpt_run, tmp_path):
    ckpt, data = nanogpt_run
    obj = torch.load(ckpt, weights_only=True)
    obj["model"]["transformer.wpe.weight"][0, 0] = float("nan")
    torch.save(obj, tmp_path / "nan.pt")
    with pytest.raises(NonFiniteError, match="transformer.wpe.weight"):
        load_checkpoint(tmp_path / "nan.pt", data=_with_data(data))


def test_inf_loss_is_reported():
    from smoothprobe.problem import problem_from_module

    net = nn.Linear(2, 1)
    problem = problem_from_module(
        net, lambda out, y: out.sum() * 0 + float("inf"), (torch.randn(3, 2), torch.randn(3, 1))
    )
    with pytest.raises(NonFiniteError, match="loss is inf"):
        problem.loss()


def test_data_shorter_than_one_sequence(nanogpt_run, tmp_path):
    ckpt, _ = nanogpt_run
    short = tmp_path / "short.bin"
    np.arange(5, dtype=np.uint16).tofile(short)
    with pytest.raises(DataError, match="shorter than one sequence"):
        load_checkpoint(ckpt, data=_with_data(short))


def test_empty_data(nanogpt_run, tmp_path):
    ckpt, _ = nanogpt_run
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_checkpoint(ckpt, data=_with_data(empty))


def test_out_of_vocabulary_tokens(nanogpt_run, tmp_path):
    ckpt, _ = nanogpt_run
    big = tmp_path / "big" / "val.bin"
    big.parent.mkdir()
    (np.arange(200, dtype=np.uint16) + 1000).tofile(big)
    with pytest.raises(DataError, match="vocab_size"):
        load_checkpoint(ckpt, data=_with_data(big))


def test_text_and_tensor_data(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("hello world, " * 20)
    x, y = load_data(text, block_size=8, num_sequences=3, seed=0)
    assert x.shape == (3, 8) and torch.equal(x[:, 1:], y[:, :-1])
    torch.save({"inputs": torch.randn(4, 2), "targets": torch.randn(4)}, tmp_path / "t.pt")
    x, y = load_data(tmp_path / "t.pt", block_size=8, num_sequences=1, seed=0)
    assert x.shape == (4, 2)
    np.savez(tmp_path / "t.npz", x=np.zeros((3, 2)), y=np.zeros(3))
    assert load_data(tmp_path / "t.npz", block_size=8, num_sequences=1, seed=0)[0].shape == (3, 2)
    with pytest.raises(DataError, match="expected x and y"):
        np.savez(tmp_path / "bad.npz", a=np.zeros(3))
        load_data(tmp_path / "bad.npz", block_size=8, num_sequences=1, seed=0)


def test_meta_pickle_cannot_run_code(tmp_path):
    with open(tmp_path / "meta.pkl", "wb") as fh:
        pickle.dump({"vocab_size": 3, "x": Evil()}, fh)
    with pytest.raises(DataError, match="meta.pkl"):
        read_meta(tmp_path / "meta.pkl")


SPEC = """
import torch
from torch import nn

def smoothprobe_spec(*, data_path, batch_size, num_batches, seed):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(12, 3, generator=g), torch.randint(2, (12,), generator=g)
    return {"model": nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)),
            "loss_fn": nn.functional.cross_entropy, "data": (x, y)}
"""


def test_state_dict_and_safetensors_with_spec(tmp_path):
    from safetensors.torch import save_file

    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    save_file(net.state_dict(), tmp_path / "m.safetensors")
    for path, kind in [
        (tmp_path / "sd.pt", "state_dict"),
        (tmp_path / "m.safetensors", "safetensors"),
    ]:
        loaded = load_checkpoint(
            path, spec=str(spec), data=DataOptions(batch_size=5, num_batches=9)
        )
        assert loaded.kind == kind and loaded.problem.d == 3 * 4 + 4 + 4 * 2 + 2
        assert [b.weight for b in loaded.problem.batches] == [5, 5, 2]
        assert torch.equal(
            loaded.problem.theta.float(),
            torch.cat([p.detach().reshape(-1) for p in net.parameters()]),
        )
    with pytest.raises(CheckpointError, match="give a spec"):
        load_checkpoint(tmp_path / "sd.pt")
    with pytest.raises(SmoothprobeError, match="no function"):
        load_checkpoint(tmp_path / "sd.pt", spec=f"{spec}:nothing")


def test_records_files_are_validated_and_readable(tmp_path):
    from smoothprobe.records import read_records, write_records

    path = tmp_path / "r.jsonl"
    write_records(path, [{"quantity": "loss", "value": 1.0}])
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert read_records(path) == [{"quantity": "loss", "value": 1.0}]
    for bad in ('{"a": 1}', "[1, 2]", "not json"):
        path.write_text(bad + "\n")
        with pytest.raises(SmoothprobeError, match="record"):
            read_records(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Harmless:
    """A pickled object that weights-only loading refuses; loads fine with --trust-pickle."""

    def __init__(self):
        self.note = "ok"


def test_trust_pickle_is_an_explicit_opt_in(nanogpt_run, tmp_path):
    ckpt, data = nanogpt_run
    obj = torch.load(ckpt, weights_only=True)
    obj["config"] = {"extra": Harmless()}
    torch.save(obj, tmp_path / "objects.pt")
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        load_checkpoint(tmp_path / "objects.pt", data=_with_data(data))
    with pytest.warns(UserWarning, match="runs any code"):
        loaded = load_checkpoint(tmp_path / "objects.pt", data=_with_data(data), trust_pickle=True)
    assert loaded.kind == "nanogpt"
