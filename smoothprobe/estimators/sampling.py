"""Random probes and sample statistics shared by the stochastic estimators.

Every estimator draws from a caller-owned ``torch.Generator`` (never the global RNG) and turns
iid samples into a mean with a standard error and a Student-t confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats

from smoothprobe.errors import SmoothprobeError


def resolve_generator(generator: torch.Generator | int | None) -> tuple[torch.Generator, int]:
    """Returns a generator and the seed it was created from; never touches the global RNG.

    Args:
        generator: a ``torch.Generator`` (used as is, so its state advances), an int seed (a
            fresh CPU generator is seeded with it) or None (seed 0: reproducible by default).

    Returns:
        (generator, seed).

    Raises:
        SmoothprobeError: when ``generator`` is neither.
    """
    if generator is None:
        generator = 0
    if isinstance(generator, torch.Generator):
        return generator, int(generator.initial_seed())
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator(device="cpu").manual_seed(generator), generator
    raise SmoothprobeError(
        f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}"
    )


def rademacher(
    k: int,
    d: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Returns a (k, d) block of independent ±1 entries.

    Args:
        k: number of probes.
        d: dimension.
        generator: source of randomness (drawn on the generator's device).
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        (k, d) tensor.
    """
    bits = torch.randint(0, 2, (k, d), generator=generator, device=generator.device)
    return (2 * bits - 1).to(device=device, dtype=dtype)


def gaussian(
    d: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Returns one (d,) standard normal vector drawn from ``generator``."""
    return torch.randn(d, generator=generator, dtype=torch.float64, device=generator.device).to(
        device=device, dtype=dtype
    )


@dataclass(frozen=True)
class SampleMean:
    """Mean of iid samples with its standard error and a Student-t interval.

    Attributes:
        mean: sample mean.
        stderr: sample standard deviation / √n.
        ci_low, ci_high: mean ∓ t_{(1+confidence)/2, n−1} · stderr.
        confidence: level of the interval.
        n: number of samples.
    """

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int


def sample_mean(samples: torch.Tensor, *, confidence: float = 0.95) -> SampleMean:
    """Summarizes iid samples as a mean with a Student-t confidence interval.

    Args:
        samples: (n,) tensor of iid samples, n ≥ 2.
        confidence: interval level in (0, 1).

    Returns:
        The summary.

    Raises:
        SmoothprobeError: fewer than two samples or a confidence outside (0, 1).
    """
    n = int(samples.numel())
    if n < 2:
        raise SmoothprobeError(f"a standard error needs at least 2 probes, got {n}")
    if not 0.0 < confidence < 1.0:
        raise SmoothprobeError(f"confidence must be in (0, 1), got {confidence}")
    x = samples.detach().to(torch.float64).reshape(-1)
    mean = float(x.mean())
    stderr = float(x.std(unbiased=True)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * stderr
    return SampleMean(mean, stderr, mean - half, mean + half, confidence, n)
