"""The blockwise suite: H(Φ) bracketed by a certified lower bound and U(Φ), and ρ(Φ).

ρ(Φ) (``rho_block``) is formed by ``smoothprobe.compare.brackets``, the one place ρ is computed.

Example:
    >>> import torch
    >>> from smoothprobe import DenseOperator, ParameterLayout
    >>> from smoothprobe.partitions import per_tensor
    >>> layout = ParameterLayout.from_shapes([("a", (2,)), ("b", (3,))])
    >>> op = DenseOperator(torch.eye(5, dtype=torch.float64), layout=layout)
    >>> result = measure_blockwise(op, per_tensor(layout), l2_norm=1.0)
    >>> [e.quantity for e in result.estimates()]
    ['block_upper', 'block_lower', 'rho_block']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from smoothprobe.compare.brackets import rho_block_estimate
from smoothprobe.errors import SmoothprobeError
from smoothprobe.estimate import Estimate
from smoothprobe.estimators.blockwise import (
    BlockLowerResult,
    BlockUpperResult,
    block_lower_bound,
    block_upper_bound,
)
from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint
from smoothprobe.estimators.sampling import resolve_generator
from smoothprobe.linear_operator import Operator, as_operator
from smoothprobe.partitions import Partition


@dataclass(frozen=True)
class BlockwiseResult:
    """What one blockwise measurement produced.

    Attributes:
        items: ``block_upper``, ``block_lower`` (and ``rho_block`` with L₂).
        upper, lower: the two estimators' full results (per-block norms, ascent point).
    """

    items: tuple[Estimate, ...]
    upper: BlockUpperResult
    lower: BlockLowerResult

    def estimates(self) -> list[Estimate]:
        """The Estimates, in the order of ``items``."""
        return list(self.items)


def with_block_names(estimate: Estimate, partition: Partition) -> Estimate:
    """Adds ``extra["block_names"]`` (the partition's names) when the contribution matrix is there.

    The names label the rows/columns of ``extra["contributions"]`` (the report's heatmap).
    """
    if "contributions" not in estimate.extra:
        return estimate
    names = [str(partition.block_names[b]) for b in range(partition.num_blocks)]
    return dataclasses.replace(estimate, extra={**estimate.extra, "block_names": names})


def measure_blockwise(
    operator: Operator,
    partition: Partition,
    *,
    max_hvps: int | None = None,
    upper_method: str = "auto",
    sketch: int = 4,
    power_iterations: int = 2,
    frobenius_probes: int = 32,
    restarts: int = 8,
    iterations: int = 100,
    generator: torch.Generator | int | None = None,
    l2_norm: float | Estimate | None = None,
    chunk_size: int = 64,
    checkpoint: LoopCheckpoint | None = None,
) -> BlockwiseResult:
    """Measures H(Φ) for one partition: ``block_upper``, ``block_lower`` and ``rho_block``.

    Args:
        operator: H, or anything ``as_operator`` accepts (a ``RotatedOperator`` records its
            basis in the settings).
        partition: Φ, built from the operator's layout.
        max_hvps: total HVP budget; the ascent takes up to restarts × iterations + 1, the upper
            bound the rest (its ``auto`` method picks exact, sketch or row-frobenius to fit).
            None: the ascent as asked and U(Φ) within ``DEFAULT_MAX_HVPS``.
        upper_method: ``auto``, ``exact``, ``sketch`` or ``row-frobenius``.
        sketch: probes per wide block column (sketch).
        power_iterations: power steps per wide block column (sketch).
        frobenius_probes: probes of the row-frobenius bound.
        restarts: ascent restarts (batched).
        iterations: maximum ascent steps.
        generator: torch.Generator or seed (None: seed 0).
        l2_norm: L₂ = ‖H‖₂ (float taken as exact, or an Estimate); adds ``rho_block``.
        chunk_size: probes per ``matvec`` call.
        checkpoint: saves both bounds as they go and resumes a rerun where it stopped (the
            block columns done, the ascent between steps; ``loop_checkpoint``).

    Returns:
        ``BlockwiseResult``: ``.estimates()`` are block_upper, block_lower (+ rho_block),
        geometry ``"block"``, settings with the partition (and basis) name.

    Raises:
        SmoothprobeError: budget smaller than the ascent, d mismatch, bad options.
    """
    operator = as_operator(operator)
    gen, _ = resolve_generator(generator)
    upper_budget = None
    if max_hvps is not None:
        upper_budget = max_hvps - restarts * iterations - 1  # the ascent's check: one HVP
        if upper_budget < 1:
            raise SmoothprobeError(
                f"max_hvps={max_hvps} leaves nothing for U(Φ) after "
                f"{restarts}×{iterations} + 1 ascent HVPs; raise it or lower "
                "restarts/iterations"
            )
    settings = {"partition": partition.name, "blocks": partition.num_blocks}
    basis = getattr(operator, "basis", None)
    if basis is not None:
        settings["basis"] = basis.name
    upper = block_upper_bound(
        operator,
        partition,
        method=upper_method,
        max_hvps=upper_budget,
        sketch=sketch,
        iterations=power_iterations,
        frobenius_probes=frobenius_probes,
        generator=gen,
        chunk_size=chunk_size,
        checkpoint=checkpoint,
    )
    lower = block_lower_bound(
        operator,
        partition,
        restarts=restarts,
        iterations=iterations,
        generator=gen,
        chunk_size=chunk_size,
        checkpoint=checkpoint,
    )
    out = [
        with_block_names(upper.estimate(settings=settings), partition),
        lower.estimate(settings=settings),
    ]
    if l2_norm is not None:
        out.append(rho_block_estimate(out[0], out[1], l2_norm, d=operator.d))
    return BlockwiseResult(tuple(out), upper, lower)
