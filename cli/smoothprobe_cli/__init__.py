"""The ``smoothprobe`` command line (click). See ``smoothprobe_cli.main``."""

import os

# OpenMP threads that wait for each other spin by default; when another process is busy on one
# of our cores, a spinning thread steals the core from the one doing the work and every HVP
# becomes many times slower (bench/threads.py: 3.6 s vs 0.11 s per probe with 2 threads on a
# loaded 2-core machine). OpenMP reads this when torch loads, so it is set before any import of
# torch; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Large CPU tensors (a 124M-parameter float64 vector is 1 GB) are fresh mmap'd memory, and
# first-touching it page by page costs 0.5-1.5 s per GB on a VM; on 2 MB transparent huge pages
# (PyTorch's THP_MEM_ALLOC_ENABLE, read at its first large allocation) the same costs 0.1-0.2 s.
# A value the user set is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
