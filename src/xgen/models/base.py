"""Pieces every xgen LightningModule shares: injected networks, plain-container hyperparameters."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
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


CLASS_KEY = "xgen_class"


def class_path(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def record_class(module: Any, checkpoint: dict) -> None:
    """Store the LightningModule's import path in the checkpoint (call from ``on_save_checkpoint``)."""
    checkpoint[CLASS_KEY] = class_path(module)


def load_model(path: str, map_location: str | torch.device = "cpu"):
    """Load any xgen model from a checkpoint file alone.

    The class comes from the checkpoint's ``xgen_class`` entry, else from the run directory's
    ``config.yaml`` (``model._target_``).
    """
    import importlib
    from pathlib import Path

    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    target = ckpt.get(CLASS_KEY)
    if target is None:
        p = Path(path).resolve()
        for cfg_file in (p.parent / "config.yaml", p.parent.parent / "config.yaml"):
            if cfg_file.is_file():
                from omegaconf import OmegaConf

                target = OmegaConf.load(cfg_file).model["_target_"]
                break
    if target is None:
        raise ConfigError(f"{path}: cannot tell which model this checkpoint holds (no '{CLASS_KEY}' "
                          "entry and no config.yaml beside it).")
    module, _, name = str(target).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls.load_from_checkpoint(path, map_location=map_location)


class StepModule(L.LightningModule):
    """A LightningModule with one Adam over all its parameters (``lr``, ``betas``, ``weight_decay``
    hyperparameters) whose train/val/test steps all go through ``_step(batch, stage)``; its class is
    recorded in checkpoints so :func:`load_model` can rebuild it."""

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record_class(self, checkpoint)

    def configure_optimizers(self):
        h = self.hparams
        return adam(self.parameters(), h.lr, h.betas, h.weight_decay)
