"""Hugging Face model directories (``config.json`` + weights) as checkpoints.

``smoothprobe measure path/to/model --data val.bin`` loads a causal language model saved with
``save_pretrained`` through ``AutoModelForCausalLM`` (the optional extra ``smoothprobe[hf]``), from
local files only: nothing is downloaded and no custom model code is run.

- attention is the eager (explicit softmax) path, whose double backward exists and is exact;
- the loss is mean next-token cross-entropy on (x, y) windows where y is x shifted by one (as
  nanoGPT; Hugging Face's own ``labels`` are *unshifted*); tokens with a negative id (-100, -1) are
  not scored, consistently with the batch weights of ``smoothprobe.batches.default_weight``;
- evaluation data: nanoGPT ``.bin`` tokens and ``.pt``/``.npz`` tensors as for nanoGPT checkpoints;
  a text file is tokenized with the directory's tokenizer when it has one (else read as bytes);
- in float64, the float32 upcasts that Hugging Face models hard-code (RMSNorm, softmax, rotary
  embeddings) are redirected to float64 (see ``Float64Mode``): without this a "float64" LLaMA
  Hessian is only float32-accurate (measured: asymmetric to 1e-7, finite differences off by 3e-4).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from smoothprobe.batches import make_batches
from smoothprobe.data import TEXT_SUFFIXES, load_data, sample_sequences
from smoothprobe.errors import CheckpointError, DataError, SmoothprobeError, quoted
from smoothprobe.problem import Problem, resolve_dtype

IGNORE_INDEX = -100  # every negative target id is mapped here (Hugging Face's convention)
DEFAULT_MAX_BLOCK = 1024  # default sequence length cap for models with very long contexts
CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TRAINER_STATE_PREFIXES = ("optimizer", "scheduler", "rng_state", "training_args")
INSTALL_HINT = "pip install 'smoothprobe[hf]'"


def is_hf_dir(path: str | os.PathLike) -> bool:
    """True for a directory holding a Hugging Face ``config.json``."""
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def import_transformers() -> ModuleType:
    """Imports ``transformers`` (optional dependency).

    Raises:
        CheckpointError: it is not installed, naming the extra that installs it.
    """
    try:
        import transformers
    except ImportError:
        raise CheckpointError(
            f"Hugging Face model directories need the transformers package: {INSTALL_HINT}"
        ) from None
    return transformers


@contextlib.contextmanager
def quiet_transformers(transformers: ModuleType) -> Iterator[None]:
    """Silences transformers' info logs and loading progress bars, restoring them afterwards."""
    log = transformers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()


def _dtype_keyword(transformers: ModuleType) -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since 4.56, ``torch_dtype`` before."""
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load_hf_model(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> nn.Module:
    """Loads a causal LM from a local directory with eager attention.

    Args:
        path: directory with ``config.json`` and weights (``*.safetensors`` or ``*.bin``).
        dtype: load in this dtype (default: the checkpoint's).

    Returns:
        The model (``AutoModelForCausalLM``), in evaluation mode.

    Raises:
        CheckpointError: transformers missing, unknown architecture, missing or corrupt weights.
    """
    from safetensors import SafetensorError

    transformers = import_transformers()
    kwargs = {_dtype_keyword(transformers): dtype if dtype is not None else "auto"}
    try:
        with quiet_transformers(transformers), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path),
                local_files_only=True,
                trust_remote_code=False,
                attn_implementation="eager",
                **kwargs,
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
        if "custom code" in str(exc) or "trust_remote_code" in str(exc):
            raise CheckpointError(
                f"{path} needs its own model code (auto_map in config.json), which smoothprobe "
                "does not run: build the model yourself and use smoothprobe.problem_from_module"
            ) from None
        raise CheckpointError(f"cannot load Hugging Face model {path}: {quoted(exc)}") from None
    return model.eval()


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a directory's ``config.json``.

    Raises:
        CheckpointError: unreadable or not a JSON object.
    """
    file = Path(path) / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is not valid JSON ({quoted(exc)})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    return config


def context_length(config: Any) -> int | None:
    """The model's maximum sequence length (``n_positions``, ``max_position_embeddings``, ...)."""
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_args_of(config: Any) -> dict[str, Any]:
    """A short JSON-ready summary of a config (``n_head`` is read by head partitions)."""
    text = getattr(config, "text_config", None) or config

    def get(*keys):
        return next((getattr(text, k) for k in keys if getattr(text, k, None) is not None), None)

    return {
        "model_type": getattr(config, "model_type", None),
        "architectures": list(getattr(config, "architectures", None) or []),
        "n_layer": get("num_hidden_layers", "n_layer"),
        "n_head": get("num_attention_heads", "n_head"),
        "n_kv_head": get("num_key_value_heads"),
        "n_embd": get("hidden_size", "n_embd"),
        "vocab_size": get("vocab_size"),
        "block_size": context_length(text),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }


class Float64Mode(TorchFunctionMode):
    """Redirects requests for float32 to float64 (``.float()``, ``.to(torch.float32)``,
    ``softmax(..., dtype=torch.float32)``, ...).

    Hugging Face models upcast half-precision activations to float32 in RMSNorm, softmax and
    rotary embeddings; run in float64, those upcasts are downcasts. Inside this mode a float64
    forward stays float64 end to end. Use it only when the compute dtype is float64.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.float:
            func = torch.Tensor.double
        args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
        return func(*args, **kwargs)


class CausalLMForward:
    """``forward(model, input_ids) -> logits`` for Hugging Face causal LMs.

    Args:
        dtype: the compute dtype; float64 runs under :class:`Float64Mode`.
    """

    def __init__(self, *, dtype: torch.dtype):
        self.float64 = dtype == torch.float64

    def __call__(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        with Float64Mode() if self.float64 else contextlib.nullcontext():
            return model(input_ids=inputs, use_cache=False).logits


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over targets ≥ 0 (negative ids, e.g. -100 or -1, skipped)."""
    targets = targets.masked_fill(targets < 0, IGNORE_INDEX)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def has_tokenizer(path: str | os.PathLike) -> bool:
    """True when the directory holds tokenizer files."""
    return any((Path(path) / name).is_file() for name in TOKENIZER_FILES)


def tokenize_text(data_path: str | os.PathLike, model_dir: str | os.PathLike) -> np.ndarray:
    """Token ids of a text file under the model directory's own tokenizer (no special tokens).

    Raises:
        DataError: the tokenizer cannot be loaded or the text is empty.
    """
    transformers = import_transformers()
    try:
        with quiet_transformers(transformers), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(model_dir), local_files_only=True, trust_remote_code=False
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as exc:
        raise DataError(
            f"cannot load the tokenizer of {model_dir} to read {data_path}: {quoted(exc)}; "
            "pass pre-tokenized data (.bin or .pt/.npz)"
        ) from None
    text = Path(data_path).read_text(encoding="utf-8", errors="replace")
    if not text:
        raise DataError(f"{data_path} is empty")
    with quiet_transformers(transformers):
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def load_hf_data(
    data_path: str | os.PathLike,
    *,
    model_dir: str | os.PathLike,
    block_size: int,
    num_sequences: int,
    seed: int,
    vocab_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation (x, y) for a Hugging Face model.

    Text files are tokenized with the directory's tokenizer when it has one (otherwise read as
    bytes, with a warning); every other format goes through ``smoothprobe.data.load_data``.

    Raises:
        DataError: missing, short or incompatible data.
    """
    data_path = Path(data_path)
    is_text = data_path.suffix in TEXT_SUFFIXES or data_path.suffix == ""
    if not (is_text and data_path.is_file() and has_tokenizer(model_dir)):
        if is_text and data_path.is_file():
            warnings.warn(
                f"{model_dir} has no tokenizer files: reading {data_path} as bytes "
                "(token ids 0-255)",
                UserWarning,
                stacklevel=2,
            )
        return load_data(
            data_path,
            block_size=block_size,
            num_sequences=num_sequences,
            seed=seed,
            vocab_size=vocab_size,
        )
    tokens = tokenize_text(data_path, model_dir)
    x, y = sample_sequences(tokens, block_size=block_size, num_sequences=num_sequences, seed=seed)
    top = int(tokens.max())
    if vocab_size is not None and top >= vocab_size:
        raise DataError(
            f"the tokenizer of {model_dir} produced id {top} ≥ the model's vocab_size "
            f"{vocab_size}: tokenizer and model do not match"
        )
    return x, y


def _block_size(requested: int | None, context: int | None, path: Path) -> int:
    if requested is None:
        if context is None:
            raise DataError(
                f"{path}/config.json states no context length: give a block size",
                option="block_size",
            )
        return min(context, DEFAULT_MAX_BLOCK)
    if context is not None and requested > context:
        raise DataError(
            f"block size {requested} exceeds the model's context length {context}",
            option="block_size",
        )
    return requested


def _is_model_file(name: str) -> bool:
    if name == "config.json" or name.endswith(".index.json"):
        return True
    return Path(name).suffix in WEIGHT_SUFFIXES and not name.startswith(TRAINER_STATE_PREFIXES)


def weights_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 over ``config.json``, weight files and their index, by sorted name.

    Other files of the directory (optimizer state, logs, tokenizer) do not change the model and
    are left out, so a Trainer checkpoint is not hashed three times over.
    """
    path = Path(path)
    names = sorted(p.name for p in path.iterdir() if p.is_file() and _is_model_file(p.name))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(path / name, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _trainer_step(path: Path) -> int | None:
    """``global_step`` from a Trainer checkpoint's ``trainer_state.json``, if present."""
    try:
        step = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def load_hf_dir(
    path: str | os.PathLike,
    *,
    data,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    include_frozen: bool = False,
    spec: str | None = None,
):
    """Loads a Hugging Face causal-LM directory and its evaluation data into a Problem.

    Args:
        path: directory with ``config.json`` and weights.
        data: ``smoothprobe.checkpoints.DataOptions`` (``path`` required).
        dtype: ``checkpoint`` (default), ``float32`` or ``float64``.
        device: compute device.
        include_frozen: measure frozen parameters too.
        spec: must be None (a spec does not apply to model directories).

    Returns:
        A ``LoadedCheckpoint`` of kind ``"hf"``.

    Raises:
        CheckpointError, DataError, NonFiniteError: with one-line explanations.
    """
    from smoothprobe.checkpoints import LoadedCheckpoint

    path = Path(path)
    if spec is not None:
        raise SmoothprobeError(
            f"a spec does not apply to the Hugging Face directory {path}: "
            "the model is built from its config.json",
            option="spec",
        )
    read_config(path)  # a readable config.json before anything slow
    if data.path is None:
        raise DataError(
            f"no evaluation data for {path}: give a data file: token ids (val.bin), a text "
            "file (tokenized with the model's tokenizer), or a .pt/.npz with x and y",
            option="data_path",
        )
    requested = (
        None
        if dtype in (None, "checkpoint")
        else resolve_dtype(dtype, checkpoint_dtype=torch.float32)
    )
    model = load_hf_model(path, dtype=requested)
    first = next(iter(model.parameters()), None)
    compute = requested or (first.dtype if first is not None else torch.float32)
    args = model_args_of(model.config)
    block = _block_size(data.block_size, args["block_size"], path)
    x, y = load_hf_data(
        data.path,
        model_dir=path,
        block_size=block,
        num_sequences=data.batch_size * data.num_batches,
        seed=data.seed,
        vocab_size=args["vocab_size"],
    )
    batches = make_batches((x, y), batch_size=data.batch_size, num_batches=data.num_batches)
    problem = Problem(
        model,
        causal_lm_loss,
        batches,
        dtype=compute,
        device=device,
        include_frozen=include_frozen,
        forward=CausalLMForward(dtype=compute),
    )
    return LoadedCheckpoint(
        problem, str(path), "hf", weights_sha256(path), _trainer_step(path), args, str(data.path)
    )


__all__ = [
    "CausalLMForward",
    "Float64Mode",
    "causal_lm_loss",
    "context_length",
    "is_hf_dir",
    "load_hf_data",
    "load_hf_dir",
    "load_hf_model",
]
