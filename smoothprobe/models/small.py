"""Small reference networks for the examples, tests and benchmarks."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected tanh network: ``sizes[0] → sizes[1] → … → sizes[-1]``."""

    def __init__(self, sizes: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """Conv → BatchNorm → SiLU stages, adaptive average pooling to 2×2, linear classifier.

    SiLU rather than ReLU keeps the loss C² everywhere, so finite differences of the gradient
    are a valid check of the Hessian (ReLU kinks make them disagree by a few percent).

    Args:
        channels: output channels of each conv stage (3×3, padding 1).
        num_classes: outputs.
        in_channels: input channels.
    """

    def __init__(self, channels: tuple[int, ...], *, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, padding=1), nn.BatchNorm2d(c), nn.SiLU()]
            prev = c
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(prev * 4, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
