"""hparams_search=optuna: xgen's ask-and-tell Optuna sweeper and the pruning callback.

The end-to-end test runs a real `xgen -m hparams_search=optuna` search on the digits data set, kills
it (SIGKILL) in the middle of a trial, re-runs the same command and checks the study through
`optuna.load_study`: resumed, nothing finished was redone, the killed trial re-queued, one trial
pruned from its first validation epoch, one failed trial recorded while the search went on, and every
job's config.yaml holding its trial's parameters.

Why the pruning is reliable: the study is seeded (before the first run) with enqueued trials. Trials
0 and 1 train with lr 3e-3 / 2e-3; trial 2 with lr 1e-6, which leaves the VAE at its initial
~44 nats (8x8 images, Bernoulli likelihood) after one epoch while the first two are already several
nats lower. The median pruner (n_startup_trials=2, n_warmup_steps=0) compares trial 2's epoch-0
value with the median of trials 0 and 1 at epoch 0, so it prunes it whatever the seed; trial 3 asks
for beta=-1, which the model rejects (ConfigError), so it fails.
"""

from __future__ import annotations

import json

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.xgen_optuna_sweeper.space import format_float, parse_search_space  # noqa: E402
from hydra_plugins.xgen_optuna_sweeper import sweeper as sweeper_module  # noqa: E402
from hydra_plugins.xgen_optuna_sweeper.sweeper import INTERRUPTED_ATTR, REQUEUED_ATTR, quote  # noqa: E402

# Hydra's plugin scan re-executes plugin modules in place (redefining their classes): look classes up
# on the module when they are used, not at import.

STUDY = "digits-test"
N_TRIALS = 6
SEARCH = [
    "-m", "hparams_search=optuna", "data=digits", "data.repeat=1", "data.size=8", "model/net=mlp",
    "model.encoder.hidden=[32]", "model.decoder.hidden=[32]", "trainer.max_epochs=2",
    "trainer.accelerator=cpu", "+trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false",
    "trainer.enable_model_summary=false", "callbacks.progress_bar=null", "callbacks.sample_grids=null",
    "callbacks.model_checkpoint=null", "test=false",
    f"hydra.sweeper.study_name={STUDY}", f"hydra.sweeper.n_trials={N_TRIALS}",
    "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=0",
    # a command-line sweep replaces the config's model.lr entry of the search space
    "model.lr=tag(log, interval(1e-6, 1e-2))",
]
ENQUEUED = [
    {"model.lr": 3e-3, "model.beta": 1.0, "model.latent_dim": 8},   # 0: complete
    {"model.lr": 2e-3, "model.beta": 1.0, "model.latent_dim": 8},   # 1: complete
    {"model.lr": 1e-6, "model.beta": 1.0, "model.latent_dim": 8},   # 2: pruned after epoch 0
    {"model.lr": 3e-3, "model.beta": -1.0, "model.latent_dim": 8},  # 3: the model rejects beta < 0
]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _env(tmp: Path) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "XGEN_OUTPUT": str(tmp / "outputs"), "WANDB_MODE": "offline",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _snapshot(study) -> dict[int, tuple]:
    return {t.number: (t.state, t.value, t.params, t.datetime_complete) for t in study.get_trials()}


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Run the search, SIGKILL it while a sampled trial (4 or later) trains, run the same command again."""
    tmp = tmp_path_factory.mktemp("optuna")
    sweep_dir = tmp / "outputs" / "train" / "optuna" / STUDY
    sweep_dir.mkdir(parents=True)
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    for params in ENQUEUED:
        study.enqueue_trial(params)

    cmd = [sys.executable, "-m", "xgen", *SEARCH]
    log1 = open(tmp / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp, env=_env(tmp), stdout=log1, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 150
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the search ended before it could be interrupted:\n{(tmp / 'first.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no sampled trial training after 150 s:\n{(tmp / 'first.log').read_text()[-3000:]}")
            trials = study.get_trials(deepcopy=False)
            # kill once a sampled trial's job is training: its parameters are all fixed and its run
            # directory written (a kill between ask() and launch would interrupt a half-sampled trial)
            if any(t.number >= len(ENQUEUED) and t.state == TrialState.RUNNING
                   and (sweep_dir / f"trial_{t.number}" / "config.yaml").is_file() for t in trials):
                os.killpg(proc.pid, signal.SIGKILL)  # like a pre-empted node: no handler runs
                break
            time.sleep(0.05)
    finally:
        proc.wait(timeout=30)
        log1.close()
    before = _snapshot(study)
    config_mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial_*/config.yaml")}

    second = subprocess.run(cmd, cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"study": optuna.load_study(study_name=STUDY, storage=storage), "before": before,
            "sweep_dir": sweep_dir, "config_mtimes": config_mtimes,
            "log": second.stdout + second.stderr, "first_log": (tmp / "first.log").read_text()}


def test_interrupted_search_leaves_finished_trials_and_one_running(search):
    states = {n: s[0] for n, s in search["before"].items()}
    assert [states[n] for n in range(4)] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED,
                                             TrialState.FAIL]
    running = [n for n, s in states.items() if s == TrialState.RUNNING]
    assert len(running) == 1 and running[0] >= 4, states


def test_resume_runs_only_the_missing_trials(search):
    study, before = search["study"], search["before"]
    trials = study.get_trials()
    killed = next(n for n, s in before.items() if s[0] == TrialState.RUNNING)
    finished_before = sum(1 for s in before.values() if s[0] in FINISHED)
    counted = [t for t in trials if t.state in FINISHED and not t.user_attrs.get(INTERRUPTED_ATTR)]
    assert len(counted) == N_TRIALS
    # every trial is finished now; the killed one is FAIL, marked interrupted, and not counted
    assert all(t.state in FINISHED for t in trials)
    assert study.trials[killed].state == TrialState.FAIL and study.trials[killed].user_attrs[INTERRUPTED_ATTR]
    # the second session started exactly the trials still missing: nothing finished was redone
    assert len(trials) == len(before) + (N_TRIALS - finished_before)
    for n, snap in before.items():
        if snap[0] in FINISHED:
            t = study.trials[n]
            assert (t.state, t.value, t.params, t.datetime_complete) == snap
    for path, mtime in search["config_mtimes"].items():
        if path.parent.name != f"trial_{killed}":
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten by the resumed session"
    assert f"Trial {killed} was left RUNNING" in search["log"]


def test_killed_trial_is_requeued_and_new_trials_are_new(search):
    study, before = search["study"], search["before"]
    killed = next(n for n, s in before.items() if s[0] == TrialState.RUNNING)
    requeued = [t for t in study.trials if t.user_attrs.get(REQUEUED_ATTR) == killed]
    assert len(requeued) == 1 and requeued[0].params == study.trials[killed].params
    assert requeued[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # the sampler was reseeded on resume: a restarted seeded sampler would replay trial 4's draw
    sampled = [t for t in study.trials if t.number >= len(ENQUEUED) and not t.user_attrs.get(REQUEUED_ATTR)]
    assert len(sampled) >= 2
    keys = [tuple(sorted(t.params.items())) for t in sampled]
    assert len(set(keys)) == len(keys), keys


def test_a_trial_is_pruned_from_its_first_validation_epoch(search):
    study = search["study"]
    t0, t1, t2 = study.trials[:3]
    assert t2.state == TrialState.PRUNED and t2.params["model.lr"] == 1e-6
    assert list(t2.intermediate_values) == [0]  # reported epoch 0, then stopped
    assert t2.intermediate_values[0] > max(t0.intermediate_values[0], t1.intermediate_values[0]) + 1.0
    assert sorted(t0.intermediate_values) == [0, 1] and t0.state == TrialState.COMPLETE
    # the value of a completed trial is the run's final val/nelbo (the last report)
    assert t0.value == pytest.approx(t0.intermediate_values[1], rel=1e-6)
    pruned = json.loads((search["sweep_dir"] / "trial_2" / "summary.json").read_text())
    assert pruned["status"] == "pruned" and pruned["error"].startswith("TrialPruned")


def test_a_failing_trial_is_recorded_and_the_search_goes_on(search):
    study = search["study"]
    t3 = study.trials[3]
    assert t3.state == TrialState.FAIL and t3.params["model.beta"] == -1.0
    assert "model.beta" in t3.user_attrs["xgen_fail_reason"]
    # the same session went on after trial 3 (to the trial killed later), and the study reached its trials
    assert search["before"][4][0] in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) >= N_TRIALS - 1


def test_each_job_config_holds_its_trial_values(search):
    """One set of hyperparameters per job, fixed before launch: the job's composed config has them."""
    study, sweep_dir = search["study"], search["sweep_dir"]
    checked = 0
    for t in study.trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        cfg = OmegaConf.load(sweep_dir / f"trial_{t.number}" / "config.yaml")
        assert cfg.optuna.trial == t.number and cfg.optuna.study_name == STUDY
        assert cfg.model.lr == t.params["model.lr"]
        assert cfg.model.beta == t.params["model.beta"]
        assert cfg.model.latent_dim == t.params["model.latent_dim"]
        checked += 1
    assert checked >= 4
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_trial == study.best_trial.number and best.best_value == study.best_value


# ---------------------------------------------------------------------------------------- units
def test_search_space_grammar():
    space, fixed = parse_search_space(
        {"model.lr": "tag(log, interval(1e-4, 1e-2))", "model.latent_dim": "choice(2, 4, 8)",
         "model.beta": "interval(0.5, 4)", "data.batch_size": "range(32, 129, 32)",
         "model/net": "choice(mlp, conv)", "model.obs_std": "tag(int, interval(1, 5))"},
        ["model.beta=2.0", "+extra=choice(a,b)"])
    by = {p.name: p for p in space}
    assert fixed == ["model.beta=2.0"]  # a plain command-line value fixes a searched key
    assert (by["model.lr"].kind, by["model.lr"].log, by["model.lr"].low) == ("float", True, 1e-4)
    assert by["model.latent_dim"].choices == (2, 4, 8)
    assert (by["data.batch_size"].kind, by["data.batch_size"].low, by["data.batch_size"].high,
            by["data.batch_size"].step) == ("int", 32, 128, 32)
    assert by["model/net"].choices == ("mlp", "conv")
    assert (by["model.obs_std"].kind, by["model.obs_std"].high) == ("int", 5)
    assert by["extra"].key == "+extra"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    overrides = dict(o.split("=", 1) for o in (p.suggest(trial) for p in space))
    assert 1e-4 <= float(overrides["model.lr"]) <= 1e-2 and float(overrides["model.lr"]) == trial.params["model.lr"]
    assert int(overrides["data.batch_size"]) in (32, 64, 96, 128)
    assert overrides["+extra"] in ("a", "b")


@pytest.mark.parametrize("bad,match", [("model.lr=tag(exp, interval(1, 2))", "unknown tag"),
                                       ("model.lr=tag(log, interval(0, 1))", "low > 0"),
                                       ("model.lr=interval(2, 1)", "low < high")])
def test_search_space_errors_name_the_key(bad, match):
    with pytest.raises(Exception, match=match) as e:
        parse_search_space({}, [bad])
    assert "hydra.sweeper.params.model.lr" in str(e.value)


def test_override_values_round_trip():
    assert format_float(1e-06) == "1e-06" and format_float(3.0) == "3.0"
    assert quote("sqlite:////tmp/x/optuna.db") == "sqlite:////tmp/x/optuna.db"
    assert quote("/tmp/a b/it's") == "'/tmp/a b/it\\'s'"


def test_pruning_callback_idles_outside_a_search_and_rejects_test_metrics(compose):
    from hydra.utils import instantiate

    from xgen.callbacks import OptunaPruning
    from xgen.errors import ConfigError

    cfg = compose(["hparams_search=optuna", "data=digits"])
    cb = instantiate(cfg.callbacks.optuna_pruning)
    assert isinstance(cb, OptunaPruning) and not cb.active and cb.monitor == "val/nelbo"
    with pytest.raises(ConfigError, match="callbacks.optuna_pruning.monitor"):
        OptunaPruning(monitor="test/cat_acc")


def test_exit_fails_the_trial_but_ctrl_c_stops_the_search():
    from xgen.errors import ConfigError

    def config_error(cfg):
        try:
            raise ConfigError("model.beta: must be >= 0")
        except ConfigError:
            raise SystemExit(2) from None  # what xgen.runtime.cli does

    def ctrl_c(cfg):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1)  # what Lightning does after a graceful shutdown

    wrap = sweeper_module._ExitAsFailure
    with pytest.raises(sweeper_module.TrialJobFailed, match=r"status 2: ConfigError: model\.beta"):
        wrap(config_error)(None)
    with pytest.raises(KeyboardInterrupt):
        wrap(ctrl_c)(None)
    assert wrap(lambda cfg: 1.5)(None) == 1.5


def test_resuming_with_another_direction_is_refused_and_null_pruner_means_none(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    with pytest.raises(ValueError, match="direction=minimize.*created to maximize"):
        sweeper_module.XgenOptunaSweeper(direction="minimize", study_name="s")._load_study(optuna, url)
    study = sweeper_module.XgenOptunaSweeper(direction="maximize", study_name="s", pruner=None)._load_study(optuna, url)
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    assert study.user_attrs["xgen_pruner"] == {"_target_": "optuna.pruners.NopPruner"}


def test_parallel_trials_in_joblib_workers_prune_through_the_storage(tmp_path):
    """Two trials at a time in joblib worker processes: each job re-attaches to its trial through the
    SQLite file and uses the sweeper's pruner (a ThresholdPruner that prunes any val/nelbo above 1,
    i.e. every trial after epoch 0; the default median pruner would prune none of the first trials)."""
    args = [a for a in SEARCH if not a.startswith(("hydra.sweeper.", "model.lr="))]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
             "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=parallel",
             "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner", "+hydra.sweeper.pruner.upper=1.0",
             "~hydra.sweeper.pruner.n_startup_trials", "~hydra.sweeper.pruner.n_warmup_steps"]
    r = subprocess.run([sys.executable, "-m", "xgen", *args], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in r.stdout + r.stderr
    db = tmp_path / "outputs" / "train" / "optuna" / "parallel" / "optuna.db"
    study = optuna.load_study(study_name="parallel", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all(list(t.intermediate_values) == [0] and t.intermediate_values[0] > 1.0 for t in study.trials)
    assert study.user_attrs["xgen_pruner"] == {"_target_": "optuna.pruners.ThresholdPruner", "upper": 1.0}
