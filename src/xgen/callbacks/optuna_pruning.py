"""Prune an Optuna trial from its validation metric: the job side of ``hparams_search=optuna``.

The sweeper (``hydra/sweeper=xgen_optuna``) runs each trial as a Hydra job, possibly in another process
or on another machine, and passes ``optuna.trial`` / ``optuna.study_name`` / ``optuna.storage`` in the
job's overrides. This callback re-attaches to that trial through the shared storage, reports the
monitored metric after every validation epoch (step = epoch) and raises ``optuna.TrialPruned`` when the
study's pruner says so; the sweeper records the job as PRUNED. Under DDP only rank 0 talks to the
storage; its decision is broadcast so that every rank stops at the same point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L

from xgen.errors import ConfigError, check

if TYPE_CHECKING:
    import optuna

# study user attr holding the sweeper's pruner config: jobs rebuild the same pruner from it
PRUNER_ATTR = "xgen_pruner"


def open_storage(url: str) -> "optuna.storages.RDBStorage":
    """Optuna's RDB storage for ``url``. SQLite waits up to 60 s for a lock, since parallel jobs and
    the sweeper write to the same file."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def attach_trial(study_name: str, storage: str, number: int) -> "optuna.Trial":
    """The live trial ``number`` of a study in ``storage``, with the study's pruner (as the sweeper
    configured it, read from the study's user attrs; Optuna's default MedianPruner otherwise)."""
    import optuna
    from xgen.checkpoint.safety import instantiate

    rdb = open_storage(storage)
    try:
        study_id = rdb.get_study_id_from_name(study_name)
    except KeyError:
        raise ConfigError(f"optuna.study_name: no study {study_name!r} in {storage}; the sweeper sets "
                          "optuna.* for its jobs, leave them null outside a search") from None
    try:
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, int(number))
    except KeyError:
        raise ConfigError(f"optuna.trial: study {study_name!r} has no trial {number}") from None
    spec = rdb.get_study_user_attrs(study_id).get(PRUNER_ATTR)
    # the study database is a file like any other: only Optuna's own pruners are built from it
    pruner = instantiate(spec, "pruner", "optuna pruner", storage) if spec else None
    # the job samples nothing (its parameters are fixed in its overrides): a RandomSampler keeps
    # the attached study light
    study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner,
                              sampler=optuna.samplers.RandomSampler())
    return optuna.trial.Trial(study, trial_id)


class OptunaPruning(L.Callback):
    """Report ``monitor`` to an Optuna trial after each validation epoch; stop the job when pruned.

    Args:
        monitor: a metric logged at validation (``val/nelbo``) whose direction is the study's.
        study_name, storage, trial: the trial to report to (set by the sweeper per job). With
            ``trial=None`` the callback does nothing, so the same config trains outside a search.
    """

    def __init__(self, monitor: str, study_name: str | None = None, storage: str | None = None,
                 trial: int | None = None):
        super().__init__()
        check(bool(monitor), "callbacks.optuna_pruning.monitor", "name the validation metric to report, "
              "e.g. val/nelbo")
        check(not str(monitor).startswith("test/"), "callbacks.optuna_pruning.monitor",
              f"{monitor} is only known after training; prune on a validation metric with the same "
              "direction (e.g. callbacks.optuna_pruning.monitor=val/nelbo) or turn pruning off with "
              "callbacks.optuna_pruning=null")
        if trial is not None:
            check(bool(study_name) and bool(storage), "optuna.study_name",
                  "optuna.trial is set but optuna.study_name / optuna.storage are not")
        self.monitor = str(monitor)
        self.study_name, self.storage = study_name, storage
        self.trial_number = None if trial is None else int(trial)
        self._trial: Any = None
        self.pruned_epoch: int | None = None

    @property
    def active(self) -> bool:
        return self.trial_number is not None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.active and stage == "fit" and trainer.is_global_zero and self._trial is None:
            self._trial = attach_trial(str(self.study_name), str(self.storage), self.trial_number)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise ConfigError(f"callbacks.optuna_pruning.monitor: {self.monitor!r} is not logged at "
                              f"validation; logged: {sorted(trainer.callback_metrics)}")
        epoch = int(trainer.current_epoch)
        prune = False
        if trainer.is_global_zero:
            self._trial.report(float(value), step=epoch)
            prune = bool(self._trial.should_prune())
        prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            import optuna

            self.pruned_epoch = epoch
            raise optuna.TrialPruned(f"trial {self.trial_number} pruned after epoch {epoch}: "
                                     f"{self.monitor}={float(value):.6g}")
