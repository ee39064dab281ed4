"""The ``smoothprobe`` command line (click). See ``smoothprobe_cli.main``."""

import os

# OpenMP threads that wait for each other spin by default; when another process is busy on one
# of our cores, a spinning thread steals the core from the one doing the work and every HVP
# becomes many times slower (bench/threads.py: 3.6 s vs 0.11 s per probe with 2 threads on a
# loaded 2-core machine). OpenMP reads this when torch loads, so it is set before any import of
# torch; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
