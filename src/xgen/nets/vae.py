"""Encoders and decoders for the VAE family, sized from the data module's image shape.

Every encoder maps images ``(B, C, H, W)`` to ``(mu, logvar)``, each ``(B, latent_dim)``; every decoder
maps codes ``(B, latent_dim)`` to pixel-wise *parameters* ``(B, C, H, W)``: logits for a Bernoulli
likelihood, means before the output activation for a Gaussian one (the model applies the link).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from xgen.errors import ConfigError

Shape = Sequence[int]


def _shape(image_shape: Shape) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ConfigError(f"image_shape must be (channels, height, width), got {tuple(image_shape)}")
    return int(image_shape[0]), int(image_shape[1]), int(image_shape[2])


def num_halvings(h: int, w: int, max_halvings: int, min_side: int = 4) -> int:
    """How many stride-2 stages a conv net can apply while both sides stay even and >= min_side."""
    n = 0
    while n < max_halvings and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= min_side:
        h, w, n = h // 2, w // 2, n + 1
    return n


class MLPEncoder(nn.Module):
    """Fully connected encoder (Kingma & Welling 2014 style); takes any image size."""

    def __init__(self, image_shape: Shape, latent_dim: int, hidden: Sequence[int] = (512, 256)):
        super().__init__()
        c, h, w = _shape(image_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        d = c * h * w
        for k in hidden:
            layers += [nn.Linear(d, k), nn.ReLU(inplace=True)]
            d = k
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x)).chunk(2, dim=1)


class MLPDecoder(nn.Module):
    """Fully connected decoder mirroring :class:`MLPEncoder`."""

    def __init__(self, image_shape: Shape, latent_dim: int, hidden: Sequence[int] = (256, 512)):
        super().__init__()
        self.image_shape = _shape(image_shape)
        layers: list[nn.Module] = []
        d = latent_dim
        for k in hidden:
            layers += [nn.Linear(d, k), nn.ReLU(inplace=True)]
            d = k
        layers.append(nn.Linear(d, math.prod(self.image_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


def _conv_plan(image_shape: Shape, channels: Sequence[int], who: str) -> tuple[int, int, int, int]:
    c, h, w = _shape(image_shape)
    n = num_halvings(h, w, len(channels))
    if n < 2:
        raise ConfigError(
            f"{who} cannot take {c}x{h}x{w} images: it needs height and width divisible by 4 and at "
            f"least 8 (e.g. 28x28, 28x20, 32x32, 64x64). Fix: resize the data (data.size=28 or 32 "
            f"or 64) or use the fully connected nets (model/net=mlp).")
    return c, h >> n, w >> n, n


class ConvEncoder(nn.Module):
    """Strided-conv encoder: one stride-2 4x4 conv per entry of ``channels`` that the image size
    allows (28x28 -> 7x7 with two, 64x64 -> 4x4 with four), then a hidden FC layer and the heads."""

    def __init__(self, image_shape: Shape, latent_dim: int, channels: Sequence[int] = (32, 64, 128, 256),
                 hidden: int = 256):
        super().__init__()
        c, h, w, n = _conv_plan(image_shape, channels, "ConvEncoder")
        layers: list[nn.Module] = []
        cin = c
        for cout in channels[:n]:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True)]
            cin = cout
        layers += [nn.Flatten(), nn.Linear(cin * h * w, hidden), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x)).chunk(2, dim=1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: FC to the smallest feature map, then stride-2 transposed convs."""

    def __init__(self, image_shape: Shape, latent_dim: int, channels: Sequence[int] = (32, 64, 128, 256),
                 hidden: int = 256):
        super().__init__()
        c, h, w, n = _conv_plan(image_shape, channels, "ConvDecoder")
        chans = list(channels[:n])[::-1]  # deepest first
        self.start = (chans[0], h, w)
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, chans[0] * h * w), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(chans[-1], c, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.start))


class ThesisEncoder(nn.Module):
    """The vae-thesis encoder (§4.2, Frey Faces): conv32 3x3 -> conv64 3x3 stride 2 'same' -> conv64
    -> conv64 -> flatten -> Dense32 -> (z_mean, z_log_var). ReLU throughout. With 28x20 inputs and
    a 2-d latent it has the thesis's 379,556 parameters."""

    def __init__(self, image_shape: Shape, latent_dim: int, hidden: int = 32):
        super().__init__()
        c, h, w = _shape(image_shape)
        if h % 2 or w % 2:
            raise ConfigError(f"ThesisEncoder needs even height and width, got {h}x{w}; resize the data.")
        self.body = nn.Sequential(
            nn.Conv2d(c, 32, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(inplace=True),  # 'same' with stride 2: H/2 x W/2
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(64 * (h // 2) * (w // 2), hidden), nn.ReLU(inplace=True))
        self.z_mean = nn.Linear(hidden, latent_dim)
        self.z_log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.z_mean(h), self.z_log_var(h)


class ThesisDecoder(nn.Module):
    """The vae-thesis decoder (§4.2): Dense to the encoder's flattened size -> reshape (64, H/2, W/2)
    -> ConvTranspose32 3x3 stride 2 -> Conv 1 filter 3x3. 45,633 parameters for 28x20 and d=2."""

    def __init__(self, image_shape: Shape, latent_dim: int):
        super().__init__()
        c, h, w = _shape(image_shape)
        if h % 2 or w % 2:
            raise ConfigError(f"ThesisDecoder needs even height and width, got {h}x{w}; resize the data.")
        self.start = (64, h // 2, w // 2)
        self.fc = nn.Sequential(nn.Linear(latent_dim, math.prod(self.start)), nn.ReLU(inplace=True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, c, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.start))
