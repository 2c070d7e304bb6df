"""The k-GANs thesis's member networks (kgans §2.1.1): D = two convolutions + a linear layer,
G = a linear layer + three transposed convolutions.

The thesis gives the layer counts only; widths, kernels and activations here follow DCGAN practice
(Radford et al. 2016): 4×4 stride-2 convs with LeakyReLU(0.2) in D (no normalisation, so that WGAN-GP's
per-sample penalty is exact), BatchNorm + ReLU in G, a tanh (or sigmoid) output. G's first two transposed
convs double the side, the third (3×3, stride 1) maps to the image channels, so any H, W divisible by 4 works
(28×28, 64×64).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from xgen.errors import ConfigError, check
from xgen.nets.gan import OUTPUTS, Discriminator, dcgan_init


def _chw(image_shape: Sequence[int], key: str) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
        raise ConfigError(f"{key}: image_shape must be (channels, height, width), got {tuple(image_shape)}")
    c, h, w = (int(s) for s in image_shape)
    if h % 4 or w % 4:
        raise ConfigError(f"{key}: the k-GAN nets halve the image twice; height and width must be divisible by 4, "
                          f"got {h}x{w}. Fix: resize the data (e.g. data.size=28) or use other nets.")
    return c, h, w


class KGANDiscriminator(Discriminator):
    """Two 4×4 stride-2 convs (LeakyReLU) and a linear layer to one logit; features: the flattened conv maps.

    Args:
        image_shape: (C, H, W), H and W divisible by 4.
        channels: widths of the two convs.
        slope: LeakyReLU slope.
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int] = (64, 128), slope: float = 0.2,
                 init: bool = True):
        super().__init__()
        c, h, w = _chw(image_shape, "model.discriminator")
        chans = [int(k) for k in channels]
        check(len(chans) == 2 and min(chans) >= 1, "model.discriminator.channels",
              f"the thesis's discriminator has two convs: give two positive widths, got {list(channels)}")
        self.body = nn.Sequential(
            nn.Sequential(nn.Conv2d(c, chans[0], 4, 2, 1), nn.LeakyReLU(slope)),
            nn.Sequential(nn.Conv2d(chans[0], chans[1], 4, 2, 1), nn.LeakyReLU(slope)))
        self.feature_dim = chans[1] * (h // 4) * (w // 4)
        self.head = nn.Linear(self.feature_dim, 1)
        if init:
            dcgan_init(self)


class KGANGenerator(nn.Module):
    """A linear layer to a (channels[0], H/4, W/4) map, then three transposed convs: two 4×4 stride-2
    (BatchNorm, ReLU) doubling the side, one 3×3 stride-1 to the image channels, then tanh/sigmoid.

    Args:
        image_shape: (C, H, W), H and W divisible by 4.
        latent_dim: input width.
        channels: widths of the projected map and of the two hidden transposed convs' outputs (3 entries).
        output: ``tanh`` ([-1, 1]) or ``sigmoid`` ([0, 1]).
    """

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (128, 64, 32),
                 output: str = "tanh", init: bool = True):
        super().__init__()
        c, h, w = _chw(image_shape, "model.generator")
        check(output in OUTPUTS, "model.generator.output", f"choose one of {list(OUTPUTS)}, got {output!r}")
        chans = [int(k) for k in channels]
        check(len(chans) == 3 and min(chans) >= 1, "model.generator.channels",
              f"give three positive widths (projected map, then the two hidden deconvs), got {list(channels)}")
        check(int(latent_dim) >= 1, "model.latent", f"the generator needs a latent of width >= 1, got {latent_dim}")
        self.image_shape, self.value_range, self.output = (c, h, w), OUTPUTS[output], output
        self.start = (chans[0], h // 4, w // 4)
        self.fc = nn.Linear(int(latent_dim), chans[0] * (h // 4) * (w // 4), bias=False)
        self.net = nn.Sequential(
            nn.BatchNorm2d(chans[0]), nn.ReLU(True),
            nn.ConvTranspose2d(chans[0], chans[1], 4, 2, 1, bias=False), nn.BatchNorm2d(chans[1]), nn.ReLU(True),
            nn.ConvTranspose2d(chans[1], chans[2], 4, 2, 1, bias=False), nn.BatchNorm2d(chans[2]), nn.ReLU(True),
            nn.ConvTranspose2d(chans[2], c, 3, 1, 1))
        if init:
            dcgan_init(self)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.net(self.fc(latent).view(-1, *self.start))
        return torch.tanh(x) if self.output == "tanh" else torch.sigmoid(x)
