"""The names of the measured quantities, one Enum (records store the plain string value)."""

from __future__ import annotations

import enum


class Quantity(str, enum.Enum):
    """What a record measured. ``Quantity.L2_NORM == "l2_norm"``, so records keep plain strings.

    ==================  =============================================================  ========
    quantity            meaning (docs/theory.md symbols)                               geometry
    ==================  =============================================================  ========
    ``loss``            L(θ) on the evaluation sample                                  --
    ``lambda_max``      largest eigenvalue of H                                        l2
    ``lambda_min``      smallest eigenvalue of H                                       l2
    ``l2_norm``         L₂ = ‖H‖₂ = max|λ|                                             l2
    ``d_l2``            d·L₂ (the one-block H(Φ))                                      l2
    ``trace``           tr H                                                           l2
    ``frobenius_sq``    ‖H‖_F²                                                         l2
    ``l11_norm``        ‖H‖₁,₁ = Σ|H_ij| (upper bound on H∞)                           linf
    ``linf_lower``      certified lower bound on H∞ = ‖H‖∞→1                           linf
    ``max_row``         max_i ‖H_i,:‖₁ = ‖H‖∞→∞                                        linf
    ``l11_over_dl2``    ‖H‖₁,₁ / (d·L₂): the seed paper's ratio (can exceed 1; NOT ρ)  linf
    ``hinf_lower``      certified lower bound on H∞ (H∞ certificate)                   linf
    ``hinf_upper``      probabilistic upper bound on H∞ (``failure_prob``)             linf
    ``block_upper``     U(Φ) = Σ √(d_b d_b') ‖H_bb'‖₂                                  block
    ``block_lower``     certified lower bound on H(Φ)                                  block
    ``rho_block``       H(Φ) / (d·L₂)                                                  block
    ``graddiff_max``    max_j ‖∇L(θ+δ_j)−∇L(θ)‖_*/‖δ_j‖ (lower bound, ball)            any
    ``graddiff_mean``   mean of those ratios over the direction draws                  any
    ``hvp_ratio_max``   max_j ‖Hv_j‖_*/‖v_j‖, same directions (lower bound)            any
    ``hvp_ratio_mean``  mean of ‖Hv_j‖_*/‖v_j‖                                         any
    ``noise_l1``        ‖σ‖₁, σ² = per-coordinate minibatch-gradient variance          linf
    ``noise_l2_sqrtd``  √d·‖σ‖₂                                                        l2
    ``noise_block``     Σ_b √d_b ‖σ_b‖₂                                                block
    ``snr_l1``          ‖∇L‖₁ / ‖σ‖₁                                                   linf
    ``snr_l2``          ‖∇L‖₂ / ‖σ‖₂                                                   l2
    ``snr_block``       Σ_b √d_b‖∇L_b‖₂ / Σ_b √d_b‖σ_b‖₂                               block
    ``grad_norm``       ‖∇L(θ)‖_* (trajectory)                                         any
    ``step_ratio``      ‖∇L(θ_{t+1})−∇L(θ_t)‖_*/‖θ_{t+1}−θ_t‖ (lower bound)            any
    ``op_lower``        certified lower bound on H_op (polar ascent)                   spectral
    ``op_upper``        Σ c_b c_b'‖H_bb'‖₂ ≥ H_op (c = √r/s, √d_b on ℓ∞)               spectral
    ``op_upper_rl2``    R·L₂ ≥ H_op (L₂'s upper end)                                   spectral
    ``rho_op``          H_op/(R·L₂) = predicted T_Muon/T_SGD                           spectral
    ``muon_adam_ratio`` H_op/(κ·H∞) = predicted T_Muon/T_Adam                          spectral
    ``precond_lambda_max`` λ_max(P⁻¹H), P = diag(√v̂ + ε) from the Adam state          precond
    ``precond_lambda_max_upper`` upper end of λ_max(P⁻¹H) (prob_upper, KW)            precond
    ``precond_lambda_min`` λ_min(P⁻¹H)                                                precond
    ``aeos_threshold``  (2 + 2β₁)/((1 − β₁)η), Adam's edge of stability                precond
    ``gd_threshold``    2/η, gradient descent's edge of stability                      precond
    ``rho``             (old records) ‖H‖₁,₁ / (d·L₂), now ``l11_over_dl2``            linf
    ==================  =============================================================  ========
    """

    LOSS = "loss"
    LAMBDA_MAX = "lambda_max"
    LAMBDA_MIN = "lambda_min"
    L2_NORM = "l2_norm"
    D_L2 = "d_l2"
    TRACE = "trace"
    FROBENIUS_SQ = "frobenius_sq"
    L11_NORM = "l11_norm"
    LINF_LOWER = "linf_lower"
    MAX_ROW = "max_row"
    L11_OVER_DL2 = "l11_over_dl2"
    HINF_LOWER = "hinf_lower"
    HINF_UPPER = "hinf_upper"
    BLOCK_UPPER = "block_upper"
    BLOCK_LOWER = "block_lower"
    RHO_BLOCK = "rho_block"
    GRADDIFF_MAX = "graddiff_max"
    GRADDIFF_MEAN = "graddiff_mean"
    HVP_RATIO_MAX = "hvp_ratio_max"
    HVP_RATIO_MEAN = "hvp_ratio_mean"
    NOISE_L1 = "noise_l1"
    NOISE_L2_SQRTD = "noise_l2_sqrtd"
    NOISE_BLOCK = "noise_block"
    SNR_L1 = "snr_l1"
    SNR_L2 = "snr_l2"
    SNR_BLOCK = "snr_block"
    GRAD_NORM = "grad_norm"
    STEP_RATIO = "step_ratio"
    OP_LOWER = "op_lower"
    OP_UPPER = "op_upper"
    OP_UPPER_RL2 = "op_upper_rl2"
    RHO_OP = "rho_op"
    MUON_ADAM_RATIO = "muon_adam_ratio"
    PRECOND_LAMBDA_MAX = "precond_lambda_max"
    PRECOND_LAMBDA_MAX_UPPER = "precond_lambda_max_upper"
    PRECOND_LAMBDA_MIN = "precond_lambda_min"
    AEOS_THRESHOLD = "aeos_threshold"
    GD_THRESHOLD = "gd_threshold"
    RHO = "rho"
