"""Test helper plugin (XGEN_PLUGINS=xgen_killer): a callback that signals its own process at a step."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

import xgen.registry

xgen.registry.allow_target("xgen_killer.KillAt", kind="callback")


class KillAt(Callback):
    """Send ``sig`` to this process when the training batch at ``step`` starts; only once (``marker``)."""

    def __init__(self, step: int, marker: str, sig: str = "SIGKILL"):
        self.step, self.marker, self.sig = int(step), Path(marker), getattr(signal, sig)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), self.sig)
