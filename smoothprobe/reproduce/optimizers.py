"""The optimizer family of the seed paper, on one flat parameter vector φ (θ = R φ).

Where ``torch.optim`` has the optimizer (Adam, SGD with and without momentum) it is used as is.
Blockwise Adam is written here: one second-moment scalar per block b of a partition Φ,
v_b ← β₂ v_b + (1 − β₂)·mean_{i∈b} g_i², and the Adam update with v_b in place of v_i. With
singleton blocks it is Adam (tested against ``torch.optim.Adam``); with one block it is AdaSGD;
per tensor / per layer it is Adalayer; per head and neuron it is Adam-mini.

Every Adam-family member uses β₁ = 0.9, β₂ = 0.95, ε = 1e-8 (stated in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from smoothprobe.errors import SmoothprobeError

BETAS = (0.9, 0.95)
EPS = 1e-8
MOMENTUM = 0.9


class BlockAdam(torch.optim.Optimizer):
    """Adam with one second moment per block of coordinates (Adam-mini / Adalayer / AdaSGD).

    Args:
        params: exactly one flat tensor φ of shape (d,).
        labels: (d,) int64 block id of every coordinate (0..B-1, every id used).
        lr: learning rate.
        betas: (β₁, β₂).
        eps: ε added to √v̂.
    """

    def __init__(self, params, *, labels: torch.Tensor, lr: float, betas=BETAS, eps: float = EPS):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        flat = [p for g in self.param_groups for p in g["params"]]
        if len(flat) != 1 or flat[0].ndim != 1 or flat[0].numel() != labels.numel():
            raise SmoothprobeError("BlockAdam takes one flat (d,) tensor and (d,) block labels")
        self.labels = labels.to(flat[0].device)
        self.sizes = torch.bincount(self.labels).to(flat[0].dtype)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 (torch's signature)
        for group in self.param_groups:
            (p,) = group["params"]
            if p.grad is None:
                continue
            beta1, beta2 = group["betas"]
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(self.sizes)
            state["step"] += 1
            t = state["step"]
            g = p.grad
            state["exp_avg"].mul_(beta1).add_(g, alpha=1 - beta1)
            block_sq = torch.zeros_like(self.sizes).index_add_(0, self.labels, g * g) / self.sizes
            state["exp_avg_sq"].mul_(beta2).add_(block_sq, alpha=1 - beta2)
            denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t))[self.labels]
            p.addcdiv_(
                state["exp_avg"], denom.add_(group["eps"]), value=-group["lr"] / (1 - beta1**t)
            )
        return None


@dataclass(frozen=True)
class OptimizerSpec:
    """One member of the family.

    Attributes:
        name: short name used in records (``adam``, ``adam_rot``, ...).
        label: what the report calls it.
        kind: ``adam``, ``sgd``, ``sgdm`` or ``block`` (BlockAdam).
        partition: partition spec of its geometry (``singleton`` for Adam, ``one`` for SGD and
            AdaSGD, ``tensor``, ``layer``, ``mini`` = head (attention models) or row).
        basis: ``identity`` or ``hadamard`` (trained in rotated coordinates φ = Rᵀθ).
        grid: learning-rate grid name (``adaptive`` or ``sgd``/``sgdm``).
    """

    name: str
    label: str
    kind: str
    partition: str
    basis: str = "identity"
    grid: str = "adaptive"


FAMILY: tuple[OptimizerSpec, ...] = (
    OptimizerSpec("adam", "Adam", "adam", "singleton"),
    OptimizerSpec("adam_rot", "Adam, rotated basis", "adam", "singleton", basis="hadamard"),
    OptimizerSpec("adam_mini", "Adam-mini (head/neuron blocks)", "block", "mini"),
    OptimizerSpec("adam_tensor", "blockwise Adam per tensor", "block", "tensor"),
    OptimizerSpec("adalayer", "Adalayer (per layer)", "block", "layer"),
    OptimizerSpec("adasgd", "AdaSGD (one block)", "block", "one"),
    OptimizerSpec("sgdm", "SGD, momentum 0.9", "sgdm", "one", grid="sgdm"),
    OptimizerSpec("sgd", "SGD", "sgd", "one", grid="sgd"),
)
SGD_ROTATED = OptimizerSpec("sgd_rot", "SGD, rotated basis", "sgd", "one", "hadamard", "sgd")
BY_NAME = {spec.name: spec for spec in (*FAMILY, SGD_ROTATED)}


def make_optimizer(
    spec: OptimizerSpec, phi: torch.Tensor, *, lr: float, labels: torch.Tensor | None = None
) -> torch.optim.Optimizer:
    """The optimizer of ``spec`` over the flat leaf ``phi``.

    Raises:
        SmoothprobeError: a blockwise optimizer without labels, or an unknown kind.
    """
    if spec.kind == "adam":
        return torch.optim.Adam([phi], lr=lr, betas=BETAS, eps=EPS)
    if spec.kind == "sgd":
        return torch.optim.SGD([phi], lr=lr)
    if spec.kind == "sgdm":
        return torch.optim.SGD([phi], lr=lr, momentum=MOMENTUM)
    if spec.kind == "block":
        if labels is None:
            raise SmoothprobeError(f"optimizer {spec.name} needs block labels")
        return BlockAdam([phi], labels=labels, lr=lr)
    raise SmoothprobeError(f"unknown optimizer kind {spec.kind!r}")
