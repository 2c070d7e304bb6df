"""Training throughput: images per second over a window of training batches (``make bench``, docs/speed.md).

    xgen ... +callbacks.throughput._target_=xgen.callbacks.throughput.Throughput +callbacks.throughput.path=t.json

The clock starts at batch ``warmup`` of the first epoch and stops after ``steps`` more batches (on a
GPU after a synchronize, so queued kernels are counted); the result goes to the run's log and, with
``path``, to a JSON file. It costs two ``time.perf_counter()`` calls a batch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
import torch

from xgen.errors import ConfigError

log = logging.getLogger("xgen")


class Throughput(L.Callback):
    """Images/s of training batches ``warmup`` .. ``warmup + steps - 1`` (all remaining when ``steps`` is None)."""

    def __init__(self, warmup: int = 20, steps: int | None = None, path: str | None = None):
        if int(warmup) < 0 or (steps is not None and int(steps) < 1):
            raise ConfigError(f"callbacks.throughput: warmup must be >= 0 and steps >= 1, got {warmup}, {steps}")
        self.warmup, self.steps, self.path = int(warmup), None if steps is None else int(steps), path
        self.t0: float | None = None
        self.t1: float | None = None
        self.batches = 0
        self.images = 0

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.t0 is None and batch_idx == self.warmup:
            self._sync(pl_module)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.t0 is None or (self.steps is not None and self.batches >= self.steps):
            return
        self.batches += 1
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.images += int(x.shape[0])
        if self.steps is None or self.batches == self.steps:
            if self.steps is not None:
                self._sync(pl_module)
            self.t1 = time.perf_counter()

    @property
    def images_per_s(self) -> float | None:
        if self.t0 is None or self.t1 is None or self.t1 <= self.t0:
            return None
        return self.images / (self.t1 - self.t0)

    def on_train_end(self, trainer, pl_module) -> None:
        result = {"images_per_s": self.images_per_s, "batches": self.batches, "images": self.images,
                  "seconds": None if self.t1 is None or self.t0 is None else self.t1 - self.t0}
        log.info("throughput: %s", result)
        if self.path and trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(result))
