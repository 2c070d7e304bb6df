"""CollapseGuard: notice a GAN that is failing while it trains, from its losses and from its samples.

Two kinds of evidence:

* **Losses** (every ``check_every_n_steps`` training steps; one host sync then, none in between):
  the discriminator's loss falls below ``d_threshold`` (it wins outright) while the generator's loss
  keeps growing for ``patience`` checks (thesis §4.5, fig. 4.17), or a loss is NaN/inf.
* **Samples** (every ``check_every_n_epochs`` epochs, on a fixed latent batch): a GAN can fail with
  healthy-looking losses, e.g. a generator that makes one high-frequency texture for every input while
  a discriminator with BatchNorm cannot tell the texture from real images. The guard measures

  - ``guard/diversity``: mean pairwise L2 distance of ``num_samples`` generated images over that of
    as many real training images (1 = as varied as the data; ~0 = one image for every input);
  - ``guard/hf_ratio``: the share of the images' energy in the highest spatial frequencies (a
    discrete Laplacian), generated over real (1 = as smooth as the data; noise is 10-1000x);
  - ``guard/d_real_nll``: the model's ``val/loss_d_real`` (−log D(x) on held-out real images, nats):
    a discriminator that rejects real images without bound has won, or G has left the data;
  - with a shipped classifier for the dataset (``classifier=auto``): ``guard/cls_confidence`` (mean
    top-class probability of the samples; real images ~0.99) and ``guard/cls_entropy`` (entropy of the
    mean predicted class distribution, nats; log 10 = 2.30 when every class is generated).

  Every GAN passes through noisy, uniform samples early on, so a sign is reported only when it has
  stayed past its threshold for ``patience_epochs`` consecutive checks *and* its statistic improved
  by less than ``min_progress`` (relative) over them: a stalled failure, not a run still learning.

On a report the guard logs ``CollapseGuard at step N (epoch E): ...`` with the numbers and, as
configured (``action``), only warns, stops training, restores the last healthy in-memory state (loss
signs only), or fails the run: :class:`TrainingFailed` is raised, so ``summary.json`` records
``status: failed`` with the message. The mutual-information bound and Q's accuracy on generated
samples (``val/mi_cat``, ``val/q_acc``) are *not* evidence of learning: Q can read the codes off any
pattern G draws, a noise texture included, so they stay high on failed runs that this guard flags.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import lightning as L
import torch

from xgen.errors import ConfigError, XgenError
from xgen.protocols import Adversarial, require, value_range_of

log = logging.getLogger("xgen")
ACTIONS = ("warn", "stop", "restore", "fail")
MI_CAVEAT = ("val/mi_cat and val/q_acc stay high on such samples (Q reads the codes from any pattern): they are "
             "not evidence that G models the data")


# sign -> (the statistic it reads, whether a higher value is worse)
SIGN_STAT = {"diversity": ("diversity", False), "noise": ("hf_ratio", True), "d_wins": ("d_real_nll", True),
             "unrecognisable": ("cls_confidence", False), "few_classes": ("cls_entropy", False)}


class TrainingFailed(XgenError, RuntimeError):
    """A run stopped by :class:`CollapseGuard` with ``action=fail``; the message holds the numbers."""


# --------------------------------------------------------------------------- sample statistics
def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean L2 distance between the distinct pairs of a batch (B, ...), B >= 2."""
    f = x.detach().flatten(1).float()
    n = f.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 images")
    return float(torch.cdist(f, f).sum() / (n * (n - 1)))


def high_frequency_share(x: torch.Tensor) -> float:
    """Mean over images of energy(Laplacian(x)) / energy(x − its mean): the share of an image's
    variation in the highest spatial frequencies (a 5-point discrete Laplacian, interior pixels)."""
    x = x.detach().float()
    lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:])
    num = lap.pow(2).flatten(1).mean(1)
    den = (x - x.mean(dim=(1, 2, 3), keepdim=True)).pow(2).flatten(1).mean(1)
    return float((num / den.clamp_min(1e-8)).mean())


def class_statistics(logits: torch.Tensor) -> tuple[float, float]:
    """(mean top-class probability, entropy in nats of the mean class distribution) of classifier logits."""
    p = torch.softmax(logits.float(), 1)
    pm = p.mean(0)
    return float(p.max(1).values.mean()), float(-(pm * pm.clamp_min(1e-12).log()).sum())


class CollapseGuard(L.Callback):
    """Args:
        d_threshold: discriminator loss below which D is considered to win outright.
        patience: consecutive loss checks with D below the threshold and G's loss above its value at
            the first of them before collapse is declared.
        check_every_n_steps: how often (training batches) the losses are read.
        action: ``warn`` | ``stop`` (end training, status completed) | ``restore`` (the last healthy
            state; loss signs only, sample signs warn) | ``fail`` (raise :class:`TrainingFailed`: the
            run's summary.json says ``failed``).
        snapshot_every_n_checks: how often a healthy state is copied for ``restore``.
        sample_checks: measure the samples (module docstring) at the end of training epochs.
        check_every_n_epochs: how often the samples are measured.
        num_samples: generated (and real) images per measurement; the latent batch is fixed.
        min_diversity: ``guard/diversity`` below this is a diversity collapse.
        max_hf_ratio: ``guard/hf_ratio`` above this is noise-like samples.
        max_d_real_nll: ``val/loss_d_real`` above this (nats; 5 = D(x) < 0.7% on held-out real
            images) is the discriminator rejecting real data; ``null`` disables it.
        min_confidence: ``guard/cls_confidence`` below this is unrecognisable samples (0 disables).
        min_class_entropy: ``guard/cls_entropy`` below this (nats) is a collapse onto few classes
            (0 disables).
        classifier: ``auto`` (xgen's shipped classifier for the data module's ``name``, if any),
            ``none``, or a classifier weight file (:class:`xgen.metrics.features.ClassifierExtractor`).
        patience_epochs: consecutive sample checks a sign must persist before it is reported.
        min_progress: relative improvement of the sign's statistic over those checks below which it
            counts as stalled (0.2: e.g. diversity rising by less than 20%, hf_ratio falling by less).
        seed: seed of the fixed latent batch.
    """

    def __init__(self, d_threshold: float = 0.05, patience: int = 10, check_every_n_steps: int = 20,
                 action: str = "warn", snapshot_every_n_checks: int = 5, sample_checks: bool = True,
                 check_every_n_epochs: int = 1, num_samples: int = 256, min_diversity: float = 0.3,
                 max_hf_ratio: float = 20.0, max_d_real_nll: float | None = 5.0, min_confidence: float = 0.0,
                 min_class_entropy: float = 0.0, classifier: str | None = "auto", patience_epochs: int = 3,
                 min_progress: float = 0.2, seed: int = 0):
        if action not in ACTIONS:
            raise ConfigError(f"callbacks.collapse_guard.action: choose one of {ACTIONS}, got {action!r}")
        if d_threshold <= 0 or patience < 1 or check_every_n_steps < 1 or snapshot_every_n_checks < 1:
            raise ConfigError("callbacks.collapse_guard: d_threshold > 0, patience >= 1, check_every_n_steps >= 1 "
                              "and snapshot_every_n_checks >= 1 are required")
        if check_every_n_epochs < 1 or patience_epochs < 1 or num_samples < 2:
            raise ConfigError("callbacks.collapse_guard: check_every_n_epochs >= 1, patience_epochs >= 1 and "
                              f"num_samples >= 2 are required (got {check_every_n_epochs}, {patience_epochs}, "
                              f"{num_samples})")
        if min_diversity < 0 or min_progress < 0 or max_hf_ratio <= 0 or min_confidence < 0 or min_class_entropy < 0 \
                or (max_d_real_nll is not None and max_d_real_nll <= 0):
            raise ConfigError("callbacks.collapse_guard: min_diversity, min_progress, min_confidence, min_class_entropy >= 0 and "
                              "max_hf_ratio, max_d_real_nll > 0 are required")
        self.d_threshold, self.patience = float(d_threshold), int(patience)
        self.every, self.action, self.snapshot_every = int(check_every_n_steps), action, int(snapshot_every_n_checks)
        self.sample_checks, self.every_epochs = bool(sample_checks), int(check_every_n_epochs)
        self.num_samples = int(num_samples)
        self.min_diversity, self.max_hf_ratio = float(min_diversity), float(max_hf_ratio)
        self.max_d_real_nll = None if max_d_real_nll is None else float(max_d_real_nll)
        self.min_confidence, self.min_class_entropy = float(min_confidence), float(min_class_entropy)
        self.classifier_spec = None if classifier in (None, "none", "") else str(classifier)
        self.patience_epochs, self.seed = int(patience_epochs), int(seed)
        self.min_progress = float(min_progress)
        self.events: list[dict] = []
        self.history: list[dict] = []  # one entry of sample statistics per check
        self._streak = 0
        self._g_start = math.inf
        self._checks = 0
        self._snapshot: dict | None = None
        self._sign_values: dict[str, list[float]] = {}  # a sign's statistic at each check of its streak
        self._latent: torch.Tensor | None = None
        self._real: list[torch.Tensor] = []
        self._real_stats: dict[str, float] | None = None
        self._extractor: Any = None

    # ------------------------------------------------------------------ loss signs
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
        if self.sample_checks and sum(r.shape[0] for r in self._real) < self.num_samples:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._real.append(x.detach()[: self.num_samples - sum(r.shape[0] for r in self._real)].clone())
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
        self.reset()
        self._act(trainer, pl_module, msg, restorable=True)

    def _act(self, trainer, pl_module, msg: str, restorable: bool) -> None:
        if self.action == "stop":
            log.warning(msg + " Stopping (callbacks.collapse_guard.action=stop). Try scheduled dropout in D "
                        "(callbacks.dropout_schedule), a lower model.lr_d or model.loss=wgan_gp.")
            trainer.should_stop = True
        elif self.action == "fail":
            log.error(msg + " Failing the run (callbacks.collapse_guard.action=fail).")
            raise TrainingFailed(msg + " (callbacks.collapse_guard.action=fail; action=warn only reports)")
        elif self.action == "restore" and restorable:
            ok = self._restore(trainer, pl_module)
            log.warning(msg + (f" Restored the state of step {self._snapshot['step']}." if ok else
                               " No healthy state saved yet; continuing."))
        else:
            log.warning(msg + f" Continuing (callbacks.collapse_guard.action={self.action}).")

    # ------------------------------------------------------------------ sample signs
    def _classifier(self, trainer, shape: tuple[int, ...]):
        if self.classifier_spec is None:
            return None
        if self._extractor is None:
            from xgen.metrics.features import ClassifierExtractor, shipped_classifier_path

            if self.classifier_spec == "auto":
                name = getattr(trainer.datamodule, "name", None) if trainer.datamodule is not None else None
                if not name or not shipped_classifier_path(str(name)).is_file():
                    self.classifier_spec = None  # no classifier for this data: the other signs still run
                    return None
                ext = ClassifierExtractor(dataset=str(name))
            else:
                ext = ClassifierExtractor(weights=self.classifier_spec)
            try:
                ext.check_shape(shape)
            except ValueError as e:
                log.warning(f"CollapseGuard: no classifier statistics ({e})")
                self.classifier_spec = None
                return None
            self._extractor = ext
        return self._extractor

    @torch.no_grad()
    def measure(self, trainer, pl_module) -> dict[str, float] | None:
        """Sample statistics of the generator now (module docstring); None before enough real images."""
        from xgen.nets.gan import batch_stats

        real = torch.cat(self._real) if self._real else None
        if real is None or real.shape[0] < 2:
            return None
        n = min(self.num_samples, real.shape[0])
        real = real[:n]
        lo, hi = value_range_of(pl_module)
        unit = lambda t: ((t.float() - lo) / (hi - lo)).clamp(0, 1)  # noqa: E731
        if self._latent is None or self._latent.shape[0] != n:
            g = torch.Generator().manual_seed(self.seed)
            self._latent = pl_module.latent.sample(n, generator=g)
        with batch_stats(pl_module.generator):  # as in training, running statistics untouched
            fake = pl_module.generator(self._latent.to(pl_module.device))
        if self._real_stats is None:
            self._real_stats = {"pdist": mean_pairwise_distance(unit(real)), "hf": high_frequency_share(unit(real))}
        stats = {"diversity": mean_pairwise_distance(unit(fake)) / max(self._real_stats["pdist"], 1e-8),
                 "hf_ratio": high_frequency_share(unit(fake)) / max(self._real_stats["hf"], 1e-8)}
        ext = self._classifier(trainer, tuple(fake.shape[1:]))
        if ext is not None:
            ext.to(fake.device)
            conf, ent = class_statistics(ext.extract(fake, (lo, hi)).logits)
            stats.update(cls_confidence=conf, cls_entropy=ent)
        d_real = trainer.callback_metrics.get("val/loss_d_real")
        if d_real is not None:
            stats["d_real_nll"] = float(d_real)
        return stats

    def signs(self, stats: dict[str, float]) -> dict[str, str]:
        """The failure signs these statistics show (name -> what it means, with the numbers)."""
        out: dict[str, str] = {}
        if stats["diversity"] < self.min_diversity:
            out["diversity"] = (f"sample diversity collapsed: mean pairwise distance {stats['diversity']:.3f} x that of "
                                f"real images (< {self.min_diversity})")
        if stats["hf_ratio"] > self.max_hf_ratio:
            out["noise"] = (f"noise-like samples: {stats['hf_ratio']:.1f} x the high-frequency share of real images "
                            f"(> {self.max_hf_ratio})")
        if self.max_d_real_nll is not None and stats.get("d_real_nll", 0.0) > self.max_d_real_nll:
            out["d_wins"] = (f"the discriminator rejects held-out real images: val/loss_d_real = "
                             f"{stats['d_real_nll']:.2f} nats (> {self.max_d_real_nll})")
        if "cls_confidence" in stats and stats["cls_confidence"] < self.min_confidence:
            out["unrecognisable"] = (f"the dataset classifier recognises few samples: mean top-class probability "
                                     f"{stats['cls_confidence']:.2f} (< {self.min_confidence})")
        if "cls_entropy" in stats and stats["cls_entropy"] < self.min_class_entropy:
            out["few_classes"] = (f"samples fall in few classes: entropy of the mean class distribution "
                                  f"{stats['cls_entropy']:.2f} nats (< {self.min_class_entropy})")
        return out

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.sample_checks or (trainer.current_epoch + 1) % self.every_epochs:
            return
        was_training = pl_module.training
        stats = self.measure(trainer, pl_module)
        pl_module.train(was_training)
        if stats is None:
            return
        epoch, step = trainer.current_epoch, trainer.global_step
        self.history.append({"epoch": epoch, "step": step, **stats})
        pl_module.log_dict({f"guard/{k}": torch.tensor(v, dtype=torch.float32) for k, v in stats.items()
                            if k != "d_real_nll"}, on_epoch=True, sync_dist=True, reduce_fx="max")
        # every rank scores the same fixed latent batch with the same (synchronised) model: the values agree,
        # and "max" keeps them exactly (as the FID callback's)
        due = self.update(stats)
        if not due:
            return
        numbers = ", ".join(f"{k}={v:.3g}" for k, v in stats.items())
        msg = (f"CollapseGuard at step {step} (epoch {epoch}): " + "; ".join(due.values())
               + f", for {self.patience_epochs} consecutive checks with less than {self.min_progress:.0%} "
               f"improvement ({numbers}). " + MI_CAVEAT + ".")
        self.events.append({"step": step, "epoch": epoch, "kind": "+".join(due), "stats": stats,
                            "action": self.action})
        self._act(trainer, pl_module, msg, restorable=False)

    def update(self, stats: dict[str, float]) -> dict[str, str]:
        """Feed one check's statistics; returns the signs now due (persistent and stalled)."""
        found = self.signs(stats)
        for name in list(self._sign_values):
            if name not in found:
                del self._sign_values[name]
        due = {}
        for name, what in found.items():
            key, higher_is_bad = SIGN_STAT[name]
            values = self._sign_values.setdefault(name, [])
            values.append(stats[key])
            if len(values) >= self.patience_epochs:
                first, last = values[-self.patience_epochs], values[-1]
                gain = (first - last) if higher_is_bad else (last - first)
                if gain < self.min_progress * max(abs(first), 1e-8):
                    due[name] = what
                    values.clear()  # report again only after another patience_epochs checks
        return due
