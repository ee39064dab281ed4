"""Compute device and dtype choices, checked before any work (one-line errors)."""

from __future__ import annotations

import os

import torch

from smoothprobe.errors import SmoothprobeError

COMPUTE_DTYPES = ("float64", "float32", "bfloat16")


class DeviceError(SmoothprobeError):
    """The asked device or dtype is not available here."""


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (None: cuda when available, else cpu), checked.

    Under torchrun (``LOCAL_RANK`` set) a plain ``cuda`` means ``cuda:LOCAL_RANK``.

    Raises:
        DeviceError: an unknown name, no CUDA, or a CUDA index out of range.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(
            f"unknown device {name!r}: use cpu, cuda or cuda:N", option="device"
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise DeviceError(
            f"device {name!r} is not supported: use cpu, cuda or cuda:N", option="device"
        )
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {name!r} is not available: this machine has no CUDA; use cpu", option="device"
        )
    count = torch.cuda.device_count()
    local = os.environ.get("LOCAL_RANK", "")
    if device.index is None and local.isdigit():  # under torchrun: one GPU per local rank
        device = torch.device("cuda", int(local))
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device {name!r} is not available: this machine has {count} CUDA device(s), "
            f"cuda:0 … cuda:{count - 1}",
            option="device",
        )
    return device


def check_dtype(dtype: torch.dtype, device: torch.device) -> None:
    """Raises DeviceError when ``device`` cannot compute in ``dtype``."""
    if dtype == torch.bfloat16 and device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise DeviceError(f"{device} does not support bfloat16: use float32", option="dtype")
    if dtype == torch.float64 and device.type == "mps":
        raise DeviceError("mps has no float64: use float32", option="dtype")
