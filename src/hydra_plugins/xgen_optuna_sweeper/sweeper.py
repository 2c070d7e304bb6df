"""A Hydra sweeper driving Optuna's ask-and-tell interface.

Each trial is asked for all its hyperparameters *before* its job is launched and they are written into
the job's overrides (``model.lr=0.0031 ...``). The job (in this process, a joblib worker or a submitit
node) therefore composes one fixed config: every DDP rank of it trains the same hyperparameters, which
is the trap of samplers that run inside the job. The job also receives ``++optuna.trial=<number>``,
``++optuna.study_name=...`` and ``++optuna.storage=...`` so that a pruning callback can re-attach to its
trial through the shared storage and report intermediate values.

Outcomes: a returned number -> COMPLETE; ``optuna.TrialPruned`` raised by the job -> PRUNED; any other
exception (or ``SystemExit``, which ``xgen`` uses for config errors) -> FAIL, and the search goes on.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction

from .space import Param, parse_search_space

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

INTERRUPTED_ATTR = "xgen_interrupted"     # user attr of a trial a killed session left RUNNING
REQUEUED_ATTR = "xgen_requeued_from"      # user attr of a trial re-running an interrupted one
FAIL_REASON_ATTR = "xgen_fail_reason"
_SAFE_VALUE = re.compile(r"^[\w/.:\-+@]+$")


class TrialJobFailed(RuntimeError):
    """A trial's task function exited (``SystemExit``) instead of returning; the message says why."""


class _ExitAsFailure:
    """Wraps the task function so that ``SystemExit`` fails one trial instead of ending the search.

    ``xgen`` turns a config error into ``SystemExit(2)``; Hydra only records ``Exception`` as a failed
    job. A ``SystemExit`` raised while handling Ctrl-C (Lightning exits with 1 then) stays an interrupt.
    Picklable, so that joblib and submitit launchers can ship it to their workers.
    """

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task_function(cfg)
        except SystemExit as e:
            cause = e.__context__
            if isinstance(cause, KeyboardInterrupt):
                raise cause from None
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            raise TrialJobFailed(f"the job exited with status {e.code}{detail}") from cause


def quote(value: str) -> str:
    """An override value that Hydra's grammar reads back as this exact string."""
    if _SAFE_VALUE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def absolute_storage(url: str) -> str:
    """``sqlite:///relative.db`` -> an absolute path (jobs may run elsewhere); creates its folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        path = Path(url[len(prefix):]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_url(path)
    return url


class XgenOptunaSweeper(Sweeper):
    """Hydra sweeper: ask Optuna for ``n_jobs`` trials, launch them, tell Optuna the outcomes, repeat
    until the study holds ``n_trials`` finished trials (so a re-run resumes an interrupted search)."""

    def __init__(self, direction: str = "minimize", n_trials: int = 20, n_jobs: int = 1,
                 study_name: str = "xgen", storage: Optional[str] = None,
                 sampler: Optional[Mapping[str, Any]] = None, pruner: Optional[Mapping[str, Any]] = None,
                 requeue_interrupted: bool = True, params: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if str(direction) not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction: expected minimize or maximize, got {direction!r}")
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise ValueError(f"hydra.sweeper.n_trials and n_jobs must be >= 1, got {n_trials} and {n_jobs}")
        self.direction = str(direction)
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.study_name = str(study_name)
        self.storage = storage
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.requeue_interrupted = bool(requeue_interrupted)
        self.params = params
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self._rdb: Any = None

    # ------------------------------------------------------------------ Hydra's Sweeper interface
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=_ExitAsFailure(task_function), config=config)

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        try:
            import optuna
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("hydra/sweeper=xgen_optuna needs Optuna: pip install 'xgen[optuna]'") from e

        space, fixed = parse_search_space(self.params, arguments, self.hydra_context.config_loader)
        if not space:
            raise ValueError("hydra.sweeper.params: the search space is empty; declare e.g. "
                             "hydra.sweeper.params.model.lr='tag(log, interval(1e-4, 1e-2))' "
                             "or pass a sweep on the command line")
        if "optimized_metric" in self.config and self.config.get("optimized_metric") is None:
            raise ValueError("optimized_metric is null: the search needs the metric the task returns, "
                             "e.g. optimized_metric=val/nelbo")
        # catches a bad fixed override before any trial runs (per-trial values are checked per job)
        self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))

        sweep_dir = Path(str(self.config.hydra.sweep.dir)).expanduser().resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        storage = absolute_storage(self.storage or sqlite_url(sweep_dir / "optuna.db"))

        study = self._load_study(optuna, storage)
        self._resolve_interrupted(study)
        finished = self._count_finished(study)
        log.info(f"Optuna study '{self.study_name}' in {storage}: {finished}/{self.n_trials} trials finished, "
                 f"direction {self.direction}; search space: "
                 + ", ".join(f"{p.name} ({p.kind})" for p in space))
        if finished >= self.n_trials:
            log.info(f"Nothing to run: the study already has {finished} finished trials. Raise "
                     "hydra.sweeper.n_trials to continue it, or set hydra.sweeper.study_name for a new one.")

        returns: List[Sequence[JobReturn]] = []
        while finished < self.n_trials:
            n = min(self.n_jobs, self.n_trials - finished)
            trials = [study.ask() for _ in range(n)]
            batch: list[tuple["optuna.Trial", list[str]]] = []
            for trial in trials:
                overrides = self._overrides(trial, space, fixed, storage, sweep_dir)
                if overrides is not None:
                    batch.append((trial, overrides))
            if batch:
                results = self.launcher.launch([o for _, o in batch], initial_job_idx=batch[0][0].number)
                for (trial, _), ret in zip(batch, results):
                    self._tell(optuna, study, trial, ret)
                returns.append(results)
            finished = self._count_finished(study)

        self._report(study, sweep_dir, storage)
        return returns

    # ------------------------------------------------------------------ pieces
    def _instantiate(self, cfg: Any, what: str, **override: Any) -> Any:
        from hydra.utils import instantiate

        if cfg is None:
            return None
        spec = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        spec.update({k: v for k, v in override.items() if k in spec})
        try:
            return instantiate(spec)
        except Exception as e:
            raise ValueError(f"hydra.sweeper.{what}: cannot build {spec.get('_target_')!r}: {e}") from e

    def _load_study(self, optuna: Any, storage: str) -> "optuna.Study":
        from xgen.callbacks.optuna_pruning import PRUNER_ATTR, open_storage

        self._rdb = rdb = open_storage(storage)
        try:  # trials a session started before (enqueued, never-run trials do not count)
            from optuna.trial import TrialState

            study_id = rdb.get_study_id_from_name(self.study_name)
            n_before = sum(1 for t in rdb.get_all_trials(study_id, deepcopy=False) if t.state != TrialState.WAITING)
        except KeyError:
            n_before = 0
        sampler_cfg = self.sampler_cfg
        reseed = {}
        if sampler_cfg is not None and sampler_cfg.get("seed") is not None and n_before:
            # a seeded sampler restarted with its first seed would replay the parameters it already tried
            reseed = {"seed": int(sampler_cfg.get("seed")) + n_before}
        sampler = self._instantiate(sampler_cfg, "sampler", **reseed)
        # pruner: null means no pruning (Optuna would otherwise fall back to its MedianPruner)
        pruner_spec = (OmegaConf.to_container(self.pruner_cfg, resolve=True) if OmegaConf.is_config(self.pruner_cfg)
                       else dict(self.pruner_cfg or {"_target_": "optuna.pruners.NopPruner"}))
        pruner = self._instantiate(pruner_spec, "pruner")
        study = optuna.create_study(storage=rdb, sampler=sampler, pruner=pruner, study_name=self.study_name,
                                    direction=self.direction, load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise ValueError(f"hydra.sweeper.direction={self.direction}, but study '{self.study_name}' in "
                             f"{storage} was created to {study.direction.name.lower()}; use another "
                             "hydra.sweeper.study_name (or storage) for this objective")
        if n_before:
            log.info(f"Resuming study '{self.study_name}' ({n_before} trials so far)"
                     + (f"; sampler reseeded with {reseed['seed']}" if reseed else ""))
        study.set_user_attr(PRUNER_ATTR, pruner_spec)  # the jobs' pruning callbacks rebuild it from here
        return study

    def _resolve_interrupted(self, study: "optuna.Study") -> None:
        """Trials a killed session left RUNNING -> FAIL (``xgen_interrupted``), params re-queued.

        Assumes one sweeper per study (parallelism comes from ``n_jobs`` and the launcher)."""
        from optuna.trial import TrialState

        study_id = self._rdb.get_study_id_from_name(self.study_name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = self._rdb.get_trial_id_from_study_id_trial_number(study_id, t.number)
            self._rdb.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
            study.tell(t.number, state=TrialState.FAIL)
            msg = f"Trial {t.number} was left RUNNING by an interrupted session: marked FAIL"
            if self.requeue_interrupted and t.params:
                study.enqueue_trial(t.params, user_attrs={REQUEUED_ATTR: t.number})
                msg += f", its parameters re-queued {t.params}"
            log.warning(msg)

    @staticmethod
    def _count_finished(study: "optuna.Study") -> int:
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        return sum(1 for t in done if not t.user_attrs.get(INTERRUPTED_ATTR))

    def _overrides(self, trial: "optuna.Trial", space: Sequence[Param], fixed: Sequence[str], storage: str,
                   sweep_dir: Path) -> Optional[list[str]]:
        """The job's overrides; ``None`` (and the trial told FAIL) when they do not compose."""
        from optuna.trial import TrialState

        try:
            sampled = [p.suggest(trial) for p in space]
        except Exception as e:  # e.g. an enqueued value the distribution cannot hold
            self._fail(trial, f"cannot sample the search space: {e}")
            trial.study.tell(trial, state=TrialState.FAIL)
            return None
        overrides = [*fixed, *sampled,
                     f"++optuna.trial={trial.number}",
                     f"++optuna.study_name={quote(self.study_name)}",
                     f"++optuna.storage={quote(storage)}",
                     # pin the job's directory: <sweep dir>/trial_<number>, whatever the job's config says
                     f"hydra.sweep.dir={quote(str(sweep_dir))}",
                     f"hydra.sweep.subdir=trial_{trial.number}"]
        try:
            self.validate_batch_is_legal([overrides])
        except Exception as e:
            self._fail(trial, f"the overrides do not compose: {e}")
            trial.study.tell(trial, state=TrialState.FAIL)
            return None
        return overrides

    @staticmethod
    def _fail(trial: "optuna.Trial", reason: str) -> None:
        log.error(f"Trial {trial.number} failed: {reason}")
        trial.set_user_attr(FAIL_REASON_ATTR, reason[:2000])

    def _tell(self, optuna: Any, study: "optuna.Study", trial: "optuna.Trial", ret: JobReturn) -> None:
        from optuna.trial import TrialState

        if ret.status == JobStatus.COMPLETED:
            value = ret._return_value
            try:
                value = float(value)
            except (TypeError, ValueError):
                self._fail(trial, f"the job returned {value!r}, not a number: is optimized_metric set to a "
                                  "metric this run logs?")
                study.tell(trial, state=TrialState.FAIL)
                return
            if not math.isfinite(value):
                self._fail(trial, f"the objective is {value}")
                study.tell(trial, state=TrialState.FAIL)
                return
            study.tell(trial, value)
            log.info(f"Trial {trial.number} finished: {value:.6g} with {trial.params}")
        elif isinstance(ret._return_value, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"Trial {trial.number} pruned: {ret._return_value}")
        else:
            err = ret._return_value
            self._fail(trial, f"{type(err).__name__}: {err}")
            study.tell(trial, state=TrialState.FAIL)

    def _report(self, study: "optuna.Study", sweep_dir: Path, storage: str) -> None:
        """Log and save (``optimization_results.yaml``) the best trial and the count of each state."""
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        out: dict[str, Any] = {"study_name": self.study_name, "storage": storage, "direction": self.direction,
                               "trials": counts}
        try:
            best = study.best_trial
            out.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            log.info(f"Best trial {best.number}: {best.value:.6g} with {best.params}")
        except ValueError:
            log.warning("No trial completed: no best parameters")
        OmegaConf.save(OmegaConf.create(out), sweep_dir / "optimization_results.yaml")
