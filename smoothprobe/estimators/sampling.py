"""What every estimator shares: the generator rule, random probes, option checks, intervals.

Every estimator draws from a caller-owned ``torch.Generator`` (never the global RNG), validates
its options here (so every message reads the same) and turns iid samples into a mean with a
standard error and a Student-t confidence interval (:func:`t_interval`, the one place a quantile
is taken).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass
from typing import TypeVar

import torch

from smoothprobe.errors import SmoothprobeError

DEFAULT_SEED = 0

E = TypeVar("E", bound=enum.Enum)


def resolve_generator(generator: torch.Generator | int | None) -> tuple[torch.Generator, int]:
    """Returns a generator and the seed it was created from; never touches the global RNG.

    Args:
        generator: a ``torch.Generator`` (used as is, so its state advances), an int seed (a
            fresh CPU generator is seeded with it) or None (``DEFAULT_SEED``: reproducible).

    Returns:
        (generator, seed).

    Raises:
        SmoothprobeError: when ``generator`` is neither.
    """
    if generator is None:
        generator = DEFAULT_SEED
    if isinstance(generator, torch.Generator):
        return generator, int(generator.initial_seed())
    if isinstance(generator, int) and not isinstance(generator, bool):
        if generator < 0:
            raise SmoothprobeError(f"a seed must be a non-negative integer, got {generator}")
        return torch.Generator(device="cpu").manual_seed(generator), generator
    raise SmoothprobeError(
        f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}"
    )


def derived_seed(seed: int, name: str) -> int:
    """A seed that depends only on ``seed`` and ``name`` (stable across runs and platforms).

    Gives each estimator of a run its own random stream, so what one draws never depends on
    which others ran before it.
    """
    digest = hashlib.sha256(f"{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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


def check_choice(name: str, value: str | E, choices: type[E]) -> E:
    """Returns the member of the str-valued Enum ``choices`` that ``value`` names.

    Raises:
        SmoothprobeError: an unknown value, listing the valid ones.
    """
    try:
        return choices(value)
    except ValueError:
        names = ", ".join(repr(c.value) for c in choices)
        raise SmoothprobeError(f"unknown {name} {value!r}; use one of {names}") from None


def rademacher(
    *shape: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Returns a tensor of the given shape with independent ±1 entries."""
    bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return (2 * bits - 1).to(device=device, dtype=dtype)


def gaussian(
    *shape: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Returns a tensor of the given shape with iid standard normal entries (drawn in float64)."""
    x = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return x.to(device=device, dtype=dtype)


def cauchy(*shape: int, generator: torch.Generator) -> torch.Tensor:
    """Returns a float64 tensor of iid standard Cauchy entries on the generator's device
    (``cauchy_into`` a new tensor)."""
    out = torch.empty(shape, dtype=torch.float64, device=generator.device)
    return cauchy_into(out, generator=generator)


def cauchy_into(out: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Fills ``out`` (any float dtype and device) with iid standard Cauchy entries, row by row
    through one float64 row, and returns it.

    Each row is tan(π(u − ½)) of the generator's uniform draws: the formula and stream of
    ``Tensor.cauchy_`` (equal to it up to one ulp), but only the draw is serial and the tangent
    runs on every thread, and no float64 copy of the whole block is made: at 124M parameters,
    into a kept block of 4, 2.0 s per probe on 2 cores against 6.4 s for ``cauchy_`` into a
    fresh block (bench/linf_overhead.py; on a GPU that draw was most of an ℓ∞ probe's time).
    """
    rows = out.reshape(-1, out.shape[-1]) if out.ndim > 1 else out.reshape(1, -1)
    row = torch.empty(rows.shape[1], dtype=torch.float64, device=generator.device)
    for target in rows:
        target.copy_(row.uniform_(generator=generator).sub_(0.5).mul_(math.pi).tan_())
    return out


def unit_block(indices: torch.Tensor, operator) -> torch.Tensor:
    """Returns the (n, d) block of unit vectors e_j, j in ``indices``, on the operator's device."""
    n = int(indices.numel())
    block = torch.zeros(n, operator.d, dtype=operator.dtype, device=operator.device)
    block[torch.arange(n, device=operator.device), indices.to(operator.device)] = 1
    return block


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """Splits ``range(total)`` into consecutive (start, stop) pairs of at most ``size``."""
    return [(s, min(total, s + size)) for s in range(0, total, size)]


def quantile(level: float, dof: float | None = None) -> float:
    """The ``level`` quantile of Student's t with ``dof`` degrees of freedom (None/inf: normal)."""
    from scipy import stats  # heavy; only when an interval is formed

    if dof is None or not math.isfinite(dof):
        return float(stats.norm.ppf(level))
    return float(stats.t.ppf(level, max(float(dof), 1.0)))


def t_interval(
    center: float, stderr: float | None, dof: float | None, confidence: float
) -> tuple[float | None, float | None]:
    """Two-sided Student-t interval ``center ± t_{dof}·stderr``, equal-tailed.

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
    half = quantile(0.5 + confidence / 2.0, dof) * stderr
    return center - half, center + half


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
    confidence = check_confidence(confidence)
    x = samples.detach().to(torch.float64).reshape(-1)
    mean = float(x.mean())
    stderr = float(x.std(unbiased=True)) / math.sqrt(n)
    low, high = t_interval(mean, stderr, n - 1, confidence)
    return SampleMean(mean, stderr, low, high, confidence, n)
