"""A run's byte budget, kept across resumes, and its peak memory against it.

``run_budget`` decides the budget ``memory_plan.plan_memory`` sizes a run with; ``peak_report``
is the figure the run's last log line gives, so a user sees whether the run kept to it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from smoothprobe.finished_phases import FinishedPhases
from smoothprobe.memory_plan import GIB


def run_budget(
    memory: int | None,
    finished: FinishedPhases,
    *,
    device: torch.device | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> int:
    """The run's byte budget: ``memory`` (``--memory``) when given; else the budget the run
    started with (kept with its finished phases, so a resumed run makes the same plan and its
    saved Lanczos basis fits again) while ``device`` (a GPU, or None: the host) still has that
    much; else the default (``memory_plan.default_budget``), kept."""
    from smoothprobe import memory_plan  # looked up at call time: tests replace default_budget

    if memory:
        return memory
    saved, usable = finished.budget, memory_plan.default_budget(1.0, device=device)
    if saved is not None and saved <= usable:
        log(f"memory budget {saved / GIB:.2f} GiB, as when this run started")
        return saved
    budget = memory_plan.default_budget(device=device)
    if saved is not None:
        log(
            f"this run started with a {saved / GIB:.2f} GiB budget but {usable / GIB:.2f} GiB "
            "is free now: planning anew (a saved Lanczos state may then start over)"
        )
    finished.keep_budget(budget)
    return budget


def peak_report(device: torch.device, budget: int) -> str:
    """The run's peak memory against its budget: the GPU's peak allocation on CUDA (since the
    run reset it), else the process's peak RSS (Linux and macOS; "" where the OS does not
    tell)."""
    if device.type == "cuda":
        peak, what = torch.cuda.max_memory_allocated(device), "peak device memory"
    else:
        try:
            import resource
        except ImportError:  # Windows
            return ""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak, what = peak * (1 if sys.platform == "darwin" else 1024), "peak RSS"
    return f"{what} {peak / GIB:.2f} GiB (budget {budget / GIB:.2f} GiB)"
