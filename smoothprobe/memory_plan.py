"""Plan a run's memory before it starts: probe blocks, retained graphs, Lanczos basis, sketches.

Every object of a measurement that grows with d is sized here from one byte budget, so a
124M-parameter model fits a workstation and a tiny model keeps the fastest settings. The
sizes (bytes, d = parameters, s = bytes per compute element):

- fixed: model parameters and the point θ (2·d·s), a handful of float64 work vectors (6·8·d);
- one batch's gradient graph (measured: saved tensors of the first batch, ``graph``), all
  batches' when retained;
- per probe of a block: its input and output (2·d·s) plus the double backward's transient,
  taken as ``TRANSIENT_PER_PROBE`` × graph (measured on GPT-2-small: 0.5–0.7);
- the Lanczos basis: rows × d × (8 or 4) (``krylov_store``);
- the (1,1)-norm sketch (exact Cauchy quantiles hold k·d float32 values) and its row sums;
- gradient differences: ~5 float64 d-vectors per direction, streamed in chunks of what fits;
  gradient noise: (2 + 2·groups)·d float64.

``plan_memory`` chooses, in order: retain graphs if all fit in a third of what is left after the
fixed part; the largest probe block (≤ 32) that fits in a third (one probe at a time when a
graph exceeds ``SINGLE_PROBE_GRAPH``, where batching only adds memory traffic); when graphs are
rebuilt at every operator call, how many probes (≤ ``REBUILD_BLOCK``) an estimator hands over
at once, so one rebuild serves them all (each holds its input and output, 2·d·s; one chunk's
products are counted too, though products are now written into the result tensor by tensor
without a d-long temporary, so that part is slack); Lanczos basis
rows (float64 while at least 2·``MIN_BASIS`` fit, then float32) in what remains, at least
top_k + 3 rows, leaving ``HEADROOM`` of the budget free; the rest bounds the sketches. It
raises ``MemoryBudgetError`` with one line when even the smallest plan does not fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from smoothprobe.errors import SmoothprobeError

GIB = 1 << 30
TRANSIENT_PER_PROBE = 1.0  # × one batch's graph bytes, per probe in a batched double backward
# × graph bytes for one probe through a plain double backward: GPT-2-small peaked at 6.2 GiB for
# one product through its 3.2 GiB graph, ≈ 0.25 × graph above the model, graph and vectors
SINGLE_TRANSIENT = 0.35
MIN_BASIS = 8  # Lanczos rows preferred (float32 before fewer); thick restart needs only top_k + 3
MAX_BLOCK = 32
# Above this graph size one probe's double backward already runs large matrix products, and a
# batched block only adds memory traffic: on GPT-2-small (3.2 GiB graph, 2 CPU cores) blocks of 2
# cost 10.3 s per probe against 6.9 s one at a time (bench/scale.py).
SINGLE_PROBE_GRAPH = 1 << 30
# Probes per operator call when every call rebuilds the graphs, so that one rebuild serves them
# all. GPT-2-small, 4 × 128 tokens per batch: on 2 batches in a fresh process (rebuilds fault in
# fresh memory) 48-54 s for one probe, 28.5 s per probe in blocks of 4; on the 4-batch sample in
# a long run, 51-57 s per ℓ∞ probe in blocks of 4 against 63 s per Lanczos HVP (one rebuild each)
REBUILD_BLOCK = 8
DEFAULT_FRACTION = 0.7  # of the memory this process could use (a 124M model at batch 4 needs 0.6)
HEADROOM = 0.1  # of the budget the basis never fills: what the plan does not model (allocator, ...)
MAX_ASCENT_RESTARTS = 8  # the ℓ∞ suite's default
WORK_VECTORS = 4  # float64 d-vectors alive in any estimator at once (w, q, Hq, next q)
GRADDIFF_ARRAYS = 5  # float64 d-vectors per gradient-difference direction alive at once
# A blockwise sketch holds its BLOCK_SKETCH_PROBES images H·Q (compute-dtype d-vectors) and
# the float64 factors Q on the widest block column, besides the one probe and product the
# plan counts anyway; the partition's labels and block order are two int64 d-vectors
# (estimators.blockwise_columns; before it streamed it was OOM-killed at 23 GiB on GPT-2-small)
BLOCK_SKETCH_PROBES = 4  # suites.blockwise.measure_blockwise's sketch
PARTITION_BYTES = 16  # per coordinate


class MemoryBudgetError(SmoothprobeError):
    """The run cannot fit the memory it was given."""


@dataclass(frozen=True)
class MemoryPlan:
    """How a run uses its byte budget (all sizes in bytes).

    Attributes:
        budget: the budget.
        fixed: parameters, θ and work vectors.
        graph: one batch's retained gradient graph (measured).
        retain_graphs: whether all batches' graphs stay alive.
        chunk_size: probes per batched backward.
        block: probes an estimator hands the operator at once: ``chunk_size`` when graphs are
            retained; when they are rebuilt at every call, as many as fit (≤ ``REBUILD_BLOCK``),
            so one rebuild serves the whole block.
        basis_rows, basis_dtype: Lanczos basis (rows × d in that dtype).
        sketch: bytes the (1,1)-norm estimators may hold (exact Cauchy quantiles).
        ascent_restarts: random starts of the ℓ∞ sign ascent (its block of starts, their
            images and signs, and a float64 reduction, all × d, live at once).
        hinf_hvps: HVP budget of the H∞ bracket that fits (0: skipped or not requested).
        hinf_skipped: why a requested H∞ bracket is skipped ("" when it runs).
        graddiff_samples: gradient-difference directions alive at once (they stream in chunks
            of this size; 0: not requested).
        noise_groups: jackknife groups of gradient noise that fit (0: not requested).
        peak: planned peak of the largest phase.
    """

    budget: int
    fixed: int
    graph: int
    retain_graphs: bool
    chunk_size: int
    basis_rows: int
    basis_dtype: str
    sketch: int
    ascent_restarts: int
    graddiff_samples: int
    noise_groups: int
    peak: int
    hinf_hvps: int = 0
    hinf_skipped: str = ""
    blockwise: int = 0
    block: int = 0

    def summary(self) -> str:
        """One line for the run header (the phases that were planned)."""
        g = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
        parts = [
            f"memory plan: budget {g(self.budget)}",
            f"fixed {g(self.fixed)}",
            f"gradient graph {g(self.graph)}/batch, "
            + ("all retained" if self.retain_graphs else "one at a time"),
            f"probe blocks of {self.chunk_size}"
            if self.block <= self.chunk_size
            else f"probe blocks of {self.block} per rebuild, {self.chunk_size} per backward",
        ]
        if self.basis_rows:
            parts.append(f"Lanczos basis {self.basis_rows} rows {self.basis_dtype}")
        parts.append(
            f"(1,1) sketch ≤ {g(self.sketch)}; sign ascent {self.ascent_restarts} restarts"
        )
        if self.blockwise:
            parts.append(f"blockwise sketch {g(self.blockwise)}")
        if self.graddiff_samples:
            parts.append(f"gradient differences {self.graddiff_samples} directions at a time")
        if self.noise_groups:
            parts.append(f"gradient noise {self.noise_groups} jackknife groups")
        parts.append(f"planned peak {g(self.peak)}")
        return "; ".join(parts + ([self.hinf_skipped] if self.hinf_skipped else []))

    def to_dict(self) -> dict:
        return asdict(self)


def plan_memory(
    *,
    budget: int,
    d: int,
    element_bytes: int,
    graph_bytes: int,
    num_batches: int,
    lanczos_steps: int,
    graddiff_samples: int = 0,
    noise_groups: int = 0,
    retain_graphs: bool | None = None,
    chunk_size: int | None = None,
    top_k: int = 1,
    hinf_hvps: int = 0,
    largest_block: int = 0,
) -> MemoryPlan:
    """Sizes every d-proportional object of a run to ``budget`` bytes (see the module doc).

    Args:
        budget: bytes the run may use.
        d: parameters.
        element_bytes: bytes per element of the compute dtype.
        graph_bytes: saved-tensor bytes of one batch's gradient graph.
        num_batches: batches of the evaluation sample.
        lanczos_steps: the Lanczos HVP budget (the basis never needs more rows).
        graddiff_samples: directions of gradient differences asked for (0: off); the plan keeps
            as many alive at once as fit.
        noise_groups: jackknife groups of gradient noise (0: off).
        retain_graphs, chunk_size: the user's choice, kept when given (checked against the
            budget).
        top_k: eigenvalues Lanczos tracks at each end (its thick restart needs top_k + 3 rows).
        hinf_hvps: HVP budget of the H∞ bracket (0: off). Its certificate keeps a full Lanczos
            basis of hinf_hvps/2 rows of 2d float64 and its factor 4 × rank 4 rows of d; when
            that does not fit, the bracket is skipped and ``hinf_skipped`` says why.
        largest_block: coordinates in the widest block of the partitions blockwise H(Φ) is
            asked for (0: none); its sketch holds ``BLOCK_SKETCH_PROBES`` images and float64
            factors of that width, next to the partition itself.

    Raises:
        MemoryBudgetError: when even one probe, one graph and top_k + 3 float32 basis rows do
            not fit; the message names the smallest budget that would.
    """
    vec = d * element_bytes
    fixed = 2 * vec + WORK_VECTORS * 8 * d
    per_probe = 2 * vec + int(TRANSIENT_PER_PROBE * graph_bytes)  # in a batched block
    single = 2 * vec + int(SINGLE_TRANSIENT * graph_bytes)  # one probe per backward
    min_rows = min(top_k + 3, max(lanczos_steps, 1))
    smallest = fixed + graph_bytes + single + min_rows * 4 * d
    if smallest > budget:
        raise MemoryBudgetError(
            f"a run on this model needs at least {smallest / GIB:.1f} GiB "
            f"(parameters, one gradient graph of {graph_bytes / GIB:.1f} GiB, one probe, "
            f"{min_rows} Lanczos rows) but the memory budget is {budget / GIB:.1f} GiB: "
            "raise the budget, or use a smaller batch or block size",
            option="memory",
        )
    left = budget - fixed
    all_graphs = graph_bytes * num_batches
    if retain_graphs is None:
        retain_graphs = num_batches == 1 or all_graphs <= left / 3
    graphs = all_graphs if retain_graphs else graph_bytes
    if graphs + single + min_rows * 4 * d > left:
        raise MemoryBudgetError(
            f"retaining {num_batches} gradient graphs ({all_graphs / GIB:.1f} GiB) does not fit "
            f"the memory budget of {budget / GIB:.1f} GiB: let graphs be rebuilt instead",
            option="retain_graphs",
        )
    left -= graphs
    if chunk_size is None and graph_bytes > SINGLE_PROBE_GRAPH:
        chunk_size = 1
    elif chunk_size is None:  # a third of what the smallest basis leaves
        chunk_size = int(max(1, min(MAX_BLOCK, ((left - min_rows * 4 * d) // 3) // per_probe)))
    probes = single if chunk_size == 1 else chunk_size * per_probe
    if probes + min_rows * 4 * d > left:
        raise MemoryBudgetError(
            f"probe blocks of {chunk_size} need {probes / GIB:.1f} GiB, more than the "
            f"{(left - min_rows * 4 * d) / GIB:.1f} GiB the memory budget leaves: "
            "use smaller blocks",
            option="chunk_size",
        )
    after_probes = left - probes
    spare = max(0, after_probes - int(HEADROOM * budget))  # the basis leaves the headroom free
    rows = min(lanczos_steps, spare // (8 * d))
    dtype = "float64"
    if rows < min(lanczos_steps, 2 * MIN_BASIS):
        rows, dtype = min(lanczos_steps, spare // (4 * d)), "float32"
    rows = int(max(min_rows, rows)) if lanczos_steps else 0
    basis = rows * (8 if dtype == "float64" else 4) * d
    blockwise_need = blockwise_bytes(largest_block, d=d, element_bytes=element_bytes)
    block, block_bytes = chunk_size, 0
    if not retain_graphs:  # every call rebuilds the graphs: one rebuild serves a whole block
        room = after_probes - int(HEADROOM * budget) - blockwise_need
        block = int(max(chunk_size, min(REBUILD_BLOCK, (room - chunk_size * vec) // (2 * vec))))
        if block > chunk_size:  # its inputs and result, and one chunk's products on the way
            block_bytes = (2 * block + chunk_size) * vec - 2 * chunk_size * vec
    sketch = int(max(0, after_probes - block_bytes))  # phases run one after another
    per_start = d * (3 * element_bytes + 8)  # start, image, signs + the float64 row sums
    ascent = int(max(1, min(MAX_ASCENT_RESTARTS, left // (2 * per_start) - 1)))
    per_direction = GRADDIFF_ARRAYS * 8 * d
    if graddiff_samples:  # directions stream in chunks of what fits (one at least)
        if per_direction > left:
            raise MemoryBudgetError(
                f"gradient differences need {per_direction / GIB:.1f} GiB per direction for "
                f"this model, more than the {left / GIB:.1f} GiB the memory budget leaves: "
                "raise the budget, or use a smaller batch or block size"
            )
        graddiff_samples = int(min(graddiff_samples, left // per_direction))
    graddiff_need = graddiff_samples * per_direction
    noise_need = (2 + 2 * noise_groups) * 8 * d if noise_groups else 0  # estimators.noise
    if noise_need > left:
        raise MemoryBudgetError(
            f"gradient noise needs {noise_need / GIB:.1f} GiB for this model, more than the "
            f"{left / GIB:.1f} GiB the memory budget leaves: use fewer groups"
        )
    ascent_need = (ascent + 1) * per_start
    if blockwise_need > left - probes:
        raise MemoryBudgetError(
            f"blockwise H(Φ) needs {(blockwise_need + probes) / GIB:.1f} GiB for its sketches "
            f"and products at this size, more than the {left / GIB:.1f} GiB the memory budget "
            "leaves: raise the budget, or measure blocks with a smaller batch or model"
        )
    hinf_need, hinf_skipped = hinf_bytes(hinf_hvps, d), ""
    if hinf_need > left:
        hinf_skipped = (
            f"H∞ bracket skipped: at {hinf_hvps} HVPs its certificate needs "
            f"{hinf_need / GIB:,.0f} GiB, the budget leaves {left / GIB:.1f} GiB"
        )
        hinf_hvps, hinf_need = 0, 0
    peak = (
        fixed
        + graphs
        + max(
            probes + basis,
            probes + block_bytes,
            ascent_need,
            graddiff_need,
            noise_need,
            hinf_need,
            blockwise_need + probes + block_bytes,
        )
    )
    return MemoryPlan(
        budget=int(budget),
        fixed=int(fixed),
        graph=int(graph_bytes),
        retain_graphs=bool(retain_graphs),
        chunk_size=int(chunk_size),
        basis_rows=rows,
        basis_dtype=dtype,
        sketch=sketch,
        ascent_restarts=ascent,
        graddiff_samples=graddiff_samples,
        noise_groups=noise_groups,
        peak=int(peak),
        hinf_hvps=int(hinf_hvps),
        hinf_skipped=hinf_skipped,
        blockwise=int(blockwise_need),
        block=int(block),
    )


def blockwise_bytes(largest_block: int, *, d: int, element_bytes: int) -> int:
    """Bytes a blockwise sketch holds for its widest block column (0: no blockwise phase):
    ``BLOCK_SKETCH_PROBES`` images and float64 factors of that width, and the partition."""
    if not largest_block:
        return 0
    return BLOCK_SKETCH_PROBES * (d * element_bytes + 8 * largest_block) + PARTITION_BYTES * d


def hinf_bytes(hinf_hvps: int, d: int) -> int:
    """Bytes the H∞ bracket holds at ``hinf_hvps`` HVPs: the certificate's Lanczos basis
    (hinf_hvps/2 + 1 rows of 2d float64) or the rank-4 factor's 16 float64 d-rows."""
    if not hinf_hvps:
        return 0
    return max((hinf_hvps // 2 + 1) * 2 * 8 * d, 16 * 8 * d)


def default_budget(fraction: float = DEFAULT_FRACTION, *, device=None) -> int:
    """``fraction`` of the memory this process could use on ``device`` (None: the host).

    Host: what psutil reports available plus what the process already holds (the model and first
    gradient graph the plan counts), shared by the processes torchrun started on this machine
    (``LOCAL_WORLD_SIZE``). CUDA: the device's free memory plus what this process's allocator
    already reserved there (every rank has a device of its own)."""
    import os

    if device is not None and str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(fraction * (free + torch.cuda.memory_reserved(device)))
    import psutil

    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        local = 1
    usable = psutil.virtual_memory().available / local + psutil.Process().memory_info().rss
    return int(fraction * usable)


def parse_memory(text: str, *, device=None) -> int:
    """Parses ``16GiB``, ``800MB``, ``12G``, ``0.5`` (a fraction of the memory available on
    ``device``, None: the host) to bytes.

    Raises:
        SmoothprobeError: an unreadable value.
    """
    raw = str(text).strip()
    units = {"tib": 1 << 40, "gib": GIB, "mib": 1 << 20, "kib": 1 << 10,
             "tb": 10**12, "gb": 10**9, "mb": 10**6, "kb": 10**3,
             "t": 1 << 40, "g": GIB, "m": 1 << 20, "k": 1 << 10, "b": 1}  # fmt: skip
    low = raw.lower()
    unit = next((u for u in units if low.endswith(u)), None)
    number = low[: -len(unit)].strip() if unit else low
    factor = units[unit] if unit else None
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if factor is None and 0 < value <= 1:
        return default_budget(value, device=device)
    if factor is None or value <= 0:
        raise SmoothprobeError(
            f"memory budget {raw!r} is not a size: use e.g. 16GiB, 800MiB or a fraction like 0.5"
        )
    return int(value * factor)
