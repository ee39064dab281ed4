"""Peak memory of a (1,1)-norm run grows as O(d), not O(k·d): k = 16 vs 256 (and 1024) probes.

Each configuration runs in a fresh subprocess on the tiny GPT of ``smoothprobe.examples``
(``--size bench``: d = 28,544; ``--size test``: d = 2,676), float64, one thread. The child builds
the problem and its HVP operator, applies 4 warm-up blocks of ``chunk_size`` probes (so the
retained autograd graphs and the allocator's working set exist), records its resident set size
(VmRSS) after resetting the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``), runs
``estimate_l11(method, max_hvps=k, chunk_size=...)`` and reports the new high-water mark
(VmHWM) minus that baseline: the extra peak memory of the run itself. glibc is told to mmap
blocks ≥ 64 KiB and to trim at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
one arena), so RSS follows live memory instead of allocator caches. The default chunk_size 4
lets even the k = 16 runs (the two-phase split is 6 Cauchy probes + 10 columns) use full
blocks, so runs differ only in k. Growth = extra(k) − extra(k=16),
in parameter vectors of d·8 bytes.

``HVPs only`` applies the same number of HVPs and discards them: the operator's own transient
working set, the floor every estimator sits on. The (1,1)-norm estimators hold O(chunk_size·d)
for the HVP block plus O(d) accumulators; the exact Cauchy median/IQR deliberately hold k·d
float32 values when they fit ``memory_limit`` (shown as ``cauchy-median (exact)``: it grows with
k), while the streaming histogram (``memory_limit=0``) does not.

Usage::

    python bench/l11_memory.py                    # bench size, chunk_size 4, k = 16, 256, 1024
    python bench/l11_memory.py --size test --csv bench/results/l11_memory.csv

Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = {
    "HVPs only (reference)": None,
    "two-phase (default)": dict(method="two-phase"),
    "cauchy-geomean": dict(method="cauchy-geomean"),
    "cauchy-median (streaming)": dict(method="cauchy-median", memory_limit=0),
    "uniform": dict(method="uniform"),
    "cauchy-median (exact)": dict(method="cauchy-median"),
}


WARMUP_CALLS = 4
# glibc: one arena, large blocks mmapped and returned at once, so RSS tracks live memory and the
# high-water mark is the true peak rather than allocator caching.
MALLOC_ENV = {
    **os.environ,
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_TRIM_THRESHOLD_": "0",
    "OMP_NUM_THREADS": "1",
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(size: str, k: int, chunk: int, options: dict) -> dict:
    """Runs one configuration in this process and returns its memory numbers (bytes)."""
    import torch

    torch.set_num_threads(1)
    from smoothprobe.estimators.l11 import estimate_l11
    from smoothprobe.examples import build_example

    problem = build_example("gpt", size=size)
    op = problem.hvp_operator()
    gen = torch.Generator().manual_seed(0)
    for _ in range(WARMUP_CALLS):
        op.matvec(torch.randn(chunk, op.d, dtype=op.dtype, generator=gen))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux ≥ 4.0)
    base = _status_kib("VmRSS")
    if options is None:  # the floor: the same number of HVPs, results discarded
        for start in range(0, k, chunk):
            op.matvec(torch.randn(min(chunk, k - start), op.d, dtype=op.dtype, generator=gen))
        hvps, method = k, "hvps-only"
    else:
        est = estimate_l11(op, max_hvps=k, generator=0, chunk_size=chunk, **options).estimate
        hvps, method = est.hvps, est.method
    peak = _status_kib("VmHWM")
    return {
        "d": op.d,
        "k": k,
        "hvps": hvps,
        "method": method,
        "baseline_bytes": base * 1024,
        "peak_bytes": peak * 1024,
        "extra_bytes": max(0, peak - base) * 1024,
    }


def run_child(size: str, k: int, chunk: int, name: str) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([size, k, chunk, name])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=MALLOC_ENV).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="bench", choices=["test", "bench"])
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--probes", type=int, nargs="+", default=[16, 256, 1024])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        choices=list(CONFIGS),
        metavar="CONFIG",
        help="subset of: " + ", ".join(CONFIGS),
    )
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, k, chunk, name = json.loads(args.child)
        print(json.dumps(child(size, k, chunk, CONFIGS[name])))
        return
    rows = []
    ks = args.probes
    for name in args.configs:
        runs = [run_child(args.size, k, args.chunk_size, name) for k in ks]
        d = runs[0]["d"]
        vector = d * 8
        row = {"config": name, "d": d, "chunk_size": args.chunk_size}
        for k, r in zip(ks, runs, strict=True):
            row[f"extra_MiB_k{k}"] = r["extra_bytes"] / 2**20
        for k, r in zip(ks[1:], runs[1:], strict=True):
            row[f"growth_vectors_k{ks[0]}_to_k{k}"] = (
                r["extra_bytes"] - runs[0]["extra_bytes"]
            ) / vector
        rows.append(row)
        extras = "  ".join(
            f"k={k}: {r['extra_bytes'] / 2**20:7.2f}" for k, r in zip(ks, runs, strict=True)
        )
        growth = "  ".join(
            f"{ks[0]}→{k}: {row[f'growth_vectors_k{ks[0]}_to_k{k}']:+6.1f}" for k in ks[1:]
        )
        print(
            f"{name:26s} d={d}  extra peak MiB  {extras}   growth in parameter vectors {growth}",
            flush=True,
        )
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
