"""Image classifiers whose penultimate layer doubles as a feature space for FID/KID/PR.

``ThesisCNN`` is the small CNN of the thesis (fig. 4.8) that the Explainability Grids and Decision
Maps explain; ``StrongCNN`` is a wider BatchNorm CNN whose 128-d features serve as xgen's default
offline FID extractor. Both return logits from ``forward`` and penultimate activations from
``features``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from xgen.errors import ConfigError

Shape = Sequence[int]


def _checked_shape(image_shape: Shape, who: str) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ConfigError(f"{who}: image_shape must be (channels, height, width), got {tuple(image_shape)}")
    c, h, w = (int(s) for s in image_shape)
    if h % 4 or w % 4:
        raise ConfigError(f"{who} cannot take {c}x{h}x{w} images: height and width must be divisible by 4 "
                          "(two 2x2 max-pools), e.g. 28x28 or 32x32. Fix: resize the data (data.size=28).")
    return c, h, w


class ThesisCNN(nn.Module):
    """The thesis's Fashion-MNIST classifier (fig. 4.8): conv8-pool-conv16-pool-fc75-dropout-fc10.

    The figure prints no activations; ReLU follows both convolutions and fc1. ``features`` returns the
    75 post-ReLU activations of fc1 (before dropout).
    """

    def __init__(self, image_shape: Shape = (1, 28, 28), num_classes: int = 10, hidden: int = 75,
                 dropout: float = 0.2):
        super().__init__()
        c, h, w = _checked_shape(image_shape, "ThesisCNN")
        self.conv1 = nn.Conv2d(c, 8, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=1, padding=1)
        self.fc1 = nn.Linear(16 * (h // 4) * (w // 4), hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.num_features = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.relu(self.fc1(x.flatten(1)))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class StrongCNN(nn.Module):
    """A stronger small classifier: conv16-pool-conv32-pool-conv64-pool-fc128-dropout-fc10, BatchNorm
    after every conv (~98k parameters for 28x28, ~400 KB as a state_dict).

    ``features`` returns the 128 post-ReLU activations of the fc layer (before dropout).
    """

    def __init__(self, image_shape: Shape = (1, 28, 28), num_classes: int = 10,
                 channels: Sequence[int] = (16, 32, 64), hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        c, h, w = _checked_shape(image_shape, "StrongCNN")
        if len(channels) != 3:
            raise ConfigError(f"StrongCNN: channels must list 3 widths, got {list(channels)}")
        c1, c2, c3 = (int(k) for k in channels)
        self.body = nn.Sequential(*_block(c, c1), nn.MaxPool2d(2), *_block(c1, c2), nn.MaxPool2d(2),
                                  *_block(c2, c3), nn.MaxPool2d(2), nn.Flatten())
        self.fc1 = nn.Linear(c3 * (h // 8) * (w // 8), hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.num_features = hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(self.body(x)))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ARCHS: dict[str, type[nn.Module]] = {"thesis": ThesisCNN, "strong": StrongCNN}
