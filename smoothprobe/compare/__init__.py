"""The comparison with theory: from records to ρ(Φ), predicted iteration ratios and noise terms.

The package follows the data flow, one step per module (see docs/theory.md for the maths):

==============  ==================================================================================
``frame``       records → a normalized DataFrame; checkpoint/basis/partition order and selection
``intervals``   one record → an Interval (each end labelled); combining several; L₂ from ℓ2 records
``constants``   d·L₂, H∞ and H(Φ) per checkpoint × basis, bracketed
``brackets``    a constant's bracket and point value; ρ = H(Φ)/(d·L₂) (the only place), no pandas
``rho``         the ρ(Φ) table, predicted T_Φ/T_SGD, original vs rotated
``noise``       gradient-noise terms and their ratios
``headline``    the numbers of the report's opening paragraph
==============  ==================================================================================

Every function is pure: it takes records (``load_records``) and returns a tidy DataFrame or dict.
The library never imports the report layer; the report layer formats what this package computes.
"""

import importlib

_EXPORTS = {
    "OPTIMIZER_FOR_PARTITION": "constants",
    "constants_table": "constants",
    "PARTITION_ORDER": "frame",
    "basis_order": "frame",
    "checkpoint_order": "frame",
    "normalize_records": "frame",
    "partition_order": "frame",
    "select_checkpoint": "frame",
    "step_key": "frame",
    "headline_numbers": "headline",
    "combine_intervals": "intervals",
    "interval_from_row": "intervals",
    "l2_interval": "intervals",
    "quantity_interval": "intervals",
    "record_interval": "intervals",
    "NOISE_TERMS": "noise",
    "noise_table": "noise",
    "STRUCTURE_ONLY": "rho",
    "THEORY_NOTE": "rho",
    "rho_table": "rho",
    "rotation_table": "rho",
    "bracket": "brackets",
    "rho_interval": "brackets",
}
__all__ = [
    "NOISE_TERMS",
    "OPTIMIZER_FOR_PARTITION",
    "PARTITION_ORDER",
    "STRUCTURE_ONLY",
    "THEORY_NOTE",
    "basis_order",
    "bracket",
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


def __getattr__(name: str):
    """Imports an exported name on first access (PEP 562): ``brackets`` needs no pandas."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smoothprobe.compare' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"smoothprobe.compare.{module}"), name)
    globals()[name] = value
    return value
