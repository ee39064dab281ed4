"""ℓ2 benchmark: smoothprobe's Lanczos against PyHessian, hessian-eigenthings and curvlinops.

For each workload (the trained example models of ``smoothprobe.examples``: an MLP, a CNN with
BatchNorm, a tiny GPT with LayerNorm and tied embeddings) and one fixed batch (the example's whole
evaluation sample as a single batch, float64, evaluation mode) it measures, for every method, the
HVPs and the wall time needed to return λ_max within ``--target`` (default 1e-4) relative error of
the reference value, and prints the ratios anchor / smoothprobe.

How each method is run (all float64, one thread, same model, same batch):

- ``smoothprobe``: ``lanczos(op, tol=target, which="largest", criterion="gap",
  start=mixed_start(op.gradient()))`` — starts from gradient + random (the gradient comes free
  with the retained gradient graph) and stops on its own Kato–Temple error estimate.
  ``smoothprobe-res``: the same with ``criterion="residual"`` (stops when the Ritz residual, a
  bound on the error, is ≤ target·|θ|); ``smoothprobe-rand``: gap criterion, random start (the
  anchors' start). No tuning against the reference.
- ``eigenthings``: ``hessian_eigenthings.lanczos(op, k=1, which="LA", tol=target, max_iter=M)``.
  Its Lanczos always runs exactly ``max_iter`` steps (default ``2k`` = 2 for k=1, far from
  converged) and only *flags* convergence (|β s| < tol·|λ|). M is set to the smallest value for
  which that flag is raised (found by bisection before timing; the search is not counted).
- ``pyhessian``: ``hessian(...).eigenvalues(maxIter=10000, tol=t, top_n=1)``, power iteration
  that stops when the relative change of the Rayleigh quotient is < t; its default t = 1e-3
  stops 1e-3–1e-2 off. t is set to the loosest of 1e-3, 1e-4, …, 1e-10 whose answer is within
  the target of the reference (tuned against the reference: favours PyHessian).
- ``curvlinops``: ``scipy.sparse.linalg.eigsh(HessianLinearOperator(...).to_scipy(), k=1,
  which="LA", tol=t)`` (ARPACK, default ncv=20, criterion ‖r‖ ≤ t·|λ|), t = target, tightened
  ×0.1 until within the target. ``check_deterministic=False`` (its safety check costs HVPs).

Timed region: building the method's Hessian operator from the model and batch, plus the solve.
HVP counts: Hessian-vector products issued by the solve. Each repetition runs every method once,
in an order rotated per repetition (A/B alternation); medians are reported.

Reference λ_max: ``--size test`` (d ≈ 2–3k) uses ``torch.linalg.eigvalsh`` of the dense Hessian;
``--size bench`` (d ≈ 26–29k, a dense eigendecomposition is out of reach on a CPU) uses
smoothprobe's Lanczos at tol 1e-12 from two seeds, which must agree: the Ritz value is a lower
bound and its residual bounds the distance to an eigenvalue, so the reference is exact to ~1e-12
unless both runs missed the top eigenvector. Every anchor's HVP is also compared with
smoothprobe's exact double-backward HVP on a random vector (``hvp_err``): forward-over-reverse
(curvlinops) is known to be wrong through ``F.layer_norm`` in torch 2.13 (MATH.md §4).

Run: ``bench/.venv/bin/python bench/l2_anchors.py [--size bench|test] [--models mlp,cnn,gpt]
[--reps 5] [--json out.json]``. Wall times are only valid on a quiet machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from smoothprobe.estimators.lanczos import lanczos, mixed_start  # noqa: E402
from smoothprobe.examples import build_example  # noqa: E402
from smoothprobe.linear_operator import dense_matrix  # noqa: E402
from smoothprobe.models.gpt import lm_loss  # noqa: E402
from smoothprobe.problem import problem_from_module  # noqa: E402

torch.set_num_threads(1)


@contextlib.contextmanager
def default_float64():
    """PyHessian draws its probes in the default dtype: make that float64 while it runs."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class LMLoss(nn.CrossEntropyLoss):
    """nanoGPT's token loss as a module with ``reduction`` (curvlinops needs one)."""

    def __init__(self):
        super().__init__(ignore_index=-1, reduction="mean")

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


@dataclass
class Workload:
    """One model + one fixed batch, with its reference λ_max."""

    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: Callable
    loss_module: nn.Module
    problem: object
    d: int
    reference: float = float("nan")
    reference_kind: str = ""


@dataclass
class Run:
    """One timed solve."""

    value: float
    hvps: int
    seconds: float
    error: float = float("nan")


@dataclass
class MethodResult:
    """All repetitions of one method on one workload."""

    method: str
    config: str
    runs: list[Run] = field(default_factory=list)
    hvp_err: float = float("nan")
    failure: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs) if self.runs else float("nan")


def load_workload(name: str, size: str) -> Workload:
    """The example's model in float64/eval and its evaluation sample as one batch."""
    problem = build_example(name, size=size, dtype=torch.float64)
    model = copy.deepcopy(problem.model).to(torch.float64).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    x = torch.cat([b.inputs for b in problem.batches])
    y = torch.cat([b.targets for b in problem.batches])
    loss_fn = lm_loss if name == "gpt" else F.cross_entropy
    loss_module = LMLoss() if name == "gpt" else nn.CrossEntropyLoss()
    single = problem_from_module(model, loss_fn, (x, y), batch_size=x.shape[0], dtype=torch.float64)
    gap = abs(single.loss() - problem.loss())
    if gap > 1e-10 * abs(problem.loss()):
        raise RuntimeError(f"{name}: one-batch loss differs from the example's by {gap:.2e}")
    return Workload(name, model, x, y, loss_fn, loss_module, single, single.d)


def set_reference(w: Workload, size: str) -> None:
    """Dense eigvalsh for ``test`` size, two converged tol-1e-12 Lanczos runs for ``bench``."""
    if size == "test":
        h = dense_matrix(w.problem.hvp_operator(), chunk=256)
        w.reference = float(torch.linalg.eigvalsh((h + h.T) / 2)[-1])
        w.reference_kind = "dense eigvalsh"
        return
    runs = [
        lanczos(w.problem.hvp_operator(), tol=1e-12, which="largest", max_hvps=600, generator=seed)
        for seed in (101, 202)
    ]
    a, b = (r.lambda_max for r in runs)
    if not all(r.converged for r in runs) or abs(a - b) > 1e-10 * abs(a):
        raise RuntimeError(f"{w.name}: reference Lanczos runs disagree: {a!r} vs {b!r}")
    w.reference = max(a, b)
    w.reference_kind = f"Lanczos tol 1e-12 (residual {max(r.residual_max for r in runs):.1e})"


# ---- the methods --------------------------------------------------------------------------


def param_order(w: Workload) -> list[slice]:
    """Slices of smoothprobe's flat θ in ``model.parameters()`` order (the anchors' order)."""
    names = [n for n, _ in w.model.named_parameters()]
    return [w.problem.layout.slot(n).slice for n in names]


def to_anchor(w: Workload, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([v[s] for s in param_order(w)])


def run_smoothprobe(w: Workload, seed: int, target: float, criterion: str, start: str) -> Run:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    op = w.problem.hvp_operator()
    s0 = mixed_start(op.gradient(), generator=gen) if start == "gradient" else None
    r = lanczos(
        op, tol=target, which="largest", criterion=criterion, max_hvps=2000, generator=gen, start=s0
    )
    return Run(r.lambda_max, op.cost.hvps, time.perf_counter() - t0)


def eigenthings_operator(w: Workload):
    import hessian_eigenthings as he

    return he.HessianOperator(w.model, [(w.x, w.y)], he.supervised_loss(w.loss_fn))


def run_eigenthings(w: Workload, seed: int, target: float, max_iter: int) -> Run:
    import hessian_eigenthings as he

    t0 = time.perf_counter()
    op = eigenthings_operator(w)
    count = [0]
    inner = op.matvec

    def counted(v):
        count[0] += 1
        return inner(v)

    op.matvec = counted
    res = he.lanczos(op, k=1, which="LA", max_iter=max_iter, tol=target, seed=seed)
    run = Run(float(res.eigenvalues[0]), count[0], time.perf_counter() - t0)
    run.converged_flag = bool(res.converged.all())  # type: ignore[attr-defined]
    return run


def pyhessian_module():
    """The ``pyhessian.hessian`` module (the package shadows it with the class of that name)."""
    return importlib.import_module("pyhessian.hessian")


def run_pyhessian(w: Workload, seed: int, target: float, tol: float) -> Run:
    ph = pyhessian_module()
    count = [0]
    inner = ph.hessian_vector_product

    def counted(gradsH, params, v):
        count[0] += 1
        return inner(gradsH, params, v)

    ph.hessian_vector_product = counted
    try:
        torch.manual_seed(seed)  # PyHessian draws its start vector from the global RNG
        t0 = time.perf_counter()
        model = w.model
        for p in model.parameters():
            p.grad = None
        with default_float64():
            hess = ph.hessian(model, w.loss_fn, data=(w.x, w.y), cuda=False)
            values, _ = hess.eigenvalues(maxIter=10000, tol=tol, top_n=1)
        seconds = time.perf_counter() - t0
        for p in model.parameters():
            p.grad = None
    finally:
        ph.hessian_vector_product = inner
    return Run(float(values[0]), count[0], seconds)


def curvlinops_operator(w: Workload):
    from curvlinops import HessianLinearOperator

    return HessianLinearOperator(
        w.model, w.loss_module, list(w.model.parameters()), [(w.x, w.y)], check_deterministic=False
    )


def run_curvlinops(w: Workload, seed: int, target: float, tol: float) -> Run:
    from scipy.sparse.linalg import LinearOperator, eigsh

    t0 = time.perf_counter()
    inner = curvlinops_operator(w).to_scipy(dtype=np.float64)
    count = [0]

    def matvec(v):
        count[0] += 1
        return inner.matvec(v)

    def matmat(m):
        count[0] += m.shape[1]
        return inner.matmat(m)

    op = LinearOperator(inner.shape, matvec=matvec, matmat=matmat, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(inner.shape[0])
    values = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return Run(float(values[-1]), count[0], time.perf_counter() - t0)


# ---- HVP agreement ------------------------------------------------------------------------


def hvp_errors(w: Workload) -> dict[str, float]:
    """Relative difference of each anchor's HVP from smoothprobe's on one random vector."""
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(w.d, generator=gen, dtype=torch.float64)
    ours = to_anchor(w, w.problem.hvp_operator().matvec(v))
    va = to_anchor(w, v)
    out: dict[str, float] = {}
    probes: dict[str, Callable[[], torch.Tensor]] = {
        "eigenthings": lambda: eigenthings_operator(w).matvec(va),
        "curvlinops": lambda: curvlinops_operator(w) @ va,
    }

    def pyhessian_hvp() -> torch.Tensor:
        ph = pyhessian_module()
        with default_float64():
            hess = ph.hessian(w.model, w.loss_fn, data=(w.x, w.y), cuda=False)
        sizes = [p.numel() for p in hess.params]
        parts = [t.view_as(p) for t, p in zip(va.split(sizes), hess.params, strict=True)]
        hv = ph.hessian_vector_product(hess.gradsH, hess.params, parts)
        for p in w.model.parameters():
            p.grad = None
        return torch.cat([t.reshape(-1) for t in hv])

    probes["pyhessian"] = pyhessian_hvp
    for name, fn in probes.items():
        try:
            out[name] = float((fn().detach() - ours).norm() / ours.norm())
        except Exception as exc:  # an anchor that cannot handle the model
            out[name] = float("nan")
            print(f"  {name}: HVP failed: {type(exc).__name__}: {str(exc)[:200]}")
    return out


# ---- configuration (not timed) ------------------------------------------------------------


def rel_error(value: float, w: Workload) -> float:
    return abs(value - w.reference) / abs(w.reference)


def smallest(predicate: Callable[[int], bool], *, start: int = 2, limit: int = 1024) -> int:
    """Smallest n ≥ start with predicate(n), assuming monotonicity (doubling, then bisection)."""
    hi = start
    while not predicate(hi):
        hi *= 2
        if hi > limit:
            raise RuntimeError(f"no value up to {limit} satisfies the criterion")
    lo = max(start, hi // 2)
    if lo == hi or predicate(lo):
        return lo if predicate(lo) else hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi


def configure(w: Workload, target: float, seed: int) -> dict[str, tuple[str, Callable] | str]:
    """Sets every method to converge (see the module docstring); not timed.

    Returns:
        {method: (configuration, run(seed) -> Run)}, or {method: failure message}.
    """

    def eigenthings() -> tuple[str, Callable]:
        m = smallest(lambda n: run_eigenthings(w, seed, target, n).converged_flag)
        return (
            f"lanczos k=1 LA tol=target max_iter={m} (smallest flagged converged)",
            lambda s: run_eigenthings(w, s, target, m),
        )

    def pyhessian() -> tuple[str, Callable]:
        for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10):
            if rel_error(run_pyhessian(w, seed, target, tol).value, w) <= target:
                return (
                    f"eigenvalues maxIter=10000 tol={tol:g} (tuned to reach target)",
                    lambda s, t=tol: run_pyhessian(w, s, target, t),
                )
        raise RuntimeError("no tol down to 1e-10 reached the target")

    def curvlinops() -> tuple[str, Callable]:
        tol = target
        while rel_error(run_curvlinops(w, seed, target, tol).value, w) > target:
            tol /= 10
            if tol < 1e-12:
                raise RuntimeError("eigsh does not reach the target: wrong HVPs?")
        return (f"eigsh k=1 LA ncv=20 tol={tol:g}", lambda s: run_curvlinops(w, s, target, tol))

    setups: dict[str, Callable[[], tuple[str, Callable]]] = {
        "smoothprobe": lambda: (
            "lanczos criterion=gap tol=target, start=gradient+random",
            lambda s: run_smoothprobe(w, s, target, "gap", "gradient"),
        ),
        "smoothprobe-res": lambda: (
            "lanczos criterion=residual tol=target, start=gradient+random",
            lambda s: run_smoothprobe(w, s, target, "residual", "gradient"),
        ),
        "smoothprobe-rand": lambda: (
            "lanczos criterion=gap tol=target, start=random",
            lambda s: run_smoothprobe(w, s, target, "gap", "random"),
        ),
        "eigenthings": eigenthings,
        "pyhessian": pyhessian,
        "curvlinops": curvlinops,
    }
    out: dict[str, tuple[str, Callable] | str] = {}
    for name, setup in setups.items():
        try:
            out[name] = setup()
        except Exception as exc:  # report the anchor's failure, keep benchmarking the others
            out[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
            print(f"  {name}: {out[name]}")
    return out


# ---- driver -------------------------------------------------------------------------------


def bench_workload(w: Workload, *, target: float, reps: int) -> list[MethodResult]:
    errs = hvp_errors(w)
    print(
        "  HVP relative error vs smoothprobe's double backward: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
    )
    results: dict[str, MethodResult] = {}
    runners: dict[str, Callable] = {}
    for name, setup in configure(w, target, seed=0).items():
        if isinstance(setup, str):
            results[name] = MethodResult(name, "", hvp_err=errs.get(name, 0.0), failure=setup)
        else:
            results[name] = MethodResult(name, setup[0], hvp_err=errs.get(name, 0.0))
            runners[name] = setup[1]
    names = list(runners)
    for rep in range(reps if names else 0):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate: A/B alternation
        for name in order:
            try:
                run = runners[name](rep)
            except Exception as exc:
                results[name].failure = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            run.error = rel_error(run.value, w)
            results[name].runs.append(run)
    return list(results.values())


def print_table(w: Workload, results: list[MethodResult], target: float) -> None:
    ours = next(r for r in results if r.method == "smoothprobe")
    if not ours.runs:
        print(f"\n### {w.name}: smoothprobe failed: {ours.failure}")
        return
    print(
        f"\n### {w.name} (d = {w.d:,}, λ_max = {w.reference:.10g}, reference: {w.reference_kind})\n"
    )
    print("| method | HVPs | seconds | max rel. error | HVP ratio | time ratio | configuration |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        if not r.runs:
            print(f"| {r.method} | – | – | – | – | – | failed: {r.failure} |")
            continue
        hv, sec = r.median("hvps"), r.median("seconds")
        worst = max(run.error for run in r.runs)
        flag = "" if worst <= target else " (MISSED TARGET)"
        print(
            f"| {r.method} | {hv:g} | {sec:.3f} | {worst:.1e}{flag} | "
            f"{hv / ours.median('hvps'):.2f} | {sec / ours.median('seconds'):.2f} | "
            f"{r.config} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="bench", choices=("bench", "test"))
    parser.add_argument("--models", default="mlp,cnn,gpt")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--target", type=float, default=1e-4)
    parser.add_argument("--json", default="", help="write all runs to this file")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, "
        f"target {args.target:g}, reps {args.reps}"
    )
    report = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        w = load_workload(name, args.size)
        set_reference(w, args.size)
        print(
            f"\n{name}: d={w.d}, reference λ_max={w.reference!r} ({w.reference_kind}), "
            f"setup {time.perf_counter() - t0:.1f}s"
        )
        results = bench_workload(w, target=args.target, reps=args.reps)
        print_table(w, results, args.target)
        report.append(
            {
                "workload": name,
                "d": w.d,
                "reference": w.reference,
                "reference_kind": w.reference_kind,
                "results": [asdict(r) for r in results],
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "size": args.size,
                    "target": args.target,
                    "reps": args.reps,
                    "torch": torch.__version__,
                    "workloads": report,
                },
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
