"""smoothprobe: the geometry of neural-network loss landscapes, measured from checkpoints.

Notebook entry points::

    from smoothprobe import problem_from_module, measure_l2, measure_linf
    problem = problem_from_module(model, loss_fn, data, dtype="float64")
    H = problem.hvp_operator()
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
    "problem_from_module",
    "__version__",
]
