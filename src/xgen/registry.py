"""What xgen may build from a file: register your own classes here before loading their checkpoints.

    import xgen.registry
    xgen.registry.allow_target("mypkg.nets.MyEncoder")   # a net named in a config/checkpoint
    xgen.registry.register_model(MyModel)                 # a LightningModule load_model may rebuild

The allow-lists live here (and nowhere else): :mod:`xgen.checkpoint.safety` checks every ``_target_`` a
file names against :data:`KINDS` and :data:`USER_TARGETS`; :func:`xgen.models.load_model` rebuilds only
classes in :data:`MODEL_REGISTRY`.
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L

from xgen.errors import ConfigError

__all__ = ["KINDS", "MODEL_REGISTRY", "USER_TARGETS", "allow_target", "class_path", "register_model"]


def class_path(obj_or_cls: Any) -> str:
    """The import path of a class (or of an object's class): ``module.QualName``."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

# kind -> (allowed import-path prefixes, base class path the located object must subclass)
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "net": (("xgen.nets.",), "torch.nn.Module"),
    "data": (("xgen.data.",), "lightning.pytorch.LightningDataModule"),
    "callback": (("xgen.callbacks.", "lightning.pytorch.callbacks."), "lightning.pytorch.Callback"),
    "logger": (("lightning.pytorch.loggers.",), "lightning.pytorch.loggers.Logger"),
    "trainer": (("lightning.pytorch.trainer.trainer.Trainer", "lightning.pytorch.Trainer"),
                "lightning.pytorch.Trainer"),
    "model": (("xgen.models.",), "lightning.pytorch.LightningModule"),
    "pruner": (("optuna.pruners.",), "optuna.pruners.BasePruner"),
}

USER_TARGETS: dict[str, set[str]] = {k: set() for k in KINDS}
"""Import paths a user allowed with :func:`allow_target`, per kind."""


def allow_target(name: str, kind: str = "net") -> str:
    """Allow configs read from files (and the command line) to instantiate ``name``, e.g.
    ``xgen.registry.allow_target("mypkg.nets.MyEncoder")``; ``kind`` is ``net`` (default), ``data``,
    ``callback``, ``logger`` or ``model``. Returns ``name``. Call it in code you run before loading
    (your own script, or a module named in ``$XGEN_PLUGINS``)."""
    if kind not in KINDS:
        raise ConfigError(f"allow_target: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not IMPORT_PATH.match(name):
        raise ConfigError(f"allow_target: {name!r} is not a dotted import path (e.g. mypkg.nets.MyEncoder)")
    USER_TARGETS[kind].add(name)
    return name


MODEL_REGISTRY: dict[str, type] = {}
"""Import path -> class of every model :func:`load_model` may rebuild (xgen's own, plus any a user
registers with :func:`register_model`). A checkpoint naming anything else is refused before any import."""


def register_model(cls: type, name: str | None = None) -> type:
    """Let :func:`load_model` rebuild ``cls`` (usable as a class decorator). ``name`` defaults to the
    class's import path, the value xgen records in checkpoints."""
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise TypeError(f"register_model: {cls!r} is not a LightningModule class")
    MODEL_REGISTRY[name or class_path(cls)] = cls
    return cls
