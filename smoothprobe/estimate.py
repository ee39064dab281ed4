"""The result of one estimator: a value, what kind of bound it is, its error bar and its cost.

Quantity names used across the package (records, reports and the CLI agree on these):

======================  =====================================================  ==============
quantity                meaning (MATH.md symbols)                              geometry
======================  =====================================================  ==============
``loss``                L(θ) on the evaluation sample                          --
``lambda_max``          largest eigenvalue of H                                l2
``lambda_min``          smallest eigenvalue of H                               l2
``l2_norm``             L₂ = ‖H‖₂ = max|λ|                                     l2
``d_l2``                d·L₂ (the one-block H(Φ))                              l2
``trace``               tr H                                                   l2
``frobenius_sq``        ‖H‖_F²                                                 l2
``l11_norm``            ‖H‖₁,₁ = Σ|H_ij| (upper bound on H∞)                   linf
``linf_lower``          certified lower bound on H∞ = ‖H‖∞→1                   linf
``max_row``             max_i ‖H_i,:‖₁ = ‖H‖∞→∞                               linf
``rho``                 ‖H‖₁,₁ / (d·L₂)                                        linf
``block_upper``         U(Φ) = Σ √(d_b d_b') ‖H_bb'‖₂                          block
``block_lower``         certified lower bound on H(Φ)                          block
``rho_block``           H(Φ) / (d·L₂)                                          block
``graddiff_max``        max_j ‖∇L(θ+δ_j)−∇L(θ)‖_*/‖δ_j‖ (lower bound, ball)    any
``graddiff_mean``       mean of those ratios over the direction draws          any
``hvp_ratio_max``       max_j ‖Hv_j‖_*/‖v_j‖, same directions (lower bound)    any
``hvp_ratio_mean``      mean of ‖Hv_j‖_*/‖v_j‖                                 any
``noise_l1``            ‖σ‖₁, σ² = per-coordinate minibatch-gradient variance  linf
``noise_l2_sqrtd``      √d·‖σ‖₂                                                l2
``noise_block``         Σ_b √d_b ‖σ_b‖₂                                        block
``snr_l1``              ‖∇L‖₁ / ‖σ‖₁                                           linf
``snr_l2``              ‖∇L‖₂ / ‖σ‖₂                                           l2
``snr_block``           Σ_b √d_b‖∇L_b‖₂ / Σ_b √d_b‖σ_b‖₂                       block
``grad_norm``           ‖∇L(θ)‖_* (trajectory)                                 any
``step_ratio``          ‖∇L(θ_{t+1})−∇L(θ_t)‖_*/‖θ_{t+1}−θ_t‖ (lower bound)    any
``op_lower``            certified lower bound on H_op (polar ascent)           spectral
``op_upper``            Σ c_b c_b'‖H_bb'‖₂ ≥ H_op (c = √r/s, √d_b on ℓ∞)       spectral
``op_upper_rl2``        R·L₂ ≥ H_op (L₂'s upper end)                           spectral
``rho_op``              H_op/(R·L₂) = predicted T_Muon/T_SGD                   spectral
``muon_adam_ratio``     H_op/(κ·H∞) = predicted T_Muon/T_Adam                  spectral
``precond_lambda_max``  λ_max(P⁻¹H), P = diag(√v̂ + ε) from the Adam state      preconditioned
``precond_lambda_max_upper`` λ_max(P⁻¹H) upper end (prob_upper, KW)           preconditioned
``precond_lambda_min``  λ_min(P⁻¹H)                                            preconditioned
``aeos_threshold``      (2 + 2β₁)/((1 − β₁)η), Adam's edge of stability        preconditioned
``gd_threshold``        2/η, gradient descent's edge of stability              preconditioned
======================  =====================================================  ==============
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Bound(str, enum.Enum):
    """What a reported value is, relative to the true quantity."""

    EXACT = "exact"  # equal up to floating point
    LOWER = "lower"  # certified: never above the truth
    UPPER = "upper"  # certified: never below the truth
    ESTIMATE = "estimate"  # statistical: see stderr / ci_low / ci_high
    PROB_UPPER = "prob_upper"  # never below the truth except with probability ≤ failure_prob


@dataclass(frozen=True)
class Estimate:
    """One estimated quantity with its error bar and cost.

    Attributes:
        quantity: name from the table in this module's docstring.
        value: the estimate.
        bound: what kind of number ``value`` is.
        stderr: standard error for statistical estimates.
        ci_low, ci_high: confidence interval at level ``confidence``.
        confidence: level of the interval, e.g. 0.95.
        failure_prob: for ``Bound.PROB_UPPER``, the probability (over the estimator's own random
            draws) that ``value`` lies below the truth.
        hvps: Hessian-vector products used (one per probe vector).
        gradients: gradient evaluations used.
        seconds: wall time.
        seed: seed of the generator the estimator drew from.
        method: estimator name, e.g. ``"lanczos"`` or ``"two-phase"``.
        geometry: ``"l2"``, ``"linf"`` or ``"block"`` (empty when not applicable).
        settings: JSON-serializable options the estimator ran with.
        extra: JSON-serializable diagnostics (residuals, iterations, top-k values, ...).
    """

    quantity: str
    value: float
    bound: Bound = Bound.ESTIMATE
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    failure_prob: float | None = None
    hvps: int = 0
    gradients: int = 0
    seconds: float = 0.0
    seed: int | None = None
    method: str = ""
    geometry: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (the bound as its string value)."""
        out = asdict(self)
        out["bound"] = self.bound.value
        return out
