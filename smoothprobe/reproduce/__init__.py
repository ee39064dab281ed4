"""``smoothprobe reproduce``: measured constants against real optimizer runs (issue 13).

Trains one model with every member of the Adam family (Adam, Adam in a rotated basis, Adam-mini,
blockwise Adam per tensor and per layer, AdaSGD) and SGD with and without momentum, from the same
initialisation on the same data order, over a learning-rate grid and several seeds; measures the
smoothness constants of every geometry at checkpoints; compares the bounds' predictions with the
observed steps and computes one verdict per claim of the seed paper.

Modules: ``optimizers`` (the family; BlockAdam), ``tasks`` (models and data), ``runs`` (one
training run), ``measure_step`` (one measurement point, via the library's suites), ``compare``
and ``verdicts`` (tables and verdicts), ``figures`` and ``report`` (output), ``pipeline``
(``run_reproduction``, resumable through a content-hash cache).
"""

from smoothprobe.reproduce.pipeline import ReproduceConfig, quick_config, run_reproduction

__all__ = ["ReproduceConfig", "quick_config", "run_reproduction"]
