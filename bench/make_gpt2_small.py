"""Writes a GPT-2-small nanoGPT checkpoint (random init, seed 0) and a synthetic val.bin.

Nothing is downloaded: the weights are nanoGPT's initialisation (N(0, 0.02), scaled residual
projections) and the tokens are uniform over the vocabulary. The checkpoint has nanoGPT's layout
(``model``, ``model_args``, ``iter_num``, ``config``), so ``smoothprobe measure ckpt.pt`` reads
it like one written by nanoGPT's train.py.

    python bench/make_gpt2_small.py OUT_DIR
    python bench/make_gpt2_small.py OUT_DIR --n-layer 4 --n-head 4 --n-embd 256   # a smaller one
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

MODEL_ARGS = dict(
    n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=True, vocab_size=50304, dropout=0.0
)


def main(out: str, **sizes: int) -> None:
    from smoothprobe.models.gpt import GPT, GPTConfig

    args = {**MODEL_ARGS, **sizes}
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                std = (
                    0.02 / math.sqrt(2 * args["n_layer"])
                    if name.endswith("c_proj.weight")
                    else 0.02
                )
                p.normal_(0.0, std)
            elif name.endswith("bias"):
                p.zero_()
    ckpt = {
        "model": model.state_dict(),
        "model_args": args,
        "iter_num": 0,
        "config": {"dataset": "synthetic"},
    }
    torch.save(ckpt, root / "ckpt.pt")
    rng = np.random.default_rng(0)
    vocab = min(50257, args["vocab_size"])  # GPT-2's tokenizer, or a smaller model's vocabulary
    rng.integers(0, vocab, size=2_000_000, dtype=np.uint16).tofile(root / "val.bin")
    print(sum(p.numel() for p in model.parameters()), "parameters ->", root)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="bench/gpt2_small")
    for name in ("n_layer", "n_head", "n_embd"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=MODEL_ARGS[name])
    opts = vars(parser.parse_args())
    main(opts.pop("out"), **opts)
