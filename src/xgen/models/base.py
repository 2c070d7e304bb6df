"""Pieces every xgen LightningModule shares: injected networks, plain-container hyperparameters."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from xgen.errors import ConfigError, check


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (checkpoints stay loadable with weights_only)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return value


def build_net(spec: nn.Module | Mapping | Callable[..., nn.Module] | None, default: Callable[..., nn.Module],
              key: str, **kwargs: Any) -> nn.Module:
    """Make a network from what the user injected.

    ``spec`` is an ``nn.Module`` (used as is), a Hydra-style mapping with ``_target_`` (instantiated
    with ``kwargs`` such as ``image_shape`` and ``latent_dim`` added), a callable returning a module
    (e.g. a class or ``functools.partial``), or ``None`` (``default(**kwargs)``).
    """
    if spec is None:
        return default(**kwargs)
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, Mapping):
        if "_target_" not in spec:
            raise ConfigError(f"{key}: a network config needs a _target_ (e.g. xgen.nets.vae.ConvEncoder)")
        from hydra.utils import instantiate

        return instantiate(dict(spec), **kwargs)
    if callable(spec):
        return spec(**kwargs)
    raise ConfigError(f"{key}: expected a module, a config with _target_, or a callable; got {type(spec)}")


def check_optim(lr: float, betas, key: str = "model") -> tuple[float, float]:
    check(float(lr) > 0, f"{key}.lr", f"learning rate must be > 0, got {lr}")
    check(len(betas) == 2 and all(0 <= float(b) < 1 for b in betas), f"{key}.betas",
          f"Adam betas must be two numbers in [0, 1), got {list(betas)}")
    return float(betas[0]), float(betas[1])


def adam(params, lr: float, betas, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, fused where PyTorch supports it on the parameters' device (one kernel per step on GPU)."""
    params = list(params)
    fused = bool(params) and params[0].is_cuda
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, fused=fused or None)
