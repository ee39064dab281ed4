"""Writes a GPT-2-small nanoGPT checkpoint (random init, seed 0) and a synthetic val.bin.

Nothing is downloaded: the weights are nanoGPT's initialisation (N(0, 0.02), scaled residual
projections) and the tokens are uniform over the vocabulary. The checkpoint has nanoGPT's layout
(``model``, ``model_args``, ``iter_num``, ``config``), so ``smoothprobe measure ckpt.pt`` reads
it like one written by nanoGPT's train.py.

    python bench/make_gpt2_small.py OUT_DIR
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

MODEL_ARGS = dict(
    n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=True, vocab_size=50304, dropout=0.0
)


def main(out: str) -> None:
    from smoothprobe.models.gpt import GPT, GPTConfig

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MODEL_ARGS))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                std = (
                    0.02 / math.sqrt(2 * MODEL_ARGS["n_layer"])
                    if name.endswith("c_proj.weight")
                    else 0.02
                )
                p.normal_(0.0, std)
            elif name.endswith("bias"):
                p.zero_()
    ckpt = {
        "model": model.state_dict(),
        "model_args": MODEL_ARGS,
        "iter_num": 0,
        "config": {"dataset": "synthetic"},
    }
    torch.save(ckpt, root / "ckpt.pt")
    rng = np.random.default_rng(0)
    rng.integers(0, 50257, size=2_000_000, dtype=np.uint16).tofile(root / "val.bin")
    print(sum(p.numel() for p in model.parameters()), "parameters ->", root)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/gpt2_small")
