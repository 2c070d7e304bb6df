"""The vae-thesis covariance metric (§5.1): how far each image's posterior covariance is from the aggregate
posterior's; it reads the full posterior (``encode``: mean and log-variance), the VAE family only."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xgen.errors import DataError
from xgen.metrics.disentanglement.common import _codes, _device, _EvalMode, _images_for
from xgen.protocols import Encodes, require

__all__ = ["covariance_metric", "posterior_of_model"]


def covariance_metric(mean: Any, logvar: Any, samples: Any = None, generator: torch.Generator | None = None) -> float:
    """The vae-thesis §5.1 metric F̃ = (1/N) Σᵢ ‖Σᵢ(X) − Σ̃(X)‖_F: Σᵢ = diag(exp(logvarᵢ)) the posterior
    covariance of image i, Σ̃ the empirical covariance of samples zᵢ ~ q(z|xᵢ) (one per image, drawn
    with ``generator`` unless ``samples`` are given) — the aggregate posterior's covariance."""
    mu = _codes(mean, "the covariance metric (means)")
    lv = _codes(logvar, "the covariance metric (log-variances)")
    if lv.shape != mu.shape:
        raise DataError(f"the covariance metric: means {mu.shape} and log-variances {lv.shape} differ in shape")
    if mu.shape[0] < 2:
        raise DataError("the covariance metric needs >= 2 images to estimate the aggregate covariance")
    var = np.exp(lv)
    if samples is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64).numpy()
        z = mu + np.sqrt(var) * eps
    else:
        z = _codes(samples, "the covariance metric (samples)")
        if z.shape != mu.shape:
            raise DataError(f"the covariance metric: samples {z.shape} must match the means {mu.shape}")
    agg = np.atleast_2d(np.cov(z, rowvar=False))
    # ‖diag(v) − A‖²_F = ‖A‖²_F − 2 Σ_d v_d A_dd + Σ_d v_d²
    sq = (agg ** 2).sum() - 2 * var @ np.diag(agg) + (var ** 2).sum(1)
    return float(np.sqrt(np.maximum(sq, 0.0)).mean())


def posterior_of_model(model: Any, images: torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(means, log-variances) of q(z|x) for uint8 images, eval mode, no gradients."""
    m = require(model, Encodes, "the covariance metric", "It reads the posterior's covariance (VAE family).")
    device = _device(m)
    mus, lvs = [], []
    with torch.no_grad(), _EvalMode(m):
        for i in range(0, images.shape[0], int(batch_size)):
            x = _images_for(m, images[i:i + int(batch_size)], device)
            mu, lv = m.encode(x)
            if mu.shape[0] != x.shape[0] or lv.shape != mu.shape:
                raise DataError(f"the covariance metric: {type(m).__name__}.encode returned {tuple(mu.shape)} and "
                                f"{tuple(lv.shape)} for {x.shape[0]} images")
            mus.append(mu.double().cpu())
            lvs.append(lv.double().cpu())
    return torch.cat(mus).numpy(), torch.cat(lvs).numpy()
