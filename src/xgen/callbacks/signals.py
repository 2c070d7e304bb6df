"""Stop cleanly on a signal: :class:`StopOnSignal` checks a watch (the runtime's
:class:`xgen.runtime.signals.SignalWatch`, or anything with ``install()``, ``signum`` and
``raise_if_signalled(path, step)``) after every training batch and epoch; when a signal came it saves
``last.ckpt`` of that exact state (atomically, with RNG states and data position) and lets the watch raise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def checkpoint_callback(trainer: Any) -> ModelCheckpoint | None:
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            return cb
    return None


def save_last(trainer: Any, run_dir: str | Path) -> str:
    """Save ``last.ckpt`` of the current state, where the run's checkpoint callback keeps it (else
    ``<run dir>/checkpoints/last.ckpt``), atomically."""
    from xgen.callbacks.checkpoint import Checkpoint, install_atomic_io

    install_atomic_io(trainer)
    cb = checkpoint_callback(trainer)
    if isinstance(cb, Checkpoint):
        return cb.save_last_now(trainer)
    path = str(Path(cb.dirpath if cb is not None else Path(run_dir) / "checkpoints") / "last.ckpt")
    trainer.save_checkpoint(path)
    return path


class StopOnSignal(Callback):
    """Checks the active :class:`SignalWatch` after each training batch and epoch: save, then stop."""

    def __init__(self, watch: Any, run_dir: str | Path):
        self.watch, self.run_dir = watch, Path(run_dir)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registered its own SIGTERM handler (which exits 0 without saving) when fit started
        self.watch.install()

    def _stop(self, trainer) -> None:
        if self.watch.signum is None:
            return
        path = save_last(trainer, self.run_dir)
        self.watch.raise_if_signalled(path, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop(trainer)
