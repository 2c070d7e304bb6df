"""SIGTERM, SIGINT and SLURM's pre-emption signal (SIGUSR1) end a run cleanly: checkpoint, summary, exit.

While a job runs, the signals only set a flag (:class:`SignalWatch`); :class:`StopOnSignal` checks it
after every training batch and at the end of every epoch, saves ``last.ckpt`` of that exact state
(atomically, with every RNG state and the data position: a resume continues bit for bit), and raises
:class:`Interrupted`. The training job then writes ``summary.json`` with status ``interrupted`` and
the command exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT, 138 for SIGUSR1).
A second signal of the same kind stops at once (no checkpoint).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from xgen.callbacks.signals import StopOnSignal, active_watch, set_active_watch

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGUSR1")) if s is not None)


class Interrupted(Exception):
    """A signal stopped the run; ``checkpoint`` is where its state was saved (None if nothing could be)."""

    def __init__(self, signum: int, checkpoint: str | None = None, step: int | None = None):
        self.signum, self.checkpoint, self.step = int(signum), checkpoint, step
        where = f"; state at step {step} saved to {checkpoint}" if checkpoint else "; no checkpoint was saved"
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}{where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SignalWatch:
    """Context manager: while active, SIGTERM/SIGINT/SIGUSR1 set ``self.signum`` instead of killing the
    process (main thread only; elsewhere it does nothing). Entering registers it as the active watch with
    :func:`xgen.callbacks.signals.set_active_watch` (where a :class:`StopOnSignal` without a watch of its
    own finds it); leaving puts the previous one back."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise Interrupted(signum)
        self.signum = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in SIGNALS:
            prev = signal.signal(s, self.handler)
            self._previous.setdefault(s, prev)

    def __enter__(self) -> "SignalWatch":
        self._outer = set_active_watch(self)
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        set_active_watch(self._outer)
        if threading.current_thread() is threading.main_thread():
            for s, prev in self._previous.items():
                signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()

    def raise_if_signalled(self, checkpoint: str | None = None, step: int | None = None) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum, checkpoint, step)


def active() -> SignalWatch | None:
    """The active watch (registered with :mod:`xgen.callbacks.signals` while a :class:`SignalWatch` is entered)."""
    return active_watch()


def attach(trainer: Any, run_dir: str | Path) -> None:
    """Make sure ``trainer`` stops cleanly on signals: :class:`StopOnSignal` is a configured callback
    (``callbacks.stop_on_signal`` in every preset), but a clean stop is part of a job's correctness, so a
    trainer whose config has none (``callbacks=none``, a user's own callbacks, a run's older config.yaml)
    gets one here, for the active watch; and the configured one is moved to the end of the callbacks
    (after the checkpoint callbacks, which Lightning's Trainer puts last): a stop saves after they ran.
    Call :func:`xgen.runtime.resume.attach` after this (ResumeState comes after every callback). No-op
    outside a watch."""
    if active() is None:
        return
    found = [c for c in trainer.callbacks if isinstance(c, StopOnSignal)]
    others = [c for c in trainer.callbacks if not isinstance(c, StopOnSignal)]
    trainer.callbacks = others + (found or [StopOnSignal(run_dir=run_dir)])
