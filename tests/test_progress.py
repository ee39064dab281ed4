"""The progress bar of long runs."""

from __future__ import annotations

import torch

from smoothprobe.progress import ProgressOperator


def test_progress_bar_counts_the_hvps_of_a_resumed_run_apart_from_its_rate():
    """After ``resumed(24)`` the bar reads 24 more, and its rate counts only this process's."""

    class Identity:
        d, dtype, device, layout, cost = 3, torch.float64, torch.device("cpu"), None, None

        def matvec(self, v):
            return v

    op = ProgressOperator(Identity(), desc="linf", total=None)
    op.resumed(24)
    op.matvec(torch.ones(4, 3))
    info = op.bar.format_dict
    assert info["n"] == 28 and info["initial"] == 24
    assert ProgressOperator(Identity(), desc="x", enabled=False).resumed(5) is None  # silent
