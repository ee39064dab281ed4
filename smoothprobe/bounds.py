"""Deprecated alias of ``smoothprobe.compare`` (the comparison layer, split along its data flow).

Kept so that ``from smoothprobe import bounds`` and ``smoothprobe.bounds.rho_table`` keep working;
new code imports from ``smoothprobe.compare``.
"""

from smoothprobe import compare as _compare

__all__ = list(_compare.__all__)


def __getattr__(name: str):
    return getattr(_compare, name)
