"""Deprecated alias of ``smoothprobe.compare`` (the comparison layer, split along its data flow).

Kept so that ``from smoothprobe import bounds`` and ``smoothprobe.bounds.rho_table`` keep working;
new code imports from ``smoothprobe.compare``.
"""

from smoothprobe.compare import *  # noqa: F403
from smoothprobe.compare import __all__  # noqa: F401
