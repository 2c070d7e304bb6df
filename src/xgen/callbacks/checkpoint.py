"""Checkpoints that are never lost: atomic writes on any filesystem, every epoch and every N minutes.

``Checkpoint`` is Lightning's ``ModelCheckpoint`` with xgen's defaults and two additions:

* it installs :class:`AtomicCheckpointIO` on the trainer, so every checkpoint (``last.ckpt``, epoch
  files, the one a signal saves) is written to a temporary file *in the same directory*, fsynced, and
  renamed over the old one: a kill at any moment leaves either the previous complete file or the new
  complete file, never a truncated one, and never an orphan in another filesystem's temp dir;
* ``every_n_minutes`` also refreshes ``last.ckpt`` inside long epochs (wall clock, checked after each
  training batch), so a pre-empted job loses at most that much work.

``last.ckpt`` keeps its name when a run directory is moved or copied (no ``last-v1.ckpt``).

A checkpoint is data (:mod:`xgen.checkpoint.schema`): :class:`AtomicCheckpointIO` reads every checkpoint
Lightning restores through :func:`xgen.checkpoint.safety.load_checked` (schema, digests, finite weights) and
records a digest of every entry when it writes one; it removes only regular ``.ckpt`` files inside the
checkpoint folder (never a directory, never through a link). :class:`Checkpoint` takes no path from a
checkpoint's callback state: the "best"/"last" paths it restores are kept only when they name a file
in its own folder, so a crafted ``best_model_path`` can never make it delete anything else. A write
that fails (disk full, read-only, permission denied) names the path and the free space and leaves the
previous checkpoint in place.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any
from weakref import proxy

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from xgen.errors import XgenError, check

log = logging.getLogger("xgen")

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


class WriteError(XgenError):
    """A file could not be written (disk full, read-only file system, permission denied)."""


def _bytes_of(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_bytes_of(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_bytes_of(v) for v in obj)
    return 0


def write_failure(path: Path, e: BaseException, need: int | None = None) -> WriteError:
    """One clear WriteError for a failed write: what happened, where, and the free space there."""
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    except OSError:
        free = None
    free_s = f"{free / 2**20:.1f} MiB free" if free is not None else "free space unknown"
    code = getattr(e, "errno", None)
    text = str(e)
    if code == errno.ENOSPC or "unexpected pos" in text or "No space left" in text or (
            need is not None and free is not None and free < need):
        what = "the disk is full"
    elif code == errno.EROFS:
        what = "the file system is read-only"
    elif code in (errno.EACCES, errno.EPERM):
        what = "permission denied"
    elif code == errno.EDQUOT:
        what = "the disk quota is exceeded"
    else:
        what = f"{type(e).__name__}: {' '.join(text.split())[:160]}"
    size = f"; it needs about {need / 2**20:.1f} MiB" if need else ""
    return WriteError(f"{path}: could not write: {what} ({free_s} on {path.parent}{size}). The previous file, if any, "
                      "is unchanged; free some space (or fix the permissions) and resume with ckpt_path=last.")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save ``obj`` to ``path`` atomically: temp file beside it, fsync, rename, fsync the directory.
    A failure (disk full, read-only, permission) is a :class:`WriteError` naming the path and the free
    space; the previous file is left in place."""
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}{TMP_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, (OSError, RuntimeError)):
            raise write_failure(path, e, _bytes_of(obj)) from None
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
    """Lightning's torch checkpoint IO made safe: atomic, durable writes with a digest of every entry
    (:func:`atomic_torch_save`, :func:`xgen.checkpoint.schema.add_full_digest`); reads checked as data
    (:func:`xgen.checkpoint.safety.load_checked`); removal only of regular ``.ckpt`` files inside ``root``."""

    def __init__(self, root: str | Path | None = None) -> None:
        super().__init__()
        self.root = Path(root).resolve() if root else None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        from xgen.checkpoint.schema import add_full_digest

        atomic_torch_save(add_full_digest(checkpoint) if "state_dict" in checkpoint else checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from xgen.checkpoint.safety import load_checked

        return load_checked(path, map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: Any) -> None:
        p = Path(path)
        if p.is_symlink():  # the link goes, whatever it points at stays
            p.unlink()
            return
        if not p.exists():
            return
        inside = self.root is None or p.resolve().parent == self.root
        if not (p.is_file() and p.suffix == ".ckpt" and inside):
            log.warning("xgen: not removing %s: only .ckpt files inside %s are removed", p, self.root)
            return
        p.unlink()


def install_atomic_io(trainer: Any, root: str | Path | None = None) -> None:
    """Make every checkpoint the trainer writes atomic and every one it reads checked (idempotent)."""
    strategy = trainer.strategy
    io = strategy.checkpoint_io
    if not isinstance(io, AtomicCheckpointIO):
        strategy.checkpoint_io = AtomicCheckpointIO(root)
    elif root is not None and io.root is None:
        io.root = Path(root).resolve()


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
        # set by whoever passes ckpt_path to fit (xgen's runtime does): Lightning's trainer.ckpt_path is only
        # set after the callbacks' setup, where ModelCheckpoint warns that the folder is not empty
        self.resuming = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        import warnings

        with warnings.catch_warnings():
            if self.resuming or trainer.ckpt_path:  # resuming: of course the run's folder holds its checkpoints
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)
        install_atomic_io(trainer, self.dirpath)
        if trainer.is_global_zero and self.dirpath:
            remove_stale_temps(self.dirpath)

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_time = time.monotonic()

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key (its monitor, mode and schedule, all fixed when it is built), computed
        once: Lightning reads it for every hook it calls, about 6 times a training step."""
        key = self.__dict__.get("_xgen_state_key")
        if key is None:
            key = self.__dict__["_xgen_state_key"] = super().state_key
        return key

    def _own_file(self, p: Any) -> bool:
        """Whether ``p`` names a checkpoint file in this callback's own folder (not a link, not elsewhere)."""
        if not isinstance(p, str) or not p or not self.dirpath:
            return False
        path = Path(p)
        return (path.suffix == ".ckpt" and not path.is_symlink() and path.resolve().parent == Path(self.dirpath).resolve()
                and (not path.exists() or path.is_file()))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the best/last bookkeeping, but take no path from the file: a path that is not a
        ``.ckpt`` file in this callback's own folder is dropped (it would be deleted later as the
        "previous best")."""
        from xgen.checkpoint.schema import check_mapping

        number = (int, float, torch.Tensor, type(None))
        state = check_mapping(state_dict, {"monitor": (str, type(None)), "best_model_score": number,
                                           "best_model_path": str, "current_score": number, "dirpath": (str, type(None)),
                                           "best_k_models": dict, "kth_best_model_path": str, "kth_value": number,
                                           "last_model_path": str}, "checkpoint", "callbacks/Checkpoint")
        def here(p: Any) -> Any:  # a moved or copied run: the same file name in this run's own folder
            if isinstance(p, str) and p and not self._own_file(p) and self.dirpath:
                q = str(Path(self.dirpath) / Path(p).name)
                if Path(p).name.endswith(".ckpt") and Path(q).is_file() and self._own_file(q):
                    return q
            return p

        for k in ("best_model_path", "kth_best_model_path", "last_model_path"):
            state[k] = here(state.get(k))
        dropped = [k for k in ("best_model_path", "kth_best_model_path", "last_model_path")
                   if state.get(k) and not self._own_file(state[k])]
        for k in dropped:
            state[k] = ""
        best = {here(p): v for p, v in (state.get("best_k_models") or {}).items()}
        kept = {p: v for p, v in best.items() if self._own_file(p) and isinstance(v, number)}
        if len(kept) != len(best):
            dropped.append("best_k_models")
        state["best_k_models"] = kept
        if dropped:
            log.warning("xgen: ignored %s from the checkpoint: not files in %s", ", ".join(dropped), self.dirpath)
        state["dirpath"] = self.dirpath  # always this run's folder, never the file's
        state.setdefault("best_model_path", "")
        state.setdefault("best_model_score", None)
        super().load_state_dict(state)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint the trainer writes (this callback's, a signal's, a user's) restarts the
        ``every_n_minutes`` clock: the work since then is saved."""
        self._last_time = time.monotonic()

    def last_path(self) -> str:
        """Where ``last.ckpt`` goes (also when nothing has been saved yet)."""
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)

    def save_last_now(self, trainer) -> str:
        """Write ``last.ckpt`` of the current state (mid-epoch saves: timer, signals) through the trainer's
        public ``save_checkpoint`` (atomic: :class:`AtomicCheckpointIO`), then tell the loggers as
        ``ModelCheckpoint`` does. The epoch-end checkpoints stay ``ModelCheckpoint``'s own."""
        path = self.last_path()
        self.last_model_path = path  # before the save: it is part of this callback's state in the file
        trainer.save_checkpoint(path, self.save_weights_only)
        self._last_time = time.monotonic()
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
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
