"""From a checkpoint (and data) to a Problem.

Supported checkpoints:
- nanoGPT-style ``ckpt.pt`` dicts (``model``, ``model_args``, optional ``optimizer``, ``iter_num``,
  ``config``): the built-in GPT is built from ``model_args``; nothing else is needed but data;
- plain state dicts (``.pt``/``.pth``) and ``.safetensors`` files, with the model, loss and data
  supplied by a *spec* (see ``smoothprobe.spec``);
- built-in examples, named ``example:mlp``, ``example:cnn`` or ``example:gpt`` (``:bench`` for the
  larger size).

Every ``torch.load`` is ``weights_only=True`` unless the user opts in with ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothprobe.batches import loss_ignore_index, make_batches
from smoothprobe.data import load_data
from smoothprobe.errors import CheckpointError, DataError, SmoothprobeError, quoted
from smoothprobe.models.gpt import GPT, GPTConfig, lm_loss
from smoothprobe.problem import Problem, resolve_dtype
from smoothprobe.records import file_sha256

PREFIXES = ("_orig_mod.", "module.")  # torch.compile and DDP wrappers
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older GPT code


@dataclass(frozen=True)
class DataOptions:
    """How to turn a data file into the evaluation sample.

    Attributes:
        path: data file (``.bin``, text, ``.pt``/``.npz``), or None for the checkpoint's default.
        batch_size: examples (sequences) per batch.
        num_batches: number of batches (token data: sequences = batch_size × num_batches).
        block_size: sequence length for token data (default: the model's block size).
        seed: seed of the sequence offsets.
    """

    path: str | None = None
    batch_size: int = 8
    num_batches: int = 4
    block_size: int | None = None
    seed: int = 0


@dataclass
class LoadedCheckpoint:
    """A Problem plus what is known about where it came from."""

    problem: Problem
    path: str
    kind: str  # "nanogpt", "state_dict", "safetensors", "example"
    sha256: str = ""
    step: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    data_path: str | None = None
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    optimizer_order: tuple[str, ...] | None = None

    @property
    def n_head(self) -> int | None:
        return self.model_args.get("n_head")


def strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Removes ``_orig_mod.`` and ``module.`` key prefixes (possibly nested)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def read_checkpoint_file(path: str | os.PathLike, *, trust_pickle: bool = False) -> Any:
    """Loads a ``.pt``/``.pth``/``.safetensors`` file safely.

    Args:
        path: the file.
        trust_pickle: allow arbitrary unpickling (executes code from the file: only for files you
            trust).

    Returns:
        The loaded object (a dict for every supported format).

    Raises:
        CheckpointError: missing, truncated, corrupt, or needs unpickling without opt-in.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory without config.json: pass the checkpoint "
            f"file inside it (e.g. {path / 'ckpt.pt'}); a Hugging Face model "
            "directory needs config.json beside its weights"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the save was interrupted")
    _refuse_non_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt ({quoted(exc)})"
            ) from None
    try:
        if trust_pickle:
            warnings.warn(
                f"unpickling {path} with weights_only=False: this runs any code the file contains",
                UserWarning,
                stacklevel=2,
            )
            return torch.load(path, map_location="cpu", weights_only=False)  # explicit opt-in
        return torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"refused to unpickle {path}: it contains Python objects beyond tensors and plain "
                "containers, and loading them would run code from the file; if you trust it, "
                "allow unpickling (trust_pickle=True)",
                option="trust_pickle",
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt ({quoted(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({quoted(exc)})"
        ) from None
    except (IndexError, KeyError, TypeError, AttributeError) as exc:  # not a pickle at all
        raise CheckpointError(
            f"{path} is not a torch checkpoint: its content is neither a torch zip archive nor a "
            f"pickle ({type(exc).__name__} while reading it); " + CHECKPOINT_KINDS
        ) from None


CHECKPOINT_KINDS = (
    "pass a file written by torch.save (.pt/.pth), a .safetensors file, or a Hugging Face "
    "model directory"
)


def _refuse_non_checkpoint(path: Path) -> None:
    """Raises CheckpointError naming the file's kind when it is clearly not a checkpoint."""
    from smoothprobe.file_kinds import first_words, not_a_checkpoint

    kind = not_a_checkpoint(path)
    if kind is None:
        return
    start = (
        f" (it starts with {first_words(path)!r})"
        if "text" in kind or "JSON" in kind or "CSV" in kind
        else ""
    )
    raise CheckpointError(f"{path} is not a checkpoint: it is {kind}{start}; " + CHECKPOINT_KINDS)


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def load_state_into(model: nn.Module, state: dict[str, Any], *, path: str) -> None:
    """Loads a state dict strictly, explaining mismatches.

    Raises:
        CheckpointError: listing the first missing and unexpected keys.
    """
    state = {k: v for k, v in strip_prefixes(state).items() if not k.endswith(IGNORED_SUFFIXES)}
    non_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise CheckpointError(
            f"{path}: entries {non_tensor[:3]} are not tensors; is this a state dict?"
        )
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: state dict keys do not match the model: missing {missing[:4]}"
            f"{' …' if len(missing) > 4 else ''} ({len(missing)}), unexpected {unexpected[:4]}"
            f"{' …' if len(unexpected) > 4 else ''} ({len(unexpected)}); check the spec's model"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        line = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc))
        raise CheckpointError(f"{path}: {' '.join(line.split())}") from None


def _check_finite_state(state: dict[str, Any], *, path: str) -> None:
    bad = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        from smoothprobe.errors import NonFiniteError

        raise NonFiniteError(
            f"{path}: NaN or Inf in {', '.join(bad[:4])}: training diverged or "
            "the file is corrupt; measure an earlier checkpoint"
        )


def _state_dtype(state: dict[str, Any]) -> torch.dtype:
    for v in state.values():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.dtype
    return torch.float32


def is_nanogpt(obj: Any) -> bool:
    return isinstance(obj, dict) and "model" in obj and "model_args" in obj


def _nanogpt_default_data(ckpt: dict[str, Any], path: Path) -> str | None:
    """Where nanoGPT keeps the data of a run: ``data/<dataset>/val.bin`` (then train.bin)."""
    dataset = (ckpt.get("config") or {}).get("dataset")
    candidates = [path.parent / "val.bin", path.parent / "train.bin"]
    if isinstance(dataset, str):
        candidates = [
            Path("data") / dataset / "val.bin",
            Path("data") / dataset / "train.bin",
            *candidates,
        ]
    return next((str(c) for c in candidates if c.exists()), None)


def load_nanogpt(
    ckpt: dict[str, Any],
    path: Path,
    *,
    data: DataOptions,
    dtype: str | None,
    device: str | None,
    include_frozen: bool = False,
) -> LoadedCheckpoint:
    """Builds the built-in GPT from ``model_args`` and a Problem on token data."""
    model_args = dict(ckpt["model_args"])
    try:
        config = GPTConfig.from_model_args(model_args)
        model = GPT(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: model_args {model_args} do not describe a GPT ({exc})"
        ) from None
    state = ckpt["model"]
    _check_finite_state(state, path=str(path))
    ckpt_dtype = _state_dtype(state)
    load_state_into(model, state, path=str(path))
    data_path = data.path or _nanogpt_default_data(ckpt, path)
    if data_path is None:
        raise DataError(
            f"no evaluation data for {path}: give a data file: nanoGPT tokens (train.bin), a "
            "text file, or a .pt/.npz with x and y",
            option="data_path",
        )
    block = data.block_size or config.block_size
    if block > config.block_size:
        raise DataError(
            f"block size {block} exceeds the model's block_size {config.block_size}",
            option="block_size",
        )
    x, y = load_data(
        data_path,
        block_size=block,
        num_sequences=data.batch_size * data.num_batches,
        seed=data.seed,
        vocab_size=config.vocab_size,
    )
    batches = make_batches(
        (x, y),
        batch_size=data.batch_size,
        num_batches=data.num_batches,
        ignore_index=loss_ignore_index(lm_loss),
    )
    problem = Problem(
        model,
        lm_loss,
        batches,
        dtype=resolve_dtype(dtype, checkpoint_dtype=ckpt_dtype),
        device=device,
        include_frozen=include_frozen,
    )
    step = ckpt.get("iter_num")
    return LoadedCheckpoint(
        problem,
        str(path),
        "nanogpt",
        file_sha256(path),
        int(step) if isinstance(step, int) else None,
        model_args,
        data_path,
        optimizer_state=ckpt.get("optimizer"),
    )


def load_example(name: str, *, dtype: str | None) -> LoadedCheckpoint:
    """``example:NAME[:SIZE]`` — a built-in trained example (see ``smoothprobe.examples``)."""
    from smoothprobe.examples import SPECS, build_example, gpt_config

    parts = name.split(":")[1:]
    ex, size = parts[0] if parts else "gpt", parts[1] if len(parts) > 1 else "test"
    if (ex, size) not in SPECS:
        raise CheckpointError(
            f"unknown built-in example {name!r}: use example:mlp, example:cnn "
            "or example:gpt (optionally :bench)"
        )
    resolved = resolve_dtype(dtype, checkpoint_dtype=torch.float32)
    problem = build_example(ex, size=size, dtype=resolved)
    args = vars(gpt_config(size)).copy() if ex == "gpt" else {}
    return LoadedCheckpoint(problem, name, "example", "", None, args, None)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    data: DataOptions | None = None,
    spec: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    include_frozen: bool = False,
    trust_pickle: bool = False,
) -> LoadedCheckpoint:
    """Loads any supported checkpoint into a Problem.

    Args:
        path: checkpoint file, Hugging Face model directory (``config.json`` + weights, see
            ``smoothprobe.hf``), or ``example:NAME``.
        data: evaluation-data options.
        spec: ``path/to/spec.py`` or ``module:function`` building model, loss and data (required
            for plain state dicts and safetensors files).
        dtype: ``checkpoint``, ``float32`` or ``float64``.
        device: compute device.
        include_frozen: measure frozen parameters too.
        trust_pickle: allow unpickling arbitrary objects (runs code from the file).

    Returns:
        The loaded checkpoint with its Problem.

    Raises:
        CheckpointError, DataError, NonFiniteError: with one-line explanations.
    """
    data = data or DataOptions()
    if str(path).startswith("example:"):
        return load_example(str(path), dtype=dtype)
    path = Path(path)
    from smoothprobe.hf import is_hf_dir, load_hf_dir  # transformers itself is imported lazily

    if is_hf_dir(path):
        return load_hf_dir(
            path, data=data, dtype=dtype, device=device, include_frozen=include_frozen, spec=spec
        )
    obj = read_checkpoint_file(path, trust_pickle=trust_pickle)
    if is_nanogpt(obj) and spec is None:
        return load_nanogpt(
            obj, path, data=data, dtype=dtype, device=device, include_frozen=include_frozen
        )
    if spec is None:
        raise CheckpointError(
            f"{path} is a plain state dict: give a spec (FILE.py or module:function) that "
            "builds the model, the loss and the data (see README)",
            option="spec",
        )
    from smoothprobe.spec import load_spec

    built = load_spec(spec, data=data)
    wrapped = isinstance(obj, dict) and isinstance(obj.get("model"), dict)  # {"model", "optimizer"}
    state = obj["model"] if wrapped else obj
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    _check_finite_state(state, path=str(path))
    load_state_into(built.model, state, path=str(path))
    problem = Problem(
        built.model,
        built.loss_fn,
        built.batches,
        dtype=resolve_dtype(dtype, checkpoint_dtype=_state_dtype(state)),
        device=device,
        include_frozen=include_frozen,
        forward=built.forward,
        ignore_index=built.ignore_index,
    )
    kind = "safetensors" if path.suffix == ".safetensors" else "state_dict"
    step = obj.get("iter_num") if isinstance(obj, dict) else None
    return LoadedCheckpoint(
        problem,
        str(path),
        kind,
        file_sha256(path),
        step if isinstance(step, int) else None,
        built.model_args,
        data.path,
        optimizer_state=_optimizer_entry(obj),
        optimizer_order=built.optimizer_order,
    )


def _optimizer_entry(obj: Any) -> dict[str, Any] | None:
    """The optimizer state_dict saved next to the model (``optimizer`` or
    ``optimizer_state_dict``), or None."""
    if not isinstance(obj, dict):
        return None
    found = obj.get("optimizer", obj.get("optimizer_state_dict"))
    return found if isinstance(found, dict) else None


__all__ = [
    "DataOptions",
    "LoadedCheckpoint",
    "SmoothprobeError",
    "load_checkpoint",
    "read_checkpoint_file",
    "strip_prefixes",
]
