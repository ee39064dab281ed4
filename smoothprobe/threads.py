"""How many CPU threads torch may use: by default, the cores this process may use that are idle.

torch's default is every core of the machine. When some of them are not ours (a CPU affinity
mask from taskset, a job scheduler or a container's CPU quota) or another process keeps one
busy, OpenMP threads spin waiting for each other and an HVP can take 20× longer with identical
numbers. ``usable_cores`` reads the affinity mask (``os.sched_getaffinity``, or psutil where
the OS has no such call) and a cgroup CPU quota; ``idle_cores`` asks psutil how busy each of
those cores was over a fifth of a second; ``set_threads`` applies a count.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from smoothprobe.errors import SmoothprobeError

ENV_VAR = "SMOOTHPROBE_THREADS"


def _affinity_count() -> int | None:
    """Cores in this process's CPU affinity mask, when the OS reports one."""
    count = getattr(os, "process_cpu_count", None)  # Python ≥ 3.13: the affinity mask
    if count is not None:
        return count()
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    try:  # Windows, FreeBSD: psutil reads the mask (macOS has none)
        import psutil

        return len(psutil.Process().cpu_affinity())
    except (ImportError, AttributeError, OSError):
        return None


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole cores a cgroup v2 CPU quota allows (``cpu.max`` = "quota period"), if any."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.floor(int(quota) / int(period)))


def usable_cores() -> int:
    """The cores this process may use: its affinity mask, capped by a container CPU quota."""
    counts = [c for c in (_affinity_count(), _cgroup_quota(), os.cpu_count()) if c]
    return max(1, min(counts)) if counts else 1


def idle_cores(*, interval: float = 0.2, busy_percent: float = 50.0) -> int:
    """How many of the usable cores were idle (under ``busy_percent``) over ``interval`` s.

    Reads per-core utilisation with psutil; without psutil, every usable core counts as idle.
    Always at least 1.
    """
    cores = usable_cores()
    try:
        import psutil

        usage = psutil.cpu_percent(interval=interval, percpu=True)
    except (ImportError, OSError):
        return cores
    if hasattr(os, "sched_getaffinity"):
        mine = sorted(os.sched_getaffinity(0))
        usage = [usage[i] for i in mine if i < len(usage)] or usage
    idle = sum(1 for u in usage if u < busy_percent)
    return max(1, min(cores, idle))


def resolve_threads(requested: int | None = None) -> int:
    """The thread count to use: ``requested``, else ``$SMOOTHPROBE_THREADS``, else the cores
    this process may use that are idle now (``idle_cores``).

    Raises:
        SmoothprobeError: a requested or environment value that is not a positive integer.
    """
    if requested is None:
        text = os.environ.get(ENV_VAR, "").strip()
        if not text:
            return idle_cores()
        try:
            requested = int(text)
        except ValueError:
            requested = 0
        if requested < 1:
            raise SmoothprobeError(
                f"{ENV_VAR}={text!r}: use a positive number of threads, e.g. {ENV_VAR}=1"
            )
    if requested < 1:
        raise SmoothprobeError(f"threads={requested}: use a positive number of threads")
    return requested


def set_threads(requested: int | None = None) -> int:
    """Sets torch's intra-op thread count (see ``resolve_threads``) and returns it."""
    import torch

    threads = resolve_threads(requested)
    torch.set_num_threads(threads)
    return threads
