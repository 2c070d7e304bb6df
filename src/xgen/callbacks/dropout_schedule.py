"""DropoutSchedule: Dropout after the discriminator's first layers for the first part of training.

The thesis (§4.4, fig. 4.11) adds Dropout(0.25) after D's first layers and keeps it on while
``epoch < num_epochs / 2`` through a global epoch counter; it prevented early training collapse on the
harder datasets. Here the callback puts a :class:`~xgen.nets.gan.ScheduledDropout` after each of the
first ``layers`` blocks of ``discriminator.body`` (reusing one already there) and flips its ``active``
flag at the start of every epoch: no global state, and eval mode never drops.
"""

from __future__ import annotations

import math

import lightning as L
from torch import nn

from xgen.errors import ConfigError
from xgen.protocols import Adversarial, require
from xgen.nets.gan import ScheduledDropout


def _find(block: nn.Module) -> ScheduledDropout | None:
    return next((m for m in block.modules() if isinstance(m, ScheduledDropout)), None)


def insert_dropout(discriminator: nn.Module, layers: int, p: float) -> list[ScheduledDropout]:
    """Append a ScheduledDropout(p) to each of the first ``layers`` blocks of ``discriminator.body``
    (an ``nn.Sequential`` of blocks) unless one is already there; return the dropout modules."""
    body = getattr(discriminator, "body", None)  # a net attribute (xgen.nets.gan.Discriminator), not a model one
    if not isinstance(body, nn.Sequential) or len(body) < layers:
        have = len(body) if isinstance(body, nn.Sequential) else 0
        raise ConfigError(f"callbacks.dropout_schedule.layers: the discriminator has {have} blocks in "
                          f"discriminator.body, cannot add dropout after the first {layers}; lower it.")
    found = []
    for i in range(layers):
        block = body[i]
        drop = _find(block)
        if drop is None:
            drop = ScheduledDropout(p)
            body[i] = block.append(drop) if isinstance(block, nn.Sequential) else nn.Sequential(block, drop)
        drop.p = float(p)
        found.append(drop)
    return found


class DropoutSchedule(L.Callback):
    """Dropout(p) after D's first ``layers`` layers while ``epoch < fraction * max_epochs``.

    Args:
        p: drop probability (thesis: 0.25).
        layers: how many of the discriminator's first layers get dropout (ALOI code: 2; ChestXRay text: 4).
        fraction: part of ``trainer.max_epochs`` with dropout on (thesis: the first half).
        until_epoch: explicit switch-off epoch; overrides ``fraction`` when set.
    """

    def __init__(self, p: float = 0.25, layers: int = 2, fraction: float = 0.5, until_epoch: int | None = None):
        if not 0 < p < 1:
            raise ConfigError(f"callbacks.dropout_schedule.p: must be in (0, 1), got {p}")
        if layers < 1:
            raise ConfigError(f"callbacks.dropout_schedule.layers: must be >= 1, got {layers}")
        if not 0 <= fraction <= 1:
            raise ConfigError(f"callbacks.dropout_schedule.fraction: must be in [0, 1], got {fraction}")
        if until_epoch is not None and until_epoch < 0:
            raise ConfigError(f"callbacks.dropout_schedule.until_epoch: must be >= 0, got {until_epoch}")
        self.p, self.layers, self.fraction, self.until_epoch = float(p), int(layers), float(fraction), until_epoch
        self.modules: list[ScheduledDropout] = []

    def switch_epoch(self, max_epochs: int | None) -> int:
        """First epoch without dropout."""
        if self.until_epoch is not None:
            return int(self.until_epoch)
        if max_epochs is None or max_epochs < 0:
            raise ConfigError("callbacks.dropout_schedule: trainer.max_epochs is not set; set it or give until_epoch")
        return math.ceil(self.fraction * max_epochs)

    def setup(self, trainer, pl_module, stage: str) -> None:
        require(pl_module, Adversarial, "callbacks.dropout_schedule", "Scheduled dropout is for discriminators (GAN family).")
        self.modules = insert_dropout(pl_module.discriminator, self.layers, self.p)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        active = trainer.current_epoch < self.switch_epoch(trainer.max_epochs)
        for m in self.modules:
            m.active = active
        # the same schedule on every rank: a max over processes keeps the value exactly
        pl_module.log("train/dropout_active", float(active), on_step=False, on_epoch=True, sync_dist=True,
                      reduce_fx="max")

    def on_train_end(self, trainer, pl_module) -> None:
        for m in self.modules:
            m.active = False
