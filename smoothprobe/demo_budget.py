"""The demo's budgets: how much ``smoothprobe demo`` trains and measures (``full``, ``small``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoBudget:
    """How much the demo trains and measures.

    Attributes:
        name: ``full`` (the committed report, < 3 min on 2 cores) or ``small`` (tests, seconds).
        model: nanoGPT ``model_args`` of the GPT.
        steps: Adam steps.
        checkpoints: checkpoints saved, evenly spaced, the last at ``steps``.
        lr: Adam learning rate (constant after a linear warm-up of ``warmup`` steps).
        warmup: warm-up steps.
        train_batch: sequences per training batch.
        max_chars: characters of standard-library text used.
        eval_batch_size: sequences per batch of the evaluation sample (held-out data).
        eval_batches: batches of the evaluation sample.
        dtype: compute dtype of every measurement.
        tol: Lanczos relative tolerance.
        final_hvps: (1,1)-norm HVP budget on the final checkpoint.
        step_hvps: (1,1)-norm HVP budget on the earlier checkpoints.
        blocks: partitions measured on the final checkpoint.
        block_hvps: HVP budget per partition (ascent plus upper bound).
        bases: bases of the final checkpoint (the first is the original one).
        extras: ℓ2 extras of the final checkpoint in the original basis (the spectrum is
            rotation invariant, so it is not measured again).
        graddiff: radii of the gradient-difference sweep (final checkpoint, original basis).
        graddiff_geometry: geometry of that sweep's perturbations.
        noise_batch_size: minibatch size of the gradient-noise estimate (0: off).
        spectral_hvps: HVP budget of the spectral upper bound on the final checkpoint (None:
            exact when d ≤ 20,000).
        hinf_hvps: HVP budget of the H∞ bracket (``hinf_lower``/``hinf_upper``) on the final
            checkpoint, every basis (0: off, the default until the report's headline uses it;
            ``smoothprobe measure`` spends 2,048).
    """

    name: str
    model: dict[str, Any]
    steps: int
    checkpoints: int
    lr: float
    warmup: int
    train_batch: int
    max_chars: int
    eval_batch_size: int
    eval_batches: int
    dtype: str
    tol: float
    final_hvps: int
    step_hvps: int
    blocks: tuple[str, ...]
    block_hvps: int
    bases: tuple[str, ...] = ("identity", "hadamard")
    extras: tuple[str, ...] = ("density",)
    graddiff: tuple[float, ...] = ()
    graddiff_geometry: str = "linf"
    noise_batch_size: int = 0
    spectral_hvps: int | None = None
    hinf_hvps: int = 0


# The full budget, measured on this project's 2-core machine (one thread): d = 28,544, one HVP on
# the 16 × 32-token sample ≈ 20–30 ms in float32 and about twice that in float64, so float32 (the
# headline's uncertainty is the (1,1)-norm's CI, orders above float32 round-off); ≈ 6,300 HVPs in
# all, ≈ 140 s of CPU. block_hvps = 8 × 100 ascent steps + 560 for the sketched U(Φ) of the
# 28-tensor partition (Σ_b min(d_b, 20)); Adam-mini's head partition (594 blocks) would need
# ≈ 11,700 HVPs for a sketch, and its row-Frobenius fallback is too loose to say anything.
# The spectral (Muon) geometry on the final checkpoint adds ≈ 1,750 HVPs: 8 × ≤ 100 polar-ascent
# steps per geometry (matrices, mixed), 560 for the sketched block norms (spectral_hvps = 600;
# exact ones would cost d = 28,544) and a random-start Lanczos for R·L₂'s upper end; Adam's
# preconditioned sharpness adds 20–45 Lanczos HVPs per checkpoint (measured on 3 Dec 2026).
BUDGETS: dict[str, DemoBudget] = {
    "full": DemoBudget(
        name="full",
        model=dict(
            n_layer=2, n_head=4, n_embd=32, block_size=32, bias=True, vocab_size=64, dropout=0.0
        ),
        steps=600,
        checkpoints=5,
        lr=3e-3,
        warmup=30,
        train_batch=16,
        max_chars=200_000,
        eval_batch_size=8,
        eval_batches=2,
        dtype="float32",
        tol=1e-5,
        final_hvps=256,
        step_hvps=128,
        blocks=("tensor", "layer"),
        block_hvps=1360,
        graddiff=(1e-4, 1e-3, 1e-2, 3e-2),
        noise_batch_size=4,
        spectral_hvps=600,
        hinf_hvps=2048,
    ),
    "small": DemoBudget(
        name="small",
        model=dict(
            n_layer=1, n_head=2, n_embd=8, block_size=16, bias=True, vocab_size=32, dropout=0.0
        ),
        steps=40,
        checkpoints=2,
        lr=1e-2,
        warmup=4,
        train_batch=8,
        max_chars=30_000,
        eval_batch_size=4,
        eval_batches=2,
        dtype="float64",
        tol=1e-6,
        final_hvps=64,
        step_hvps=32,
        blocks=("tensor", "layer"),
        block_hvps=1200,
        graddiff=(1e-3, 1e-2),
        noise_batch_size=2,
    ),
}
