"""Small helpers shared by the ℓ∞ estimators: generators, option checks, intervals, unit probes."""

from __future__ import annotations

import math

import torch
from scipy import stats

from smoothprobe.errors import SmoothprobeError


def check_int(name: str, value: int, *, minimum: int) -> int:
    """Returns ``value`` when it is an int ≥ minimum.

    Raises:
        SmoothprobeError: otherwise, naming the option.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SmoothprobeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_confidence(confidence: float) -> float:
    """Returns ``confidence`` when it lies strictly between 0 and 1.

    Raises:
        SmoothprobeError: otherwise.
    """
    if not (isinstance(confidence, (int, float)) and 0.0 < float(confidence) < 1.0):
        raise SmoothprobeError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence!r}")
    return float(confidence)


def t_interval(
    center: float, stderr: float | None, dof: float | None, confidence: float
) -> tuple[float | None, float | None]:
    """Two-sided Student-t interval ``center ± t_{dof}·stderr``.

    Args:
        center: point estimate.
        stderr: standard error; 0 gives the degenerate interval, None gives (None, None).
        dof: degrees of freedom (None or inf: normal quantile).
        confidence: level, e.g. 0.95.

    Returns:
        (low, high), or (None, None) when no error bar is available.
    """
    if stderr is None or not math.isfinite(stderr):
        return None, None
    alpha = 1.0 - confidence
    if dof is None or not math.isfinite(dof):
        q = float(stats.norm.ppf(1.0 - alpha / 2))
    else:
        q = float(stats.t.ppf(1.0 - alpha / 2, max(dof, 1.0)))
    return center - q * stderr, center + q * stderr


def unit_block(indices: torch.Tensor, operator) -> torch.Tensor:
    """Returns the (n, d) block of unit vectors e_j, j in ``indices``, on the operator's device."""
    n = int(indices.numel())
    block = torch.zeros(n, operator.d, dtype=operator.dtype, device=operator.device)
    block[torch.arange(n, device=operator.device), indices.to(operator.device)] = 1
    return block


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """Splits ``range(total)`` into consecutive (start, stop) pairs of at most ``size``."""
    return [(s, min(total, s + size)) for s in range(0, total, size)]
