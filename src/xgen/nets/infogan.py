"""InfoGAN's Q head: the auxiliary distribution Q(c|x) on top of the discriminator's features.

Chen et al. (2016) share all conv layers of D with Q and add one hidden FC layer (128, BN, LeakyReLU)
and the code outputs; the thesis's ALOI Q head (fig. 4.14) is the same with convolutions on the
1024×4×4 map (a 4×4 conv over a 4×4 map is a linear layer on the flattened map). Outputs: logits of
each categorical code, mean and log-variance of each continuous code.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from xgen.errors import check
from xgen.nets.gan import dcgan_init


class QHead(nn.Module):
    """Q(c|x) from D's features.

    Args:
        feature_dim: width of the discriminator's features.
        categorical: number of values of each categorical code.
        continuous: number of continuous codes.
        hidden: width of the shared hidden layer (0: outputs straight from the features).
        var_hidden: width of an extra layer on the log-variance branch only (the thesis's ChestXRay
            head computes the variance through two more layers), 0 for none.
        norm: BatchNorm in the hidden layer.
        slope: LeakyReLU slope.
    """

    def __init__(self, feature_dim: int, categorical: Sequence[int] = (10,), continuous: int = 2,
                 hidden: int = 128, var_hidden: int = 0, norm: bool = True, slope: float = 0.1,
                 init: bool = True):
        super().__init__()
        check(int(hidden) >= 0 and int(var_hidden) >= 0, "model.q_head.hidden",
              f"widths must be >= 0, got hidden={hidden}, var_hidden={var_hidden}")
        self.categorical, self.continuous = [int(k) for k in categorical], int(continuous)
        if hidden:
            self.body: nn.Module = nn.Sequential(nn.Linear(feature_dim, int(hidden), bias=not norm),
                                                 *([nn.BatchNorm1d(int(hidden))] if norm else []),
                                                 nn.LeakyReLU(slope))
            d = int(hidden)
        else:
            self.body, d = nn.Identity(), int(feature_dim)
        self.logits = nn.Linear(d, sum(self.categorical)) if self.categorical else None
        self.mean = nn.Linear(d, self.continuous) if self.continuous else None
        if self.continuous and var_hidden:
            self.logvar: nn.Module | None = nn.Sequential(nn.Linear(d, int(var_hidden)), nn.LeakyReLU(slope),
                                                          nn.Linear(int(var_hidden), self.continuous))
        else:
            self.logvar = nn.Linear(d, self.continuous) if self.continuous else None
        if init:
            dcgan_init(self)

    def forward(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """-> (logits per categorical code [(B, K_i)], means (B, n), log-variances (B, n))."""
        h = self.body(features)
        b = features.shape[0]
        logits = list(self.logits(h).split(self.categorical, dim=1)) if self.logits is not None else []
        if self.mean is not None:
            mean, logvar = self.mean(h), self.logvar(h)
        else:
            mean = logvar = features.new_zeros(b, 0)
        return logits, mean, logvar
