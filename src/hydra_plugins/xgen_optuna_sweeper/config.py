"""The sweeper's config schema, stored in Hydra's ConfigStore as ``hydra/sweeper: xgen_optuna``."""


from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


def _tpe() -> Dict[str, Any]:
    return {"_target_": "optuna.samplers.TPESampler", "seed": None}


def _median() -> Dict[str, Any]:
    return {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 0}


@dataclass
class XgenOptunaSweeperConf:
    """Keys of ``hydra.sweeper`` (see docs/sweeps-optuna.md).

    params: search space, ``key: <Hydra sweep>``: ``choice(a, b)``, ``range(lo, hi[, step])``,
        ``interval(lo, hi)``; tags ``log`` and ``int`` on intervals, e.g.
        ``tag(log, interval(1e-4, 1e-2))``. Sweeps given on the command line join (and override) it.
    direction: ``minimize`` or ``maximize`` the value the task function returns.
    n_trials: trials the study should have finished (COMPLETE, PRUNED or FAIL) when the sweep ends;
        a re-run of the same command only runs the missing ones.
    n_jobs: trials asked for and launched together per batch (through the configured launcher).
    study_name, storage: the Optuna study; ``storage: null`` means
        ``sqlite:///<hydra.sweep.dir>/optuna.db``.
    sampler, pruner: ``_target_`` configs of an Optuna sampler and pruner.
    requeue_interrupted: trials left RUNNING by an interrupted session are marked FAIL (user attr
        ``xgen_interrupted``) when the study is resumed; with ``true`` their parameters are enqueued
        again so that the configuration still gets a full run.
    """

    _target_: str = "hydra_plugins.xgen_optuna_sweeper.sweeper.XgenOptunaSweeper"
    # sampler and pruner reach the sweeper as configs: it builds them itself (and reseeds on resume)
    _recursive_: bool = False
    direction: str = "minimize"
    n_trials: int = 20
    n_jobs: int = 1
    study_name: str = "xgen"
    storage: Optional[str] = None
    sampler: Dict[str, Any] = field(default_factory=_tpe)
    pruner: Dict[str, Any] = field(default_factory=_median)
    requeue_interrupted: bool = True
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="xgen_optuna", node=XgenOptunaSweeperConf,
                             provider="xgen")
