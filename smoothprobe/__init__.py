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
"""

from smoothprobe.bases import build_basis
from smoothprobe.checkpoints import DataOptions, load_checkpoint
from smoothprobe.estimate import Bound, Estimate
from smoothprobe.layout import ParameterLayout, TensorSlot
from smoothprobe.linear_operator import CostCounter, DenseOperator, Operator, dense_matrix
from smoothprobe.operators import HessianOperator
from smoothprobe.partitions import Partition, build_partition
from smoothprobe.problem import Problem, problem_from_module
from smoothprobe.records import load_records
from smoothprobe.rotated_operator import RotatedOperator
from smoothprobe.suites.blockwise import measure_blockwise
from smoothprobe.suites.l2 import measure_l2
from smoothprobe.suites.linf import measure_linf

__version__ = "0.1.0"

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
    "Problem",
    "RotatedOperator",
    "TensorSlot",
    "build_basis",
    "build_partition",
    "dense_matrix",
    "load_checkpoint",
    "load_records",
    "measure_blockwise",
    "measure_l2",
    "measure_linf",
    "problem_from_module",
    "__version__",
]
