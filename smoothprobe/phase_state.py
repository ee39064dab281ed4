"""The state files a measurement keeps inside its long phases (under ``measure --out``): the ℓ2
phase's Lanczos state and the loop states of the ℓ∞ and blockwise phases, agreed on by every
torchrun rank and written by rank 0 only."""

from __future__ import annotations

from collections.abc import Callable

from smoothprobe.finished_phases import lanczos_state_path, loop_state_prefix

OnResume = Callable[[str, int], None]  # (the line to print, the HVPs done before)


def _agree(dist):
    """Under torchrun: "found" on every rank, or on none (None in one process)."""
    if dist is None:
        return None
    from smoothprobe.distributed import agreed

    def agree(found: bool) -> bool:  # every rank resumes, or none
        return agreed(float(found), op="min") > 0

    return agree


SAVE_EVERY = 600.0  # seconds between two saves of a phase's state (``measure --save-every``)


def lanczos_checkpoint(
    resume, identity: dict, dist, *, on_resume: OnResume, every_seconds: float = SAVE_EVERY
):
    """The ℓ2 phase's Lanczos state file next to the finished phases (None without them),
    saved at most every ``every_seconds``."""
    if resume is None:
        return None
    from smoothprobe.estimators.lanczos_checkpoint import LanczosCheckpoint

    return LanczosCheckpoint(
        lanczos_state_path(resume),
        identity,
        writer=dist is None or dist.is_main,
        agree=_agree(dist),
        on_resume=on_resume,
        every_seconds=every_seconds,
    )


def loop_checkpoint(
    resume,
    phase: str,
    identity: dict,
    dist,
    *,
    label: str,
    on_resume: OnResume,
    every_seconds: float = SAVE_EVERY,
):
    """The loop state files of ``phase`` next to the finished phases (None without them),
    saved at most every ``every_seconds``."""
    if resume is None:
        return None
    from smoothprobe.estimators.loop_checkpoint import LoopCheckpoint

    return LoopCheckpoint(
        loop_state_prefix(resume, phase),
        identity,
        writer=dist is None or dist.is_main,
        agree=_agree(dist),
        on_resume=on_resume,
        phase=label,
        every_seconds=every_seconds,
    )
