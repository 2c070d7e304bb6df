"""Checkpoints that are never lost: atomic writes on any filesystem, every epoch and every N minutes.

``Checkpoint`` is Lightning's ``ModelCheckpoint`` with xgen's defaults and two additions:

* it installs :class:`AtomicCheckpointIO` on the trainer, so every checkpoint (``last.ckpt``, epoch
  files, the one a signal saves) is written to a temporary file *in the same directory*, fsynced, and
  renamed over the old one: a kill at any moment leaves either the previous complete file or the new
  complete file, never a truncated one, and never an orphan in another filesystem's temp dir;
* ``every_n_minutes`` also refreshes ``last.ckpt`` inside long epochs (wall clock, checked after each
  training batch), so a pre-empted job loses at most that much work.

``last.ckpt`` keeps its name when a run directory is moved or copied (no ``last-v1.ckpt``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from xgen.errors import check

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save ``obj`` to ``path`` atomically: temp file beside it, fsync, rename, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete temp files a killed writer left in ``directory`` (never a complete checkpoint)."""
    d = Path(directory)
    gone = []
    if d.is_dir():
        for p in d.glob(f"{TMP_PREFIX}*.ckpt.*{TMP_SUFFIX}"):
            try:
                p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with atomic, durable writes (see :func:`atomic_torch_save`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


def install_atomic_io(trainer: Any) -> None:
    """Make every checkpoint the trainer writes atomic (idempotent)."""
    strategy = trainer.strategy
    if not isinstance(strategy.checkpoint_io, AtomicCheckpointIO):
        strategy.checkpoint_io = AtomicCheckpointIO()


class Checkpoint(ModelCheckpoint):
    """ModelCheckpoint, atomic, every epoch by default, plus ``last.ckpt`` every ``every_n_minutes``
    within an epoch (``null``: only at epoch ends). Saves at the end of the training epoch (after
    validation and every other callback), which is also what makes resumed runs bit-exact."""

    def __init__(self, *args: Any, every_n_minutes: float | None = 30.0, **kwargs: Any):
        kwargs.setdefault("save_last", True)
        kwargs.setdefault("save_on_train_epoch_end", True)
        kwargs.setdefault("enable_version_counter", False)  # a copied run directory continues last.ckpt
        super().__init__(*args, **kwargs)
        check(every_n_minutes is None or float(every_n_minutes) > 0, "callbacks.model_checkpoint.every_n_minutes",
              f"must be > 0 or null, got {every_n_minutes}")
        self.every_n_minutes = None if every_n_minutes is None else float(every_n_minutes)
        self._last_time = time.monotonic()

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        install_atomic_io(trainer)
        if trainer.is_global_zero and self.dirpath:
            remove_stale_temps(self.dirpath)

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_time = time.monotonic()

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_time = time.monotonic()

    def last_path(self) -> str:
        """Where ``last.ckpt`` goes (also when nothing has been saved yet)."""
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)

    def save_last_now(self, trainer) -> str:
        """Write ``last.ckpt`` of the current state (mid-epoch saves: timer, signals)."""
        path = self.last_path()
        self.last_model_path = path
        self._save_checkpoint(trainer, path)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_n_minutes is None or not self.save_last:
            return
        due = time.monotonic() - self._last_time >= 60.0 * self.every_n_minutes
        if trainer.world_size > 1:  # every rank must take part in a save: rank 0's clock decides
            if batch_idx % 50:
                return
            due = bool(trainer.strategy.broadcast(due, src=0))
        if due:
            self.save_last_now(trainer)
