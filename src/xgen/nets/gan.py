"""Generators and discriminators of the GAN family, sized from the data module's image shape.

Interfaces (what :mod:`xgen.models.gan` relies on):
  * a generator maps ``(B, latent_dim)`` to images ``(B, C, H, W)`` in its ``value_range``;
  * a discriminator maps images to ``(logits (B,), features (B, feature_dim))``; ``features`` is the
    last hidden layer (InfoGAN's Q head reads it); ``body`` is an ``nn.Sequential`` of blocks
    (layer → [norm] → activation) so that callbacks can add Dropout after the first blocks.

One conv builder covers the DCGAN rules (Radford et al. 2016; thesis §3.2.4): strided convs in D,
fractional-strided (transposed) convs in G, BatchNorm except on D's first and G's last layer, ReLU
in G, LeakyReLU in D, tanh (or sigmoid) output. The InfoGAN paper's MNIST nets, the thesis's ALOI
64×64 nets (figs. 4.11–4.14) and ChestXRay 256×256 nets (§4.4) are settings of it (see conf/model/net).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xgen.errors import ConfigError, check

Shape = Sequence[int]
OUTPUTS = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


def _shape(image_shape: Shape, key: str) -> tuple[int, int, int]:
    if len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
        raise ConfigError(f"{key}: image_shape must be (channels, height, width), got {tuple(image_shape)}")
    return int(image_shape[0]), int(image_shape[1]), int(image_shape[2])


def auto_channels(h: int, w: int, base: int = 64, cap: int = 512, min_side: int = 4) -> list[int]:
    """DCGAN widths for an image size: one stride-2 stage per halving that keeps both sides even and
    >= min_side (28 -> 14 -> 7: [64, 128]; 64 -> 4: [64, 128, 256, 512]), doubling up to ``cap``."""
    n = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= min_side:
        h, w, n = h // 2, w // 2, n + 1
    if n == 0:
        raise ConfigError(f"model.discriminator: a conv net needs even image sides >= 8, got {h}x{w}; "
                          "resize the data (e.g. data.size=28) or use the MLP nets (model/net=gan_mlp)")
    return [min(base * 2 ** i, cap) for i in range(n)]


def _flags(value: bool | Sequence[bool], n: int, key: str) -> list[bool]:
    if isinstance(value, bool):
        return [value] * n
    flags = [bool(v) for v in value]
    check(len(flags) == n, key, f"needs one entry per layer ({n}), got {len(flags)}")
    return flags


def _stages_fit(h: int, w: int, n: int, key: str) -> tuple[int, int]:
    f = 2 ** n
    if h % f or w % f:
        raise ConfigError(f"{key}: {n} stride-2 layers need height and width divisible by {f}, but the data is "
                          f"{h}x{w}. Fix: fewer entries in {key}.channels (channels=null sizes them from the data), "
                          f"nets made for this size (model/net=...), or resized data.")
    return h // f, w // f


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# every BatchNorm layer, by torch's public classes (not their private base class)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
               nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)


@contextmanager
def batch_stats(*modules: nn.Module) -> Iterator[None]:
    """Evaluate as in training but without side effects: dropout off, BatchNorm normalising with the
    batch's own statistics (as every training step does) while its running statistics stay untouched
    (momentum 0). GAN discriminators see real and generated batches separately, so their running
    statistics are a mix of both and suit neither; this is the mode the Q head was trained in."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    bns = [(m, m.momentum) for mod in modules for m in mod.modules() if isinstance(m, BATCH_NORMS)]
    try:
        for mod in modules:
            mod.eval()
        for m, _ in bns:
            m.momentum = 0.0
            m.train()
        yield
    finally:
        for m, mom in bns:
            m.momentum = mom
        for m, mode in saved:
            m.training = mode


class ScheduledDropout(nn.Module):
    """Dropout that a callback switches on and off (``active``) without global state; never drops in
    eval mode."""

    def __init__(self, p: float = 0.25, active: bool = True):
        super().__init__()
        if not 0 <= p < 1:
            raise ConfigError(f"dropout p must be in [0, 1), got {p}")
        self.p, self.active = float(p), bool(active)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.active and self.p > 0:
            return F.dropout(x, self.p, training=True)
        return x

    def extra_repr(self) -> str:
        return f"p={self.p}, active={self.active}"


class Discriminator(nn.Module):
    """Base: ``body`` (blocks) -> flat features -> ``head`` (one logit). Subclasses build the blocks."""

    body: nn.Sequential
    head: nn.Module
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.head(h).squeeze(1), h


class ConvDiscriminator(Discriminator):
    """Strided 4×4 convs (one halving each), an optional fully connected hidden layer, a linear head.

    Args:
        image_shape: (C, H, W); H and W must be divisible by 2**len(channels).
        channels: output widths of the stride-2 convs; ``None`` sizes them from the image (:func:`auto_channels`).
        norm: BatchNorm after each conv (bool or one per conv); DCGAN: all but the first.
        hidden: width of a fully connected layer after the convs (InfoGAN MNIST: 1024), 0 for none.
        slope: LeakyReLU slope (DCGAN 0.2, InfoGAN 0.1).
        bias: give layers not followed by BatchNorm a bias (the ALOI nets have none).
    """

    def __init__(self, image_shape: Shape, channels: Sequence[int] | None = None,
                 norm: bool | Sequence[bool] | None = None, hidden: int = 0, slope: float = 0.2,
                 bias: bool = True, init: bool = True):
        super().__init__()
        c, h, w = _shape(image_shape, "model.discriminator")
        chans = [int(k) for k in (channels if channels is not None else auto_channels(h, w))]
        check(len(chans) >= 1 and min(chans) >= 1, "model.discriminator.channels",
              f"needs at least one positive width, got {chans}")
        n = len(chans)
        flags = _flags([False] + [True] * (n - 1) if norm is None else norm, n, "model.discriminator.norm")
        h0, w0 = _stages_fit(h, w, n, "model.discriminator")
        blocks: list[nn.Module] = []
        cin = c
        for cout, bn in zip(chans, flags):
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=bias and not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(slope))
            blocks.append(nn.Sequential(*layers))
            cin = cout
        feat = cin * h0 * w0
        if hidden:
            blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(feat, int(hidden), bias=False),
                                        nn.BatchNorm1d(int(hidden)), nn.LeakyReLU(slope)))
            feat = int(hidden)
        self.body = nn.Sequential(*blocks)
        self.feature_dim = feat
        self.head = nn.Linear(feat, 1)
        if init:
            dcgan_init(self)


class ConvGenerator(nn.Module):
    """Mirror of :class:`ConvDiscriminator`: [FC hidden] → FC to the smallest map → transposed 4×4 convs.

    Args:
        image_shape, latent_dim: output shape and input width.
        channels: widths of the feature maps, deepest first (the first is the projected map); one
            stride-2 transposed conv per entry, the last one to C channels. ``None``: mirror of
            :func:`auto_channels`.
        norm: BatchNorm after the projection and each hidden transposed conv (bool or one per entry).
        hidden: width of a fully connected layer before the projection (InfoGAN MNIST: 1024), 0 for none.
        output: ``tanh`` (images in [-1, 1]) or ``sigmoid`` ([0, 1]).
        bias: give layers not followed by BatchNorm a bias.
    """

    def __init__(self, image_shape: Shape, latent_dim: int, channels: Sequence[int] | None = None,
                 norm: bool | Sequence[bool] = True, hidden: int = 0, output: str = "tanh", bias: bool = True,
                 init: bool = True):
        super().__init__()
        c, h, w = _shape(image_shape, "model.generator")
        check(output in OUTPUTS, "model.generator.output", f"choose one of {list(OUTPUTS)}, got {output!r}")
        chans = [int(k) for k in (channels if channels is not None else auto_channels(h, w)[::-1])]
        check(len(chans) >= 1 and min(chans) >= 1, "model.generator.channels",
              f"needs at least one positive width, got {chans}")
        n = len(chans)
        flags = _flags(norm, n, "model.generator.norm")
        h0, w0 = _stages_fit(h, w, n, "model.generator")
        self.image_shape, self.value_range, self.output = (c, h, w), OUTPUTS[output], output
        self.start = (chans[0], h0, w0)
        fc: list[nn.Module] = []
        d = int(latent_dim)
        if hidden:
            fc += [nn.Linear(d, int(hidden), bias=False), nn.BatchNorm1d(int(hidden)), nn.ReLU(True)]
            d = int(hidden)
        fc.append(nn.Linear(d, math.prod(self.start), bias=bias and not flags[0]))
        self.fc = nn.Sequential(*fc)
        self.start_norm = nn.Sequential(*([nn.BatchNorm2d(chans[0])] if flags[0] else []), nn.ReLU(True))
        layers: list[nn.Module] = []
        for i, cin in enumerate(chans):
            last = i == n - 1
            cout = c if last else chans[i + 1]
            bn = not last and flags[i + 1]
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last or (bias and not bn)))
            if not last:
                layers += ([nn.BatchNorm2d(cout)] if bn else []) + [nn.ReLU(True)]
        self.net = nn.Sequential(*layers)
        if init:
            dcgan_init(self)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.start_norm(self.fc(latent).view(-1, *self.start))
        x = self.net(x)
        return torch.tanh(x) if self.output == "tanh" else torch.sigmoid(x)


class MLPGenerator(nn.Module):
    """Goodfellow et al. (2014)'s fully connected generator: ReLU hidden layers, tanh/sigmoid output."""

    def __init__(self, image_shape: Shape, latent_dim: int, hidden: Sequence[int] = (256, 512, 1024),
                 output: str = "tanh", norm: bool = False):
        super().__init__()
        c, h, w = _shape(image_shape, "model.generator")
        check(output in OUTPUTS, "model.generator.output", f"choose one of {list(OUTPUTS)}, got {output!r}")
        self.image_shape, self.value_range, self.output = (c, h, w), OUTPUTS[output], output
        layers: list[nn.Module] = []
        d = int(latent_dim)
        for k in hidden:
            layers += [nn.Linear(d, int(k))] + ([nn.BatchNorm1d(int(k))] if norm else []) + [nn.ReLU(True)]
            d = int(k)
        layers.append(nn.Linear(d, c * h * w))
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.net(latent).view(-1, *self.image_shape)
        return torch.tanh(x) if self.output == "tanh" else torch.sigmoid(x)


class MLPDiscriminator(Discriminator):
    """Goodfellow et al. (2014)'s fully connected discriminator (LeakyReLU instead of maxout)."""

    def __init__(self, image_shape: Shape, hidden: Sequence[int] = (1024, 512, 256), slope: float = 0.2):
        super().__init__()
        c, h, w = _shape(image_shape, "model.discriminator")
        check(len(hidden) >= 1, "model.discriminator.hidden", "needs at least one hidden layer")
        blocks: list[nn.Module] = []
        d = c * h * w
        for i, k in enumerate(hidden):
            blocks.append(nn.Sequential(*([nn.Flatten()] if i == 0 else []), nn.Linear(d, int(k)), nn.LeakyReLU(slope)))
            d = int(k)
        self.body = nn.Sequential(*blocks)
        self.feature_dim = d
        self.head = nn.Linear(d, 1)
