"""Scale benchmark: a GPT-2-small (124M) nanoGPT checkpoint measured on this machine.

Every phase runs in its own child process so its peak RSS is its own (``os.wait4``); results
are appended to a JSON-lines file as they come (so a long run can be read while it goes on).

    python bench/scale.py make  DIR            # checkpoint + synthetic val.bin (no download)
    python bench/scale.py costs DIR --k 1 8    # seconds per gradient and per HVP (blocks of k)
    python bench/scale.py costs DIR --k 1 4 --batches 2 --chunk 1   # graphs rebuilt per call
    python bench/scale.py costs DIR --k 4 --batches 2 --chunk 1 --allocators default heap --repeat 3
    python bench/scale.py suites DIR           # each suite: wall time, peak RSS
    python bench/scale.py all DIR
    python bench/scale.py run DIR              # the issue's whole --norm both run (resumable)
    python bench/scale.py torchrun DIR2        # torchrun 2 ranks vs 1 process, float64 λ_max

Records: bench/results/scale_cpu.jsonl (phase, seconds, peak_rss_gib, minor page faults, system
seconds, load average, ...). ``--allocators default heap`` alternates the C library's default
with glibc keeping freed memory in its heap (``HEAP_RETENTION``, README "GPT-2-small"), each in
a fresh child, ``--repeat`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "scale_cpu.jsonl"
GIB = 1 << 30
LOG = "[smoothprobe]"  # the prefix of smoothprobe's log lines on stderr
# glibc keeps freed blocks in its heap: no mmap for large blocks, never trimmed (read at start)
HEAP_RETENTION = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
}
ALLOCATORS = {"default": {}, "heap": HEAP_RETENTION}


def record(row: dict) -> None:
    """Appends one result row (with the load average at the end of the phase)."""
    row = {**row, "loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_child(
    argv: list[str],
    *,
    limit_gib: float | None,
    stop_after: float | None = None,
    env: dict | None = None,
    capture: bool = True,
) -> tuple[int, float, dict, str]:
    """Runs argv niced under an address-space cap (``env`` added to this environment); returns
    (rc, seconds, its usage: peak RSS GiB, minor faults, system seconds; output tail: the end of
    stdout, smoothprobe's log lines from stderr, the end of stderr).

    The usage is the child's own and its children's (``os.wait4``: the peak is the largest
    process's), so phases do not mix. With ``stop_after`` the child gets Ctrl-C (SIGINT) after
    that many seconds (rc 130). ``limit_gib`` None: no cap; ``capture`` False: the child
    writes to this process's stdout and stderr (its progress bars show) and the tail is empty.
    """

    def cap() -> None:
        os.nice(5)
        if limit_gib is not None:
            limit = int(limit_gib * GIB)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        streams = {"stdout": out, "stderr": err} if capture else {}
        proc = subprocess.Popen(argv, preexec_fn=cap, env={**os.environ, **(env or {})}, **streams)
        timer = None
        if stop_after:
            timer = threading.Timer(stop_after, proc.send_signal, [signal.SIGINT])
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:  # the child got the same Ctrl-C: it saves its state, exits
            _, status, usage = os.wait4(proc.pid, 0)
        if timer is not None:
            timer.cancel()
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text = err.read().decode()
        logs = [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith(LOG)]
        tail = "\n".join([out.read().decode()[-3000:], *logs[-20:], text[-1500:]])
    rc = os.waitstatus_to_exitcode(status)
    used = {
        "peak_rss_gib": usage.ru_maxrss / (1 << 20),
        "minor_faults": usage.ru_minflt,
        "system_s": usage.ru_stime,
        "user_s": usage.ru_utime,
    }
    return rc, seconds, used, tail.strip()


BASE = ["--batch-size", "4", "--block-size", "128", "--num-batches", "1"]
# Budgets (and the sample: one batch, whose graph stays alive; the default four batches are
# rebuilt at every product, about 4x the time, one graph alive at a time) are cut to what this
# CPU finishes in minutes; seconds per HVP (costs) give the default-budget time. Every suite runs
# the same code path as the defaults (plan, graphs, blocks).
SUITES = {
    "heldout-l2": ["--norm", "l2", "--tol", "1e-3", "--batch-size", "2", "--num-batches", "1",
                   "--block-size", "128"],
    "l2": [*BASE, "--norm", "l2", "--max-hvps", "3"],
    "linf": [*BASE, "--norm", "linf", "--hvps", "4"],
    "blockwise-tensor": [*BASE, "--norm", "none", "--blocks", "tensor"],  # stopped: STOP_AFTER
    "graddiff": [*BASE, "--norm", "none", "--graddiff", "1e-3"],  # 16 directions, streamed
    "noise": [*BASE, "--norm", "none", "--noise", "4"],
}  # fmt: skip
# Suites too long for this CPU get Ctrl-C after this many seconds: their peak RSS is measured
# over the first part, which includes the widest block column (blockwise sketches go in block
# order, the embedding first); the whole per-tensor run is ≈ 3,760 HVPs.
STOP_AFTER = {"blockwise-tensor": 600.0}


# The issue's run: the default sample (4 batches of 4 × 128 tokens), default budgets.
ISSUE_RUN = ["--batch-size", "4", "--block-size", "128", "--norm", "both"]
# The held-out torchrun check: a 16.3M nanoGPT, float64, one batch, ℓ2 to 1e-3.
TORCHRUN_SIZES = {"n_layer": 4, "n_head": 4, "n_embd": 256}
TORCHRUN_FLAGS = ["--norm", "l2", "--tol", "1e-3", "--batch-size", "2", "--num-batches", "1",
                  "--block-size", "128", "--dtype", "float64"]  # fmt: skip
TORCHRUN_TOLERANCE = 1e-6  # relative, on λ_max


def measure_argv(root: Path, flags: list[str], out: Path) -> list[str]:
    """``smoothprobe measure`` of DIR's checkpoint and tokens with these flags, records to out."""
    return ["-m", "smoothprobe", "measure", str(root / "ckpt.pt"), "--data",
            str(root / "val.bin"), *flags, "--out", str(out)]  # fmt: skip


def read_records(path: Path) -> dict[str, float]:
    """``quantity/bound`` → value of a records file (finite values only)."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {f"{r['quantity']}/{r['bound']}": r["value"] for r in rows if r["value"] is not None}


def issue_run(root: Path, *, memory: str | None) -> dict:
    """The issue's whole ``measure --norm both`` run on DIR's checkpoint, records and state under
    DIR/run: a rerun after an interruption resumes it (finished phases are kept, long ones
    resume inside). One call is one stretch; its row says whether saved state was there at its
    start, and the stretches' seconds add up to the run's compute."""
    out = root / "run" / "both.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    state_at_start = any(out.parent.glob(f".{out.name}*"))
    flags = [*ISSUE_RUN, *(["--memory", memory] if memory else [])]
    argv = [sys.executable, *measure_argv(root, flags, out)]
    rc, seconds, used, _ = run_child(argv, limit_gib=None, capture=False)
    values = read_records(out) if rc == 0 else {}
    return {
        "phase": "run --norm both",
        "rc": rc,
        "wall_s": seconds,
        **used,
        "state_at_start": state_at_start,
        "argv": " ".join(argv[3:]),
        "records": values,
    }


def torchrun_check(root: Path, *, memory: str, ranks: int) -> dict:
    """Held-out check: ``torchrun --standalone --nproc_per_node ranks -m smoothprobe measure``
    against one process on DIR's checkpoint (made with ``TORCHRUN_SIZES`` when absent), float64,
    the same budget per process; passes when λ_max agrees within ``TORCHRUN_TOLERANCE``."""
    if not (root / "ckpt.pt").exists():
        make = [sys.executable, str(Path(__file__).parent / "make_gpt2_small.py"), str(root)]
        make += [f"--{k.replace('_', '-')}={v}" for k, v in TORCHRUN_SIZES.items()]
        subprocess.run(make, check=True)
    launcher = Path(sys.executable).with_name("torchrun")  # else the same module by name
    launch = (
        [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    runs = {
        "one process": [sys.executable],
        f"torchrun {ranks} ranks": [*launch, "--standalone", f"--nproc_per_node={ranks}"],
    }
    row = {"phase": f"torchrun check ({ranks} ranks vs 1 process)", "memory": memory}
    found = []
    for n, (name, head) in enumerate(runs.items()):
        out = root / f"check{n}.jsonl"
        for stale in [out, *root.glob(f".{out.name}*")]:  # a fresh run, never a resumed one
            stale.unlink(missing_ok=True)
        argv = [*head, *measure_argv(root, [*TORCHRUN_FLAGS, "--memory", memory], out)]
        rc, seconds, used, tail = run_child(argv, limit_gib=None)
        row[name] = {"rc": rc, "wall_s": seconds, **used, **({"tail": tail[-800:]} if rc else {})}
        found.append(read_records(out))
    common = sorted(set(found[0]) & set(found[1]))
    rel = {k: abs(found[0][k] - found[1][k]) / max(abs(found[0][k]), 1e-300) for k in common}
    key = "lambda_max/lower"
    row.update(
        records=dict(zip(runs, found, strict=True)),
        rel_diff=rel,
        lambda_max_rel_diff=rel.get(key),
        passed=key in rel and rel[key] <= TORCHRUN_TOLERANCE,
    )
    return row


def costs_child(
    root: str, k: int, batch_size: int, block_size: int, chunk: int | None, batches: int = 1
) -> None:
    """In a child: seconds of one gradient and of HVP blocks of k probes (JSON on stdout).
    With several batches the graphs are rebuilt at every call, one rebuild per block."""
    import torch

    from smoothprobe.checkpoints import DataOptions, load_checkpoint

    data = DataOptions(
        path=f"{root}/val.bin",
        batch_size=batch_size,
        num_batches=batches,
        block_size=block_size,
        seed=0,
    )
    problem = load_checkpoint(f"{root}/ckpt.pt", data=data).problem
    t0 = time.perf_counter()
    problem.gradient()
    grad_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    op = problem.hvp_operator(retain_graphs=batches == 1, chunk_size=chunk)
    graph_s = time.perf_counter() - t0
    v = torch.randn(k, problem.d, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        op.matvec(v)
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "gradient_s": grad_s,
                "graph_build_s": graph_s,
                "graph_gib": op.graph_bytes / GIB,
                "hvp_block_s": times,
                "per_probe_s": [t / k for t in times],
                "batches": batches,
                "graphs": "retained" if batches == 1 else "rebuilt per call",
                "d": problem.d,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=["make", "costs", "costs-child", "suites", "all", "run", "torchrun"]
    )
    parser.add_argument("root")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=1, help="costs: >1 rebuilds the graphs")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--limit-gib", type=float, default=17.0)
    parser.add_argument(
        "--memory", default=None, help="--memory of every suite run (default: the plan's)"
    )
    parser.add_argument("--only", nargs="*", default=None, help="suites to run (default all)")
    parser.add_argument(
        "--allocators", nargs="+", choices=list(ALLOCATORS), default=["default"],
        help="costs: the C library settings to alternate (heap: glibc keeps freed memory)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="costs: rounds of A, B, ...")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun: processes")
    args = parser.parse_args()
    if args.what == "run":
        record(issue_run(Path(args.root), memory=args.memory))
        return
    if args.what == "torchrun":
        row = torchrun_check(Path(args.root), memory=args.memory or "4GiB", ranks=args.ranks)
        record(row)
        diff = row["lambda_max_rel_diff"]
        print(f"lambda_max rel diff {diff:.2e}: " + ("PASS" if row["passed"] else "FAIL")
              if diff is not None else "lambda_max missing: FAIL")  # fmt: skip
        sys.exit(0 if row["passed"] else 1)
    if args.what == "costs-child":
        costs_child(
            args.root, args.k[0], args.batch_size, args.block_size, args.chunk, args.batches
        )
        return
    if args.what in ("make", "all") and not Path(args.root, "ckpt.pt").exists():
        subprocess.run(
            [sys.executable, str(Path(__file__).parent / "make_gpt2_small.py"), args.root],
            check=True,
        )
    if args.what in ("costs", "all"):
        rounds = [(k, name) for _ in range(args.repeat) for k in args.k for name in args.allocators]
        for k, allocator in rounds:  # alternating: A, B, A, B, ...
            argv = [
                sys.executable,
                __file__,
                "costs-child",
                args.root,
                "--k",
                str(k),
                "--batch-size",
                str(args.batch_size),
                "--block-size",
                str(args.block_size),
                "--batches",
                str(args.batches),
            ]
            if args.chunk:
                argv += ["--chunk", str(args.chunk)]
            rc, seconds, used, tail = run_child(
                argv, limit_gib=args.limit_gib, env=ALLOCATORS[allocator]
            )
            row = {
                "phase": f"costs k={k}" + (f", {args.batches} batches" if args.batches > 1 else ""),
                "allocator": allocator,
                "rc": rc,
                "wall_s": seconds,
                **used,
                "batch_size": args.batch_size,
                "block_size": args.block_size,
                "chunk": args.chunk,
                "batches": args.batches,
            }
            try:
                row.update(json.loads(tail.splitlines()[0]))
            except (ValueError, IndexError):
                row["tail"] = tail[-500:]
            record(row)
    if args.what in ("suites", "all"):
        for name, flags in SUITES.items():
            if args.only and name not in args.only:
                continue
            stop = STOP_AFTER.get(name)
            with tempfile.TemporaryDirectory() as tmp:  # records, and state a stop leaves
                out = Path(tmp, "suite.jsonl")
                chosen = [*flags, *(["--memory", args.memory] if args.memory else [])]
                argv = [sys.executable, *measure_argv(Path(args.root), chosen, out)]
                rc, seconds, used, tail = run_child(argv, limit_gib=args.limit_gib, stop_after=stop)
                values = read_records(out)
            log = [ln for ln in tail.splitlines() if ln.startswith(LOG)]
            record({"phase": f"suite {name}", "rc": rc, "wall_s": seconds, **used,
                    "argv": " ".join(argv[3:-2]), "log": log,
                    "records": values, "stopped_after_s": stop,
                    **({"tail": tail[-1500:]} if rc else {})})  # fmt: skip


if __name__ == "__main__":
    main()
