"""Data-parallel Hessian-vector products over ``torch.distributed`` (launched by ``torchrun``).

Every rank loads the same checkpoint and the same evaluation sample (same seed), evaluates only
its shard of the batches (batch b goes to rank b mod world size; with fewer batches than ranks
the batches are first cut into single examples, ``split_for_ranks``) and all-reduces the weighted
partial products: H·V = Σ_ranks Σ_{b in shard} w_b H_b·V with the weights w_b of the *whole*
sample, so ragged shards give the one-process Hessian. Estimators run the same code on every
rank with the same seeds; the all-reduced products are identical everywhere, so every rank
draws the same probes and takes the same branches. Only rank 0 prints and writes.

Failures: every all-reduce of products is preceded by one of the ranks' failure flags, so a
rank whose shard fails (non-finite gradient, bad data) stops every rank together with one
error; a rank that dies (killed) breaks the connection and the others raise
``DistributedError`` instead of hanging; collectives time out after
``SMOOTHPROBE_DIST_TIMEOUT`` seconds (default 1800).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError

DEFAULT_TIMEOUT_S = 1800.0


class DistributedError(SmoothprobeError):
    """Another rank failed, died or the process group cannot be set up."""


@dataclass(frozen=True)
class DistContext:
    """The process group this process belongs to: its rank and the world size."""

    rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"{name}={raw!r} is not an integer; launch with torchrun") from None


def launched_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not launched by it.

    Raises:
        DistributedError: malformed or inconsistent RANK / WORLD_SIZE.
    """
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    if world is None:
        return 0, 1
    if world < 1:
        raise DistributedError(f"WORLD_SIZE={world}: the world size must be at least 1")
    if rank is None or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is not in 0 … {world - 1} (WORLD_SIZE={world})")
    return rank, world


def init_distributed(device: torch.device) -> DistContext | None:
    """Joins torchrun's process group (gloo on CPU, nccl on CUDA); None in a single process.

    Raises:
        DistributedError: bad environment, or the group cannot be formed in time.
    """
    import torch.distributed as dist

    rank, world = launched_world()
    if world == 1:
        return None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), dist.get_backend())
    timeout = float(os.environ.get("SMOOTHPROBE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if device.type == "cuda":
        local = _env_int("LOCAL_RANK") or 0
        torch.cuda.set_device(device.index if device.index is not None else local)
    try:
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=timeout),
            rank=rank,
            world_size=world,
        )
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"cannot join the process group of {world} ranks: {first}") from None
    return DistContext(rank, world, backend)


def current() -> DistContext | None:
    """The process group in use, or None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return DistContext(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def shard_of(num_batches: int, ctx: DistContext) -> list[int]:
    """Batch indices of this rank (round robin).

    Raises:
        DistributedError: more ranks than batches (a rank would have nothing to do).
    """
    if num_batches < ctx.world_size:
        raise DistributedError(
            f"{ctx.world_size} ranks but only {num_batches} batches in the evaluation sample: "
            f"use at least {ctx.world_size} batches or fewer processes"
        )
    return list(range(ctx.rank, num_batches, ctx.world_size))


def split_for_ranks(problem, world_size: int):
    """The problem with its batches cut into single examples when ranks outnumber batches.

    Each example keeps its share of its batch's weight (by scored tokens, or 1 per example), so
    for a loss that is a mean over tokens or examples the sample's loss, and so its Hessian, is
    unchanged; the split problem's loss is compared with the original's to make sure.

    Raises:
        DistributedError: fewer examples than ranks, or a loss that is not such a mean.
    """
    import copy

    from smoothprobe.batches import Batch, default_weight
    from smoothprobe.estimators._batched_gradients import batch_size_of, slice_batch

    if len(problem.batches) >= world_size:
        return problem
    pieces = []
    for batch in problem.batches:
        n = batch_size_of(batch)
        rows = [
            (
                slice_batch(batch.inputs, slice(i, i + 1)),
                slice_batch(batch.targets, slice(i, i + 1)),
            )
            for i in range(n)
        ]
        shares = [default_weight(t, ignore_index=problem.ignore_index) for _, t in rows]
        total = sum(shares)
        shares = [s / total for s in shares] if total > 0 else [1.0 / n] * n
        pieces += [Batch(x, t, batch.weight * s) for (x, t), s in zip(rows, shares, strict=True)]
    if len(pieces) < world_size:
        raise DistributedError(
            f"{world_size} ranks but only {len(pieces)} examples in the evaluation sample: "
            f"use at least {world_size} examples or fewer processes"
        )
    split = copy.copy(problem)
    split.batches = pieces
    split.total_weight = problem.total_weight
    before, after = problem.loss(), split.loss()
    if abs(after - before) > 1e-5 * max(abs(before), 1e-30):
        raise DistributedError(
            f"{world_size} ranks but {len(problem.batches)} batch(es), and the loss is not a mean "
            f"over examples (split into examples it changes from {before!r} to {after!r}): "
            f"use at least {world_size} batches"
        )
    return split


def agreed(value: float, *, op: str) -> float:
    """``value`` reduced over ranks by ``"min"`` or ``"max"``, so every rank plans alike."""
    import torch.distributed as dist

    buf = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(buf, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.MAX)
    return float(buf.item())


def all_reduce_checked(tensor: torch.Tensor, failed: bool) -> torch.Tensor:
    """Sums ``tensor`` over ranks, in place, once every rank has said whether it failed.

    The failure flags are reduced first, so a rank that failed never sends its (meaningless)
    tensor. The sum runs in float64 one row (last dimension) at a time and is written back in
    ``tensor``'s dtype: a (k, d) block never needs a float64 (k, d) copy.

    Raises:
        DistributedError: a rank reported a failure or the group broke (a rank died).
    """
    import torch.distributed as dist

    flag = torch.tensor([1.0 if failed else 0.0], dtype=torch.float64, device=tensor.device)
    _reduce(flag)
    if flag[0] > 0:
        raise DistributedError(
            f"rank {dist.get_rank()}: {int(flag[0])} other rank(s) failed on their shard "
            "(their error is printed above); stopping"
        )
    for row in tensor.reshape(-1, tensor.shape[-1]) if tensor.ndim else tensor.reshape(1, 1):
        total = row.to(torch.float64)  # the row itself when it is float64 already
        _reduce(total)
        if total is not row:
            row.copy_(total)
    return tensor


def _reduce(buf: torch.Tensor) -> None:
    """All-reduce (sum) in place; a broken group becomes a DistributedError."""
    import torch.distributed as dist

    try:
        dist.all_reduce(buf)
    except RuntimeError as exc:  # DistBackendError and gloo's connection errors subclass it
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {dist.get_rank()}: another rank stopped responding (killed or crashed): {first}"
        ) from None


class DistributedHessianOperator:
    """H·V summed over the shards of every rank (an ``Operator``; see the module docstring).

    Args:
        problem: the loss (the whole evaluation sample; this rank evaluates its shard).
        context: the process group (default: ``current()``).
        theta, chunk_size, retain_graphs: as for ``HessianOperator``.

    Attributes:
        d, dtype, device, layout, cost: as in the ``Operator`` protocol (``cost`` counts the
            products the estimator asked for, not this rank's share).
        local: this rank's ``HessianOperator`` over its shard.
        shard: batch indices of this rank.
    """

    def __init__(self, problem, *, context: DistContext | None = None, theta=None,
                 chunk_size: int | None = None, retain_graphs: bool | None = None):  # fmt: skip
        from smoothprobe.operators import HessianOperator

        self.context = context or current()
        if self.context is None:
            raise DistributedError("no process group: launch with torchrun (or init one first)")
        problem = split_for_ranks(problem, self.context.world_size)
        self.shard = shard_of(len(problem.batches), self.context)
        self.local = self._guarded(
            lambda: HessianOperator(
                problem,
                theta=theta,
                chunk_size=chunk_size,
                retain_graphs=retain_graphs,
                shard=self.shard,
            )  # fmt: skip
        )
        self.problem = problem
        self.d, self.dtype, self.device = problem.d, problem.dtype, problem.device
        self.layout = problem.layout
        self.cost = self.local.cost
        self.graph_bytes = self.local.graph_bytes
        self._gradient: torch.Tensor | None = None

    def _guarded(self, fn):
        """Runs fn; a failure here is announced to every rank before it is raised."""
        try:
            out = fn()
        except Exception:
            try:
                all_reduce_checked(torch.zeros(1), failed=True)
            except DistributedError:
                pass
            raise
        all_reduce_checked(torch.zeros(1), failed=False)
        return out

    @property
    def retained(self) -> bool:
        return self.local.retained

    @property
    def chunk_size(self) -> int | None:
        return self.local.chunk_size

    def configure(self, *, retain_graphs: bool, chunk_size: int | None) -> None:
        self.local.configure(retain_graphs=retain_graphs, chunk_size=chunk_size)

    def check_batched(self, *, probes: int = 3, seed: int = 0) -> bool:
        """This rank's ``HessianOperator.check_batched`` (local; no collective)."""
        return self.local.check_batched(probes=probes, seed=seed)

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """H·V for each row of ``vectors``: local shard products, then a float64 all-reduce."""
        try:
            partial, failed, error = self.local.matvec(vectors), False, None
        except Exception as exc:  # announce, then raise our own error
            partial, failed, error = torch.zeros_like(vectors), True, exc
        try:
            total = all_reduce_checked(partial, failed)
        except DistributedError:
            if error is not None:
                raise error from None
            raise
        return total.to(vectors.dtype)

    def gradient(self) -> torch.Tensor:
        """∇L(θ) (d,), summed over the shards of every rank."""
        if self._gradient is None:
            try:
                local, failed, error = self.local.gradient(), False, None
            except Exception as exc:
                local, failed, error = torch.zeros(self.d, dtype=self.dtype), True, exc
            try:
                local = local.clone()  # summed in place; the local operator keeps its own
                self._gradient = all_reduce_checked(local, failed).to(self.dtype)
            except DistributedError:
                if error is not None:
                    raise error from None
                raise
        return self._gradient

    def release(self) -> None:
        self.local.release()
