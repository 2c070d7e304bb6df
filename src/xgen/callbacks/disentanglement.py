"""Disentanglement: MIG, β-VAE / FactorVAE metrics, DCI, SAP, modularity and the covariance metric of a model
during training.

Scores the representation a model exposes through ``embed`` (:class:`xgen.protocols.Embeds`: a VAE's
posterior mean, InfoGAN's Q) against the data module's known generative factors (its factor
interface: ``factor_sizes``, ``sample_factors``, ``images_from_factors`` — e.g. ``data=dsprites32``),
with :func:`xgen.metrics.disentanglement.disentanglement_scores`. Runs at the end of training and,
with ``every_n_epochs``, every N training epochs. Keys: ``val/mig`` (+ ``val/mig_<factor>``),
``val/beta_vae_score``, ``val/factor_vae_score``, ``val/dci_disentanglement``, ``val/dci_completeness``,
``val/dci_informativeness``, ``val/sap_score`` (+ ``val/sap_<factor>``), ``val/modularity_score`` and
``val/covariance_metric`` (vae-thesis §5.1; models with a posterior). Per-factor keys use the data
module's ``factor_names`` (dSprites: ``shape``, ``scale``, ``orientation``, ``posX``, ``posY``).
On data without factors (e.g. Frey Faces) only the covariance metric is computed, with a warning.
The final scores land in ``summary.json`` and ``xgen report`` tables.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from xgen.errors import ConfigError, check
from xgen.metrics.disentanglement import METRICS, DisentanglementWarning, FactorData, disentanglement_scores
from xgen.protocols import Embeds, Encodes, require


class Disentanglement(L.Callback):
    """Logs disentanglement scores (``val/...``) at the end of training and every ``every_n_epochs``.

    Args:
        every_n_epochs: also score after every N-th training epoch (``0``: only at the end).
        metrics: any of ``mig``, ``beta_vae``, ``factor_vae``, ``dci``, ``sap``, ``modularity``, ``covariance``.
        num_train, num_eval: points of the estimators (disentanglement_lib: 10,000 and 5,000; the
            CPU default here is smaller — scores from different settings are not comparable).
        batch_size: image pairs per β-VAE point / images per FactorVAE batch (64 as disentanglement_lib).
        num_bins: histogram bins of MIG and modularity (20).
        pool_size: embed this many random images once and draw the β-VAE/FactorVAE batches from them
            (``null``: fresh images for every batch, the protocol, ~num_train·batch_size·2 images).
        importance_model: DCI's per-factor predictor, ``forest`` (fast) or ``gbt`` (disentanglement_lib);
            ``forest_trees`` trees of depth <= ``forest_depth`` for ``forest``.
        covariance_split, covariance_images: images of the data module's split the covariance metric uses.
        seed: seed of every draw, so successive evaluations see the same factors.
    """

    def __init__(self, every_n_epochs: int = 0, metrics: Sequence[str] = METRICS, num_train: int = 5000,
                 num_eval: int = 2000, batch_size: int = 64, num_bins: int = 20, num_variance: int = 5000,
                 pool_size: int | None = 10_000, importance_model: str = "forest", forest_trees: int = 50,
                 forest_depth: int = 10, covariance_split: str = "val",
                 covariance_images: int = 5000, seed: int = 0):
        check(int(every_n_epochs) >= 0, "callbacks.disentanglement.every_n_epochs", f"must be >= 0, got {every_n_epochs}")
        unknown = [m for m in metrics if m not in METRICS]
        check(not unknown, "callbacks.disentanglement.metrics", f"unknown {unknown}; choose from {list(METRICS)}")
        check(int(num_train) >= int(num_bins), "callbacks.disentanglement.num_train",
              f"{num_train} points for {num_bins} histogram bins: MIG needs at least as many points as bins")
        check(pool_size is None or int(pool_size) >= 2 * int(batch_size), "callbacks.disentanglement.pool_size",
              f"must be null or >= 2·batch_size, got {pool_size}")
        check(importance_model in ("forest", "gbt"), "callbacks.disentanglement.importance_model",
              f"'forest' or 'gbt', got {importance_model!r}")
        self.every_n_epochs = int(every_n_epochs)
        self.metrics = tuple(metrics)
        self.settings: dict[str, Any] = dict(num_train=int(num_train), num_eval=int(num_eval), batch_size=int(batch_size),
                                             num_bins=int(num_bins), num_variance=int(num_variance),
                                             pool_size=None if pool_size is None else int(pool_size),
                                             importance_model=importance_model, forest_trees=int(forest_trees),
                                             forest_depth=int(forest_depth), covariance_split=covariance_split,
                                             covariance_images=int(covariance_images), seed=int(seed))
        self.history: list[dict[str, float]] = []
        self._active: tuple[str, ...] = self.metrics
        self._last_step = -1

    def on_fit_start(self, trainer, pl_module) -> None:
        require(pl_module, Embeds, "callbacks.disentanglement",
                "It scores the representation embed(x) returns (VAE posterior means, InfoGAN's Q); "
                "remove the callback for this model.")
        dm = trainer.datamodule
        active = list(self.metrics)
        if not isinstance(dm, FactorData):
            dropped = [m for m in active if m != "covariance"]
            if dropped:
                rank_zero_warn(f"callbacks.disentanglement: {type(dm).__name__} has no known generative factors; "
                               f"{', '.join(dropped)} skipped (use data=dsprites or data=dsprites32).")
            active = [m for m in active if m == "covariance"]
        if "covariance" in active and not isinstance(pl_module, Encodes):
            rank_zero_warn(f"callbacks.disentanglement: {type(pl_module).__name__} has no posterior (encode); "
                           "the covariance metric is skipped.")
            active.remove("covariance")
        if not active:
            raise ConfigError("callbacks.disentanglement: nothing to score for this model and data (no factors, "
                              "no posterior); remove the callback or use data=dsprites32.")
        self._active = tuple(active)

    def evaluate(self, trainer, pl_module) -> dict[str, float]:
        """The scores (keys ``val/...``) of the model as it is now."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DisentanglementWarning)  # the constant factor, every time
            scores = disentanglement_scores(pl_module, trainer.datamodule, metrics=self._active, **self.settings)
        return {f"val/{k}": float(v) for k, v in scores.items()}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.every_n_epochs or (trainer.current_epoch + 1) % self.every_n_epochs or trainer.sanity_checking:
            return
        logs = self.evaluate(trainer, pl_module)
        for k, v in logs.items():
            pl_module.log(k, v, on_step=False, on_epoch=True, sync_dist=False)
        self._record(trainer, logs)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step == self._last_step or trainer.interrupted:
            return  # already scored at this step by the last epoch's evaluation
        logs = self.evaluate(trainer, pl_module)
        for k, v in logs.items():  # read by summary.json / xgen report (self.log is not allowed here)
            trainer.callback_metrics[k] = torch.tensor(v)
        for logger in trainer.loggers:
            logger.log_metrics(logs, step=trainer.global_step)
            logger.save()
        self._record(trainer, logs)

    def _record(self, trainer, logs: dict[str, float]) -> None:
        self._last_step = trainer.global_step
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **logs})

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        from xgen.checkpoint.schema import check_history, check_mapping

        key = f"callbacks/{type(self).__name__}"
        state = check_mapping(state_dict, {"history": list}, "checkpoint", key)
        self.history = check_history(state.get("history", []), "checkpoint", f"{key}/history")
