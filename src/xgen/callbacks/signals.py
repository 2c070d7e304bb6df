"""Stop cleanly on a signal: :class:`StopOnSignal` checks a watch (the runtime's
:class:`xgen.runtime.signals.SignalWatch`, or anything with ``install()``, ``signum`` and
``raise_if_signalled(path, step)``) after every training batch and epoch; when a signal came it saves
``last.ckpt`` of that exact state (atomically, with RNG states and data position) and lets the watch raise.

The watch is found through this module's registry of the active watch: whoever watches the signals
(the runtime's ``SignalWatch`` while a job runs) registers itself with :func:`set_active_watch` and puts
the previous one back when it ends; a :class:`StopOnSignal` built without a watch (as the config's
``callbacks.stop_on_signal`` is) reads :func:`active_watch` at every check, and does nothing when there is
none (training from Python, outside a job). The library never imports the runtime: the runtime calls in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

_ACTIVE_WATCH: Any = None


def set_active_watch(watch: Any) -> Any:
    """Make ``watch`` the active signal watch (None: none); returns the one it replaces, to be put back
    with another call when ``watch`` ends."""
    global _ACTIVE_WATCH
    previous, _ACTIVE_WATCH = _ACTIVE_WATCH, watch
    return previous


def active_watch() -> Any:
    """The active signal watch, or None."""
    return _ACTIVE_WATCH


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
    trainer.save_checkpoint(path, weights_only=False)  # the full state (and no "weights_only was not set" line)
    return path


class StopOnSignal(Callback):
    """Checks a signal watch after each training batch and epoch: save, then stop.

    ``watch``: the watch to check; None (the config's entry) reads the active one (:func:`active_watch`)
    at every check. ``run_dir``: where ``last.ckpt`` goes when the trainer has no checkpoint callback
    with a folder (``<run_dir>/checkpoints/last.ckpt``); None: the trainer's ``default_root_dir`` (the
    run directory of an xgen job)."""

    def __init__(self, watch: Any = None, run_dir: str | Path | None = None):
        self.watch = watch
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def _watch(self) -> Any:
        return self.watch if self.watch is not None else _ACTIVE_WATCH

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registered its own SIGTERM handler (which exits 0 without saving) when fit started
        watch = self._watch()
        if watch is not None:
            watch.install()

    def _stop(self, trainer) -> None:
        watch = self._watch()
        if watch is None or watch.signum is None:
            return
        path = save_last(trainer, self.run_dir if self.run_dir is not None else trainer.default_root_dir)
        watch.raise_if_signalled(path, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop(trainer)
