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
    python bench/scale.py all DIR --device cuda --block-size 1024 --full   # a GPU's rows

Records: bench/results/scale_cpu.jsonl, scale_gpu.jsonl with ``--device cuda`` (phase, seconds,
peak_rss_gib, peak_device_gib, minor page faults, system seconds, load average, ...).
``--allocators default heap`` alternates the C library's default with glibc keeping freed
memory in its heap (``HEAP_RETENTION``, README "GPT-2-small"), each in a fresh child,
``--repeat`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GIB = 1 << 30
LOG = "[smoothprobe]"  # the prefix of smoothprobe's log lines on stderr
# glibc keeps freed blocks in its heap: no mmap for large blocks, never trimmed (read at start)
HEAP_RETENTION = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"
}
ALLOCATORS = {"default": {}, "heap": HEAP_RETENTION}


def record(row: dict, results: Path) -> None:
    """Appends one result row to ``results`` (with the load average at the end of the phase)."""
    row = {**row, "loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def _drain(stream, keep, echo: bool) -> None:
    """Copies a child's stderr to the file ``keep`` as it comes, echoing it when ``echo``."""
    for chunk in iter(lambda: stream.read1(1 << 16), b""):
        keep.write(chunk)
        if echo:
            sys.stderr.buffer.write(chunk)
            sys.stderr.buffer.flush()


def log_lines(tail: str) -> list[str]:
    """smoothprobe's log lines in an output tail, each once, in order."""
    return list(dict.fromkeys(ln for ln in tail.splitlines() if ln.startswith(LOG)))


PEAK = re.compile(r"peak (device memory|RSS) ([0-9.]+) GiB")


def reported_peak(tail: str) -> dict:
    """The peak smoothprobe's last log line reports (GPU allocation or RSS), GiB."""
    found = PEAK.findall(tail)
    if not found:
        return {}
    what, gib = found[-1]
    return {"peak_device_gib" if what == "device memory" else "reported_peak_rss_gib": float(gib)}


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
    writes to this process's stdout and its stderr is echoed (its progress bars show).
    """

    def cap() -> None:
        # Ctrl-C must reach the child even when this process was started with SIGINT ignored
        # (a pytest-xdist worker, nohup): an ignored SIGINT would be inherited across exec
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.nice(5)
        if limit_gib is not None:
            limit = int(limit_gib * GIB)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        streams = {"stdout": out} if capture else {}
        proc = subprocess.Popen(
            argv,
            preexec_fn=cap,
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
            **streams,
        )
        reader = threading.Thread(target=_drain, args=(proc.stderr, err, not capture))
        reader.start()
        timer = None
        if stop_after:
            timer = threading.Timer(stop_after, proc.send_signal, [signal.SIGINT])
            timer.start()
        # Ctrl-C (or timeout's SIGINT, sent to the child and again to the group) reaches the
        # child, which saves its state and exits; this process waits for it and records it
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            signal.signal(signal.SIGINT, previous)
        if timer is not None:
            timer.cancel()
        reader.join()
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text = err.read().decode(errors="replace")
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


# Each suite's own flags; the sample (--batch-size, --block-size) is the command line's.
SUITES = {
    "heldout-l2": ["--norm", "l2", "--tol", "1e-3", "--batch-size", "2", "--num-batches", "1",
                   "--block-size", "128"],  # the issue's held-out check: its own sample
    "l2": ["--norm", "l2"],
    "linf": ["--norm", "linf"],
    "blockwise-tensor": ["--norm", "none", "--blocks", "tensor"],  # stopped: STOP_AFTER
    "graddiff": ["--norm", "none", "--graddiff", "1e-3"],  # 16 directions, streamed
    "noise": ["--norm", "none", "--noise", "4"],
}  # fmt: skip
# Without --full, budgets and the sample (one batch, whose graph stays alive; the default four
# batches are rebuilt at every product on this CPU, about 4x the time) are cut to what the
# 2-core CPU finishes in minutes; seconds per HVP (costs) give the default-budget time. Every
# suite runs the same code path as the defaults (plan, graphs, blocks).
CUTS = {
    "l2": ["--num-batches", "1", "--max-hvps", "3"],
    "linf": ["--num-batches", "1", "--hvps", "4"],
    "blockwise-tensor": ["--num-batches", "1"],
    "graddiff": ["--num-batches", "1"],
    "noise": ["--num-batches", "1"],
}
# Suites too long for this CPU get Ctrl-C after this many seconds (--stop-after): their peak is
# measured over the first part, which includes the widest block column (blockwise sketches go in
# block order, the embedding first); the whole per-tensor run is ≈ 3,760 HVPs.
STOP_AFTER = {"blockwise-tensor": 600.0}


# The issue's run: the default sample (4 batches of --batch-size × --block-size), default budgets.
ISSUE_RUN = ["--norm", "both"]
# The held-out torchrun check: a 16.3M nanoGPT, float64, one batch, ℓ2 to 1e-3.
TORCHRUN_SIZES = {"n_layer": 4, "n_head": 4, "n_embd": 256}
TORCHRUN_FLAGS = ["--norm", "l2", "--tol", "1e-3", "--batch-size", "2", "--num-batches", "1",
                  "--block-size", "128", "--dtype", "float64"]  # fmt: skip
TORCHRUN_TOLERANCE = 1e-6  # relative, on λ_max


def sample_flags(args: argparse.Namespace) -> list[str]:
    """The sample and device every ``measure`` of this call shares (a suite's own flags come
    after them and win)."""
    return ["--batch-size", str(args.batch_size), "--block-size", str(args.block_size),
            "--device", args.device]  # fmt: skip


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


def issue_run(root: Path, *, sample: list[str], memory: str | None) -> dict:
    """The issue's whole ``measure --norm both`` run on DIR's checkpoint, records and state under
    DIR/run: a rerun after an interruption resumes it (finished phases are kept, long ones
    resume inside). One call is one stretch; its row says whether saved state was there at its
    start, and the stretches' seconds add up to the run's compute."""
    out = root / "run" / "both.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    state_at_start = any(out.parent.glob(f".{out.name}*"))
    flags = [*sample, *ISSUE_RUN, *(["--memory", memory] if memory else [])]
    argv = [sys.executable, *measure_argv(root, flags, out)]
    rc, seconds, used, tail = run_child(argv, limit_gib=None, capture=False)
    values = read_records(out) if rc == 0 else {}
    return {
        "phase": "run --norm both",
        "rc": rc,
        "wall_s": seconds,
        **used,
        **reported_peak(tail),
        "state_at_start": state_at_start,
        "argv": " ".join(argv[3:]),
        "log": log_lines(tail),
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
    root: str,
    k: int,
    batch_size: int,
    block_size: int,
    chunk: int | None,
    batches: int = 1,
    device: str = "cpu",
) -> None:
    """In a child: seconds of one gradient and of HVP blocks of k probes (JSON on stdout).
    With several batches the graphs are rebuilt at every call, one rebuild per block. On a GPU
    every timing waits for the device, and the peak allocation is reported."""
    import torch

    from smoothprobe.checkpoints import DataOptions, load_checkpoint

    data = DataOptions(
        path=f"{root}/val.bin",
        batch_size=batch_size,
        num_batches=batches,
        block_size=block_size,
        seed=0,
    )
    problem = load_checkpoint(f"{root}/ckpt.pt", data=data, device=device).problem
    gpu = problem.device.type == "cuda"

    def clock() -> float:
        if gpu:
            torch.cuda.synchronize(problem.device)
        return time.perf_counter()

    grad_s = []
    for _ in range(2):  # the first call warms up (on a GPU: kernels, allocator)
        t0 = clock()
        problem.gradient()
        grad_s.append(clock() - t0)
    t0 = clock()
    op = problem.hvp_operator(retain_graphs=batches == 1, chunk_size=chunk)
    graph_s = clock() - t0
    v = torch.randn(k, problem.d, generator=torch.Generator().manual_seed(0))
    v = v.to(device=problem.device, dtype=problem.dtype)
    times = []
    for _ in range(3 if gpu else 2):
        t0 = clock()
        op.matvec(v)
        times.append(clock() - t0)
    extra = {}
    if gpu:
        extra = {
            "gpu": torch.cuda.get_device_name(problem.device),
            "torch": torch.__version__,
            "peak_device_gib": torch.cuda.max_memory_allocated(problem.device) / GIB,
        }
    print(
        json.dumps(
            {
                "gradient_s": grad_s[-1],  # warm
                "gradient_first_s": grad_s[0],
                "graph_build_s": graph_s,
                "graph_gib": op.graph_bytes / GIB,
                "hvp_block_s": times,
                "per_probe_s": [t / k for t in times],
                "per_probe_gradients": [t / k / grad_s[-1] for t in times],
                "batches": batches,
                "graphs": "retained" if batches == 1 else "rebuilt per call",
                "d": problem.d,
                "device": str(problem.device),
                **extra,
            }
        )
    )


def run_costs(args: argparse.Namespace, results: Path) -> None:
    """``costs``: one child per (k, allocator), alternating, ``--repeat`` rounds."""
    rounds = [(k, name) for _ in range(args.repeat) for k in args.k for name in args.allocators]
    for k, allocator in rounds:  # alternating: A, B, A, B, ...
        argv = [sys.executable, __file__, "costs-child", args.root, "--k", str(k),
                "--batch-size", str(args.batch_size), "--block-size", str(args.block_size),
                "--batches", str(args.batches), "--device", args.device]  # fmt: skip
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
        record(row, results)


def run_suites(args: argparse.Namespace, results: Path) -> None:
    """``suites``: each suite in its own child; records, log lines and peaks in its row."""
    for name, flags in SUITES.items():
        if args.only and name not in args.only:
            continue
        stop = args.stop_after if args.stop_after is not None else STOP_AFTER.get(name)
        cuts = [] if args.full else CUTS.get(name, [])
        with tempfile.TemporaryDirectory() as tmp:  # records, and state a stop leaves
            out = Path(tmp, "suite.jsonl")
            chosen = [*sample_flags(args), *flags, *cuts]
            chosen += ["--memory", args.memory] if args.memory else []
            argv = [sys.executable, *measure_argv(Path(args.root), chosen, out)]
            rc, seconds, used, tail = run_child(argv, limit_gib=args.limit_gib, stop_after=stop)
            values = read_records(out)
        log = log_lines(tail)
        record({"phase": f"suite {name}", "rc": rc, "wall_s": seconds, **used,
                **reported_peak(tail), "argv": " ".join(argv[3:-2]), "log": log,
                "records": values, "stopped_after_s": stop,
                **({"tail": tail[-1500:]} if rc else {})}, results)  # fmt: skip


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
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (every phase)")
    parser.add_argument(
        "--full", action="store_true", help="suites: the default sample and budgets, no cuts"
    )
    parser.add_argument(
        "--stop-after", type=float, default=None, help="suites: Ctrl-C every suite after this"
    )
    parser.add_argument(
        "--results", type=Path, default=None,
        help="JSON-lines file of the rows (default bench/results/scale_cpu.jsonl, or "
        "scale_gpu.jsonl on a GPU)",
    )  # fmt: skip
    parser.add_argument("--limit-gib", type=float, default=17.0, help="address-space cap (CPU)")
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
    gpu = args.device.startswith("cuda")
    results = args.results or RESULTS / ("scale_gpu.jsonl" if gpu else "scale_cpu.jsonl")
    if gpu:  # a CUDA process reserves far more address space than it uses: no cap
        args.limit_gib = None
    if args.what == "run":
        record(issue_run(Path(args.root), sample=sample_flags(args), memory=args.memory), results)
        return
    if args.what == "torchrun":
        row = torchrun_check(Path(args.root), memory=args.memory or "4GiB", ranks=args.ranks)
        record(row, results)
        diff = row["lambda_max_rel_diff"]
        print(f"lambda_max rel diff {diff:.2e}: " + ("PASS" if row["passed"] else "FAIL")
              if diff is not None else "lambda_max missing: FAIL")  # fmt: skip
        sys.exit(0 if row["passed"] else 1)
    if args.what == "costs-child":
        costs_child(
            args.root,
            args.k[0],
            args.batch_size,
            args.block_size,
            args.chunk,
            args.batches,
            args.device,
        )
        return
    if args.what in ("make", "all") and not Path(args.root, "ckpt.pt").exists():
        subprocess.run(
            [sys.executable, str(Path(__file__).parent / "make_gpt2_small.py"), args.root],
            check=True,
        )
    if args.what in ("costs", "all"):
        run_costs(args, results)
    if args.what in ("suites", "all"):
        run_suites(args, results)


if __name__ == "__main__":
    main()
