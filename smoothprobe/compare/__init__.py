"""The comparison with theory: from records to ρ(Φ), predicted iteration ratios and noise terms.

The package follows the data flow, one step per module (see docs/theory.md for the maths):

==============  ==================================================================================
``frame``       records → a normalized DataFrame; checkpoint/basis/partition order and selection
``intervals``   one record → an Interval (each end labelled); combining several; L₂ from ℓ2 records
``constants``   d·L₂, H∞ and H(Φ) per checkpoint × basis, bracketed
``rho``         ρ(Φ) = H(Φ)/(d·L₂) (the only place it is computed), predicted T_Φ/T_SGD, rotation
``noise``       gradient-noise terms and their ratios
``headline``    the numbers of the report's opening paragraph
==============  ==================================================================================

Every function is pure: it takes records (``load_records``) and returns a tidy DataFrame or dict.
The library never imports the report layer; the report layer formats what this package computes.
"""

from smoothprobe.compare.constants import OPTIMIZER_FOR_PARTITION, constants_table
from smoothprobe.compare.frame import (
    PARTITION_ORDER,
    basis_order,
    checkpoint_order,
    normalize_records,
    partition_order,
    select_checkpoint,
    step_key,
)
from smoothprobe.compare.headline import headline_numbers
from smoothprobe.compare.intervals import (
    combine_intervals,
    interval_from_row,
    l2_interval,
    quantity_interval,
    record_interval,
)
from smoothprobe.compare.noise import NOISE_TERMS, noise_table
from smoothprobe.compare.rho import (
    STRUCTURE_ONLY,
    THEORY_NOTE,
    rho_interval,
    rho_table,
    rotation_table,
)

__all__ = [
    "NOISE_TERMS",
    "OPTIMIZER_FOR_PARTITION",
    "PARTITION_ORDER",
    "STRUCTURE_ONLY",
    "THEORY_NOTE",
    "basis_order",
    "checkpoint_order",
    "combine_intervals",
    "constants_table",
    "headline_numbers",
    "interval_from_row",
    "l2_interval",
    "noise_table",
    "normalize_records",
    "partition_order",
    "quantity_interval",
    "record_interval",
    "rho_interval",
    "rho_table",
    "rotation_table",
    "select_checkpoint",
    "step_key",
]
