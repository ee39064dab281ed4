"""The exact Hessian operator of a Problem: Hessian-vector products by double backward.

Why double backward: forward-over-reverse (torch.func ``jvp`` of ``jacrev``) returns wrong mixed
second derivatives through ``F.layer_norm`` and training-mode ``F.batch_norm`` in torch 2.13/2.14
(pytorch issues 196700, 196699), so it is not used. Reverse-over-reverse is exact for every op
that has a double backward.

How: for each batch b we build the gradient graph g_b = ∇ℓ_b(θ) once (``create_graph=True``) and
reuse it for every product, H_b·V = ∂(g_b·V)/∂θ, batched over the k probes of a block with
``torch.autograd.grad(..., is_grads_batched=True)``. H·V = Σ_b w_b H_b·V. The graph's inputs are
one leaf per parameter tensor, views of θ: no copy of θ per graph, and every product is written
tensor by tensor into the result, never through a d-long concatenation (at 124M parameters each
of those was a fresh 0.5 GB to page in, per batch and probe).

Memory: a retained gradient graph holds the batch's activations plus what the double backward
needs, roughly 2–4× a training step's activation memory. ``retain_graphs=True`` keeps the graphs
of all batches for the operator's lifetime (fastest: later products skip the forward and first
backward); ``False`` keeps one batch's graph at a time and rebuilds it at every ``matvec`` call
(one extra gradient per batch per call, amortized over the block). ``None`` (default) measures the
first batch's saved tensors and retains all graphs when their total stays under
``graph_memory_limit`` bytes. Probe blocks larger than ``chunk_size`` are split, bounding the
(chunk_size × d) intermediate of the batched backward.
"""

from __future__ import annotations

import warnings

import torch

from smoothprobe.errors import NonFiniteError, quoted
from smoothprobe.linear_operator import CostCounter
from smoothprobe.problem import Problem

DEFAULT_GRAPH_MEMORY_LIMIT = 2 << 30  # bytes of retained gradient graphs (all batches together)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether an autograd RuntimeError is an allocation failure (CPU or CUDA)."""
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _saved_bytes(fn) -> tuple[object, int]:
    """Runs ``fn()`` and returns its result and the bytes of tensors autograd saved meanwhile."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


class HessianOperator:
    """H = ∇²L(θ) of a Problem as an ``Operator`` (exact HVPs on blocks of probes).

    Args:
        problem: the loss.
        theta: point (default: the checkpoint's parameters).
        chunk_size: at most this many probes per batched backward (default: all of a block).
        retain_graphs: keep every batch's gradient graph alive (see the module docstring).
        graph_memory_limit: byte budget for ``retain_graphs=None``.
        shard: evaluate only these batches (with the whole sample's weights), e.g. one rank's
            share in ``DistributedHessianOperator``; default all.

    Attributes:
        d, dtype, device, layout, cost: as in the ``Operator`` protocol.
        retained: whether all batches' graphs are kept.
        graph_bytes: measured saved-tensor bytes of the first batch's gradient graph.
    """

    def __init__(
        self,
        problem: Problem,
        *,
        theta: torch.Tensor | None = None,
        chunk_size: int | None = None,
        retain_graphs: bool | None = None,
        graph_memory_limit: int = DEFAULT_GRAPH_MEMORY_LIMIT,
        shard: list[int] | None = None,
    ):
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        self.problem = problem
        self.theta = (
            (problem.theta if theta is None else theta).detach().to(problem.device, problem.dtype)
        )
        self.d = problem.d
        self.dtype = problem.dtype
        self.device = problem.device
        self.layout = problem.layout
        self.cost = CostCounter()
        self.chunk_size = chunk_size
        self._weights = problem.weights()
        self._graphs: dict[int, tuple[tuple, tuple]] = {}
        self._batched_ok = True
        self._gradient: torch.Tensor | None = None
        self.shard = list(range(len(problem.batches))) if shard is None else list(shard)
        self._spans = [(slot.start, slot.start + slot.numel) for slot in self.layout.slots]
        self._leaves = tuple(  # views of θ: the graphs' inputs, never written
            piece.detach().requires_grad_(True)
            for piece in self.theta.split([slot.numel for slot in self.layout.slots])
        )
        first, self.graph_bytes = _saved_bytes(lambda: self._build(self.shard[0]))
        if retain_graphs is None:
            retain_graphs = self.graph_bytes * len(self.shard) <= graph_memory_limit
        self.retained = bool(retain_graphs) or len(self.shard) == 1
        if self.retained:
            self._graphs[self.shard[0]] = first

    def configure(self, *, retain_graphs: bool, chunk_size: int | None) -> None:
        """Applies a memory plan: keep every batch's graph or one at a time; probe chunk."""
        self.retained = bool(retain_graphs) or len(self.shard) == 1
        if not self.retained:
            self._graphs.clear()
        self.chunk_size = chunk_size

    def _build(self, index: int) -> tuple[tuple, tuple]:
        """Gradient graph of batch ``index``: (the θ leaves, ∇ℓ_b per leaf with create_graph;
        None for a leaf the loss does not use)."""
        loss = self.problem.batch_loss(self._leaves, self.problem.batches[index])
        grads = torch.autograd.grad(loss, self._leaves, create_graph=True, allow_unused=True)
        self.cost.gradients += 1
        if not all(g is None or torch.isfinite(g).all() for g in grads):
            raise NonFiniteError(f"the gradient of batch {index} has NaN or Inf entries")
        return self._leaves, grads

    def _graph(self, index: int) -> tuple[tuple, tuple]:
        if index in self._graphs:
            return self._graphs[index]
        graph = self._build(index)
        if self.retained:
            self._graphs[index] = graph
        return graph

    def _products(
        self, graph: tuple, block: torch.Tensor, dest: torch.Tensor, *, weight: float, add: bool
    ) -> None:
        """``dest`` (k, d) = (or += with ``add``) ``weight`` · H_b·v for each row v of ``block``
        through the graph of batch b."""
        if block.shape[0] > 1 and self._batched_ok:
            try:
                return self._into(graph, block, dest, batched=True, weight=weight, add=add)
            except RuntimeError as exc:  # an op without a batching rule for its double backward
                if _out_of_memory(exc):  # not a missing rule: halve the block and go on
                    half = block.shape[0] // 2
                    self.chunk_size = half
                    warnings.warn(
                        f"a batched HVP of {block.shape[0]} probes ran out of memory; "
                        f"continuing with blocks of {half} (plan a smaller memory budget)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    for rows in (slice(0, half), slice(half, None)):
                        self._products(graph, block[rows], dest[rows], weight=weight, add=add)
                    return None
                self._fall_back(f"the batched backward failed: {quoted(exc)}")
        return self._into(graph, block, dest, batched=False, weight=weight, add=add)

    def _into(
        self,
        graph: tuple,
        block: torch.Tensor,
        dest: torch.Tensor,
        *,
        batched: bool,
        weight: float,
        add: bool,
    ) -> None:
        """``dest`` (+)= ``weight`` · H_b·V by one batched backward, or one backward per row."""
        if batched:
            return self._write(
                self._backward(graph, block, batched=True), dest, weight=weight, add=add
            )
        for v, row in zip(block, dest, strict=True):
            self._write(self._backward(graph, v, batched=False), row, weight=weight, add=add)
        return None

    def _backward(self, graph: tuple, v: torch.Tensor, *, batched: bool) -> list:
        """H_b·v per leaf (None: zero) for one probe (d,) or, ``batched``, a block (k, d)."""
        leaves, grads = graph
        used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not used:
            return [None] * len(leaves)
        parts = torch.autograd.grad(
            [grads[i] for i in used],
            leaves,
            grad_outputs=[v[..., slice(*self._spans[i])] for i in used],
            retain_graph=True,
            is_grads_batched=batched,
            allow_unused=True,
        )
        return list(parts)

    def _write(self, parts: list, dest: torch.Tensor, *, weight: float, add: bool) -> None:
        """Writes per-leaf products into ``dest`` ((d,) or (k, d)), tensor by tensor."""
        for part, span in zip(parts, self._spans, strict=True):
            target = dest[..., slice(*span)]
            if part is None:
                if not add:
                    target.zero_()
            elif add:
                target.add_(part.reshape(target.shape), alpha=weight)
            else:
                torch.mul(part.reshape(target.shape), weight, out=target)

    def _batched_products(self, graph: tuple, block: torch.Tensor) -> torch.Tensor:
        """H_b·V for the rows of ``block`` by one batched backward (what ``check_batched``
        compares with ``_single_products``)."""
        out = torch.empty_like(block)
        self._into(graph, block, out, batched=True, weight=1.0, add=False)
        return out

    def _single_products(self, graph: tuple, block: torch.Tensor) -> torch.Tensor:
        """H_b·V for the rows of ``block``, one backward per row (the reference path)."""
        out = torch.empty_like(block)
        self._into(graph, block, out, batched=False, weight=1.0, add=False)
        return out

    def _fall_back(self, why: str) -> None:
        self._batched_ok = False
        warnings.warn(
            f"batched HVPs are not used for this model ({why}); falling back to one backward "
            "per probe (slower, still exact)",
            RuntimeWarning,
            stacklevel=4,
        )

    def check_batched(self, *, probes: int = 3, seed: int = 0) -> bool:
        """Checks the batched HVP path against single-probe products before it is trusted.

        Draws ``probes`` Gaussian vectors, multiplies them as one batched block and one at a
        time, and requires (i) the two to agree to the summation-order tolerance of the dtype
        and (ii) uᵀ(Hv) = vᵀ(Hu) for the batched products of every pair. On disagreement the
        operator falls back, with a RuntimeWarning naming why, to one backward per probe.
        Costs 2·``probes`` HVPs (counted); with ``chunk_size`` 1 nothing is checked (no block is
        ever batched) and with a smaller ``chunk_size`` the block is that size.

        Returns:
            True when the batched path is used from now on.
        """
        if self.chunk_size is not None:  # the check's block never exceeds the planned one
            probes = min(probes, self.chunk_size)
            if probes < 2:
                return False  # one probe per backward: the batched path is never taken
        if not self._batched_ok or probes < 2:
            return self._batched_ok
        from smoothprobe.estimators._batched_gradients import agreement_tolerance
        from smoothprobe.estimators.sampling import gaussian

        gen = torch.Generator().manual_seed(seed)
        block = gaussian(probes, self.d, generator=gen, dtype=self.dtype, device=self.device)
        graph = self._graph(self.shard[0])
        try:
            batched = self._batched_products(graph, block).to(torch.float64)
        except RuntimeError as exc:
            self._fall_back(f"the batched backward failed: {quoted(exc)}")
            return False
        single = self._single_products(graph, block).to(torch.float64)
        self.cost.hvps += 2 * probes
        tol = agreement_tolerance(self.dtype)
        scale = float(single.norm()) or 1.0
        error = float((batched - single).norm()) / scale
        if not error <= tol:
            self._fall_back(
                f"a batched block of {probes} products differs from single-probe products by "
                f"{error:.1e} (relative), more than the {tol:.0e} that summation order explains"
            )
            return False
        v = block.to(torch.float64)
        pairs = v @ batched.T  # [i, j] = v_iᵀ(H v_j)
        gap = float((pairs - pairs.T).abs().max())
        size = float(v.norm(dim=1).max() * batched.norm(dim=1).max()) or 1.0
        if not gap / size <= tol:
            self._fall_back(
                f"batched products are not symmetric: |uᵀ(Hv) − vᵀ(Hu)| is {gap / size:.1e} "
                f"(relative), more than {tol:.0e}"
            )
            return False
        return True

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """Returns H·v for each row of ``vectors`` ((k, d) or (d,); same shape and dtype out)."""
        single = vectors.ndim == 1
        block = vectors.reshape(1, -1) if single else vectors
        if block.shape[1] != self.d:
            raise ValueError(f"probe vectors have length {block.shape[1]}, expected d={self.d}")
        in_dtype = block.dtype
        block = block.detach().to(self.device, self.dtype)
        k = block.shape[0]
        step = self.chunk_size or k
        # One (k, d) result, written tensor by tensor: the first batch sets it, the others add
        # to it, so a block holds its probes and the result (memory_plan), never a d-long
        # concatenation or a copy of a chunk's products.
        out = torch.empty_like(block)
        for n, index in enumerate(self.shard):
            graph = self._graph(index)
            for start in range(0, k, step):
                rows = slice(start, start + step)
                self._products(
                    graph, block[rows], out[rows], weight=self._weights[index], add=n > 0
                )
            del graph
        self.cost.hvps += k
        out = out.to(in_dtype)
        return out.reshape(-1) if single else out

    def gradient(self) -> torch.Tensor:
        """∇L(θ) (d,), from the gradient graphs when they are retained."""
        if self._gradient is None:
            if self.retained or len(self.shard) < len(self._weights):
                total = torch.zeros_like(self.theta)
                for i in self.shard:
                    parts = [None if g is None else g.detach() for g in self._graph(i)[1]]
                    self._write(parts, total, weight=self._weights[i], add=True)
                self._gradient = total
            else:
                self._gradient = self.problem.gradient(self.theta)
                self.cost.gradients += len(self._weights)
        return self._gradient

    def release(self) -> None:
        """Frees retained graphs (the operator rebuilds them on demand)."""
        self._graphs.clear()
