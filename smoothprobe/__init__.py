"""smoothprobe: the geometry of neural-network loss landscapes, measured from checkpoints."""

from smoothprobe.estimate import Bound, Estimate
from smoothprobe.layout import ParameterLayout, TensorSlot
from smoothprobe.linear_operator import CostCounter, DenseOperator, Operator, dense_matrix

__version__ = "0.1.0"

__all__ = [
    "Bound",
    "CostCounter",
    "DenseOperator",
    "Estimate",
    "Operator",
    "ParameterLayout",
    "TensorSlot",
    "dense_matrix",
    "__version__",
]
