"""Time to print ``smoothprobe --help`` (the CLI's startup cost), median of several runs.

Usage: ``python bench/cli_startup.py [--runs 9]``. Each run is a fresh interpreter
(``python -m smoothprobe_cli.main --help`` is what the ``smoothprobe`` script runs), so the time
includes Python's own startup; the script prints that baseline (``python -c pass``) too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def wall_times(cmd: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` executions of ``cmd`` (output discarded)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    base = wall_times([sys.executable, "-c", "pass"], args.runs)
    code = "from smoothprobe_cli.main import cli; cli(['--help'])"
    helps = wall_times([sys.executable, "-c", code], args.runs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python startup      median {statistics.median(base):.3f} s")
    print(f"smoothprobe --help  median {statistics.median(helps):.3f} s  (min {min(helps):.3f} s,")
    print(f"  {args.runs} runs, load average {load:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
