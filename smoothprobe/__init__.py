"""smoothprobe: the geometry of neural-network loss landscapes, measured from checkpoints.

Notebook entry points (every name below is importable from the package):

>>> import torch
>>> from smoothprobe import problem_from_module, measure_l2, measure_linf
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
>>> data = (torch.randn(32, 4), torch.randint(3, (32,)))
>>> problem = problem_from_module(model, torch.nn.functional.cross_entropy, data, dtype="float64")
>>> H = problem.hvp_operator()
>>> l2 = measure_l2(H, generator=0)
>>> l2_norm = next(e.value for e in l2 if e.quantity == "l2_norm")
>>> linf = measure_linf(H, hvps=64, generator=0, l2_norm=l2_norm)
>>> [e.quantity for e in linf][:2]
['l11_norm', 'linf_lower']

The package root is lazy (PEP 562): ``import smoothprobe`` loads nothing heavy, and each name
below imports its module (and torch, where that module needs it) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "__version__": "smoothprobe._version",
    "Bound": "smoothprobe.estimate",
    "Estimate": "smoothprobe.estimate",
    "CostCounter": "smoothprobe.linear_operator",
    "DenseOperator": "smoothprobe.linear_operator",
    "Operator": "smoothprobe.linear_operator",
    "dense_matrix": "smoothprobe.linear_operator",
    "as_operator": "smoothprobe.linear_operator",
    "DataOptions": "smoothprobe.checkpoints",
    "load_checkpoint": "smoothprobe.checkpoints",
    "HessianOperator": "smoothprobe.operators",
    "ParameterLayout": "smoothprobe.layout",
    "TensorSlot": "smoothprobe.layout",
    "Partition": "smoothprobe.partitions",
    "build_partition": "smoothprobe.partitions",
    "Problem": "smoothprobe.problem",
    "problem_from_module": "smoothprobe.problem",
    "load_records": "smoothprobe.records",
    "RotatedOperator": "smoothprobe.rotated_operator",
    "build_basis": "smoothprobe.bases",
    "measure_blockwise": "smoothprobe.suites.blockwise",
    "measure_l2": "smoothprobe.suites.l2",
    "measure_spectral": "smoothprobe.suites.spectral",
    "adam_preconditioner": "smoothprobe.optimizer_state",
    "preconditioned_sharpness": "smoothprobe.estimators.preconditioned",
    "PreconditionedOperator": "smoothprobe.estimators.preconditioned",
    "measure_linf": "smoothprobe.suites.linf",
}

__all__ = [
    "Bound",
    "CostCounter",
    "DataOptions",
    "DenseOperator",
    "Estimate",
    "HessianOperator",
    "Operator",
    "ParameterLayout",
    "Partition",
    "PreconditionedOperator",
    "Problem",
    "RotatedOperator",
    "TensorSlot",
    "as_operator",
    "adam_preconditioner",
    "build_basis",
    "build_partition",
    "dense_matrix",
    "load_checkpoint",
    "load_records",
    "measure_blockwise",
    "measure_l2",
    "measure_spectral",
    "preconditioned_sharpness",
    "measure_linf",
    "problem_from_module",
    "__version__",
]


def __getattr__(name: str):
    """Imports an exported name on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smoothprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from smoothprobe._version import __version__
    from smoothprobe.bases import build_basis
    from smoothprobe.checkpoints import DataOptions, load_checkpoint
    from smoothprobe.estimate import Bound, Estimate
    from smoothprobe.estimators.preconditioned import (
        PreconditionedOperator,
        preconditioned_sharpness,
    )
    from smoothprobe.layout import ParameterLayout, TensorSlot
    from smoothprobe.linear_operator import (
        CostCounter,
        DenseOperator,
        Operator,
        as_operator,
        dense_matrix,
    )
    from smoothprobe.operators import HessianOperator
    from smoothprobe.optimizer_state import adam_preconditioner
    from smoothprobe.partitions import Partition, build_partition
    from smoothprobe.problem import Problem, problem_from_module
    from smoothprobe.records import load_records
    from smoothprobe.rotated_operator import RotatedOperator
    from smoothprobe.suites.blockwise import measure_blockwise
    from smoothprobe.suites.l2 import measure_l2
    from smoothprobe.suites.linf import measure_linf
    from smoothprobe.suites.spectral import measure_spectral
