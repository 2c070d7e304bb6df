"""CollapseGuard: notice the failure the thesis calls training collapse (§4.5, fig. 4.17) while it happens.

Signs: the discriminator's loss falls to ~0 (it wins outright) while the generator's loss keeps
growing for many steps, or a loss becomes NaN/inf. The guard reads the model's last losses every
``check_every_n_steps`` steps (one host sync then, none in between), logs a warning naming the step,
and, as configured, only warns, stops training, or restores the last state that looked healthy
(model and optimiser states kept in memory at healthy checks).
"""

from __future__ import annotations

import copy
import logging
import math

import lightning as L

from xgen.errors import ConfigError
from xgen.protocols import Adversarial, require

log = logging.getLogger("xgen")
ACTIONS = ("warn", "stop", "restore")


class CollapseGuard(L.Callback):
    """Args:
        d_threshold: discriminator loss below which D is considered to win outright.
        patience: consecutive checks with D below the threshold and G's loss above its value at the
            first of them before collapse is declared.
        check_every_n_steps: how often (training batches) the losses are read.
        action: ``warn`` | ``stop`` | ``restore``.
        snapshot_every_n_checks: how often a healthy state is copied for ``restore``.
    """

    def __init__(self, d_threshold: float = 0.05, patience: int = 10, check_every_n_steps: int = 20,
                 action: str = "warn", snapshot_every_n_checks: int = 5):
        if action not in ACTIONS:
            raise ConfigError(f"callbacks.collapse_guard.action: choose one of {ACTIONS}, got {action!r}")
        if d_threshold <= 0 or patience < 1 or check_every_n_steps < 1 or snapshot_every_n_checks < 1:
            raise ConfigError("callbacks.collapse_guard: d_threshold > 0, patience >= 1, check_every_n_steps >= 1 "
                              "and snapshot_every_n_checks >= 1 are required")
        self.d_threshold, self.patience = float(d_threshold), int(patience)
        self.every, self.action, self.snapshot_every = int(check_every_n_steps), action, int(snapshot_every_n_checks)
        self.events: list[dict] = []
        self._streak = 0
        self._g_start = math.inf
        self._checks = 0
        self._snapshot: dict | None = None

    def reset(self) -> None:
        self._streak, self._g_start = 0, math.inf

    def _snapshot_state(self, trainer, pl_module) -> None:
        self._snapshot = {"model": copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}),
                          "optimizers": [copy.deepcopy(o.state_dict()) for o in trainer.optimizers],
                          "step": trainer.global_step}

    def _restore(self, trainer, pl_module) -> bool:
        if self._snapshot is None:
            return False
        pl_module.load_state_dict(self._snapshot["model"])
        for opt, state in zip(trainer.optimizers, self._snapshot["optimizers"]):
            opt.load_state_dict(state)
        return True

    def check(self, step: int, loss_d: float, loss_g: float | None) -> str | None:
        """Feed one reading; returns 'nonfinite' or 'collapse' when the guard fires, else None."""
        values = [loss_d] + ([loss_g] if loss_g is not None else [])
        if not all(math.isfinite(v) for v in values):
            return "nonfinite"
        if loss_d < self.d_threshold and loss_g is not None:
            if self._streak == 0:
                self._g_start = loss_g
            self._streak += 1
            if self._streak >= self.patience and loss_g > self._g_start:
                return "collapse"
        else:
            self.reset()
        return None

    def on_fit_start(self, trainer, pl_module) -> None:
        require(pl_module, Adversarial, "callbacks.collapse_guard",
                "It watches a generator/discriminator game; VAEs and classifiers have none.")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx % self.every:
            return
        losses = pl_module.last_losses
        if not losses or "loss_d" not in losses:
            return
        loss_d = float(losses["loss_d"])
        loss_g = float(losses["loss_g"]) if "loss_g" in losses else None
        step = trainer.global_step
        kind = self.check(step, loss_d, loss_g)
        self._checks += 1
        if kind is None:
            if self.action == "restore" and self._streak == 0 and self._checks % self.snapshot_every == 1 % self.snapshot_every:
                self._snapshot_state(trainer, pl_module)
            return
        what = ("a loss is not finite" if kind == "nonfinite" else
                f"training collapse: the discriminator loss stayed below {self.d_threshold} for {self._streak} checks "
                f"while the generator loss grew from {self._g_start:.3g} to {loss_g:.3g}")
        msg = (f"CollapseGuard at step {step} (epoch {trainer.current_epoch}): {what} "
               f"(loss_d={loss_d:.4g}, loss_g={loss_g if loss_g is None else round(loss_g, 4)}).")
        self.events.append({"step": step, "epoch": trainer.current_epoch, "kind": kind, "loss_d": loss_d,
                            "loss_g": loss_g, "action": self.action})
        if self.action == "stop":
            log.warning(msg + " Stopping (callbacks.collapse_guard.action=stop). Try scheduled dropout in D "
                        "(callbacks.dropout_schedule), a lower model.lr_d or model.loss=wgan_gp.")
            trainer.should_stop = True
        elif self.action == "restore":
            ok = self._restore(trainer, pl_module)
            log.warning(msg + (f" Restored the state of step {self._snapshot['step']}." if ok else
                               " No healthy state saved yet; continuing."))
        else:
            log.warning(msg + " Continuing (callbacks.collapse_guard.action=warn).")
        self.reset()
