"""Time of exact HVPs on the bench-size GPT at 1 and 2 torch threads, with and without a busy core.

    python bench/threads.py            # prints one line per setting (run on a quiet machine)

Each setting runs in a fresh interpreter (OMP_WAIT_POLICY is read when torch loads). The busy
core is a Python spin loop pinned to core 0 for the duration of the timing.

Measured 2026-12-03 on the shared 2-core machine (load average 11-13 from other jobs, so "no
busy core" still means a loaded machine), ms per probe: 1 thread 180 (PASSIVE 266); 2 threads
3590 spinning, 111 with OMP_WAIT_POLICY=PASSIVE; busy core, 1 thread 439 (PASSIVE 382).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CHILD = r"""
import time, torch
from smoothprobe.checkpoints import DataOptions, load_checkpoint
torch.set_num_threads({threads})
problem = load_checkpoint("example:gpt:bench", data=DataOptions()).problem
op = problem.hvp_operator()
v = torch.randn(8, problem.d, dtype=problem.dtype)
op.matvec(v)  # warm up
t0 = time.perf_counter()
for _ in range({reps}):
    op.matvec(v)
print((time.perf_counter() - t0) / ({reps} * 8))
"""


def run(threads: int, *, busy: bool, policy: str | None, reps: int = 5) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    spinner = None
    if busy:
        spinner = subprocess.Popen(
            [sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"]
        )
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(threads=threads, reps=reps)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"load average before: {os.getloadavg()}, usable cores {len(os.sched_getaffinity(0))}")
    for busy in (False, True):
        for threads in (1, 2):
            for policy in (None, "PASSIVE"):
                t0 = time.perf_counter()
                per_probe = run(threads, busy=busy, policy=policy)
                print(
                    f"busy core {busy!s:5}  threads {threads}  OMP_WAIT_POLICY {policy or '-':7}  "
                    f"{per_probe * 1e3:8.1f} ms per probe  (wall {time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
