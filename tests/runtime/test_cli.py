"""The `xgen` command: composition, early errors, outputs of a run, resume, W&B offline, packaging."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from xgen.errors import ConfigError, DataError
from xgen.runtime.train import train


FAST = ["data=digits", "data.repeat=1", "trainer.max_epochs=1", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "model/net=mlp"]


def run_cli(args, cwd, env_extra=None, timeout=300):
    env = {**os.environ, "XGEN_OUTPUT": str(cwd / "outputs"), "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "xgen", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_default_config_composes(compose):
    cfg = compose()
    assert cfg.data._target_ == "xgen.data.FashionMNISTDataModule"
    assert cfg.model._target_ == "xgen.models.VAE" and cfg.model.likelihood == "bernoulli"
    assert cfg.trainer.max_epochs >= 1


@pytest.mark.parametrize("override,group", [("data=imagenet", "data"), ("model=vqvae", "model")])
def test_unknown_names_list_the_options(compose, override, group):
    with pytest.raises(MissingConfigException) as e:
        compose([override])
    msg = str(e.value)
    assert f"Could not find '{group}/" in msg
    assert ("fashion_mnist" in msg) if group == "data" else ("beta_vae" in msg and "info_vae" in msg)


@pytest.mark.parametrize("override,key", [("model.beta=-1", "model.beta"), ("model.lr=0", "model.lr"),
                                          ("data.size=30", "data.size")])
def test_bad_values_fail_before_training(compose, override, key, tmp_path):
    cfg = compose(["data=digits", override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_checks_on_the_built_objects_run_in_build(compose, tmp_path):
    """train(cfg) from Python (no validate before it) still refuses a model whose classes differ from the
    data's: train.build checks the objects it built (xgen.runtime.validate.check_built)."""
    cfg = compose(["data=digits", "model=classifier", "model.num_classes=5"])
    with pytest.raises(ConfigError, match=r"model\.num_classes: 5, but data=DigitsDataModule has 10 classes"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_offline_fails_before_training(compose, tmp_path, monkeypatch):
    from xgen.data import locate

    monkeypatch.setattr(locate, "SYSTEM_DATASETS", tmp_path / "none")
    monkeypatch.setenv("XGEN_DATA", str(tmp_path / "none"))
    cfg = compose(["data=fashion_mnist", "data.download=false", f"data.root={tmp_path / 'none'}"])
    with pytest.raises(DataError, match="files not found"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_run_leaves_checkpoint_samples_metrics_and_resumes(compose, tmp_path):
    cfg = compose(FAST)
    s = train(cfg)
    run = tmp_path / "run"
    assert s["status"] == "completed" and s["epochs"] == 1
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    pngs = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert "samples_final.png" in pngs and "reconstructions_final.png" in pngs
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = [r for r in rows if r.get("val/nelbo")]
    assert val and 0 < float(val[-1]["val/nelbo"]) < 784 * 0.7  # well below a uniform model's 543 nats
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["test/nelbo"] > 0
    # CPU seconds of the process over fit and test: positive, and with one torch thread at most ~wall + slack
    assert 0 < summary["cpu_time_s"] and summary["wall_time_s"] > 0
    # resume: one more epoch from last.ckpt continues the step count
    cfg2 = compose(FAST + ["trainer.max_epochs=2", "ckpt_path=last"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s2 = train(cfg2)
    # Lightning's "Checkpoint directory ... exists and is not empty" is noise when the run continues itself
    assert not [w for w in caught if "is not empty" in str(w.message)], [str(w.message) for w in caught]
    assert s2["epochs"] == 2 and s2["global_step"] == 2 * s["global_step"]
    epochs = [float(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv")) if r.get("val/nelbo")]
    assert epochs == [0.0, 1.0]  # the resumed run appended to metrics.csv instead of replacing it


def test_ckpt_path_last_without_checkpoint_is_explained(compose):
    with pytest.raises(ConfigError, match="no checkpoints/last.ckpt"):
        train(compose(FAST + ["ckpt_path=last"]))


def test_wandb_offline_run_directory(compose, tmp_path):
    s = train(compose(FAST + ["logger=wandb", "logger.wandb.mode=offline"]))
    run = tmp_path / "run"
    runs = list((run / "wandb").glob("offline-run-*"))
    assert s["status"] == "completed" and len(runs) == 1
    run_id = (run / "wandb_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)
    assert list(runs[0].glob("*.wandb"))  # the run's log, synced later with `wandb sync`


def test_cli_help_and_cfg(tmp_path):
    r = run_cli(["--help"], tmp_path)
    assert r.returncode == 0 and "data:" in r.stdout
    (models,) = [line for line in r.stdout.splitlines() if line.startswith("model: ")]
    assert {"vae", "beta_vae", "info_vae", "gan", "dcgan", "infogan", "classifier"} <= set(models[7:].split(", "))
    # the subcommands follow Hydra's help, one line each, and each has its own --help
    from xgen.runtime.cli import SUBCOMMANDS

    block = r.stdout.split("== Subcommands")[1].splitlines()[1:]
    assert [line.split()[1] for line in block if line.strip()] == list(SUBCOMMANDS) and {"eval", "report"} <= set(SUBCOMMANDS)
    assert "eval.json" in next(line for line in block if line.split()[1] == "eval")
    for sub in ("eval", "report"):
        h = run_cli([sub, "--help"], tmp_path)
        assert h.returncode == 0 and h.stdout.startswith(f"usage: xgen {sub}"), h.stderr
    r = run_cli(["--cfg", "job", "model=beta_vae", "model.beta=4"], tmp_path)
    assert r.returncode == 0 and "xgen.models.BetaVAE" in r.stdout and "beta: 4" in r.stdout


def test_cli_error_is_one_clear_line(tmp_path):
    r = run_cli(["data=digits", "model.beta=-2"], tmp_path)
    assert r.returncode == 2
    assert "xgen: error: model.beta: the KL weight must be >= 0, got -2" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_trains_beta_vae(tmp_path):
    r = run_cli(["model=beta_vae", "model.beta=4", *FAST], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (summary,) = (tmp_path / "outputs").glob("train/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
    # the run says where it writes when it starts, and what it wrote when it ends
    lines = [line for line in r.stdout.splitlines() if line.startswith("xgen: ")]
    assert lines == [f"xgen: run directory {summary.parent}",
                     f"xgen: outputs in {summary.parent} (summary.json, checkpoints/last.ckpt, metrics.csv, samples/)"]


def test_wheel_ships_the_configs(tmp_path):
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = tmp_path.glob("xgen-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for f in ("xgen/conf/train.yaml", "xgen/conf/data/fashion_mnist.yaml", "xgen/conf/model/vae.yaml",
              "xgen/conf/model/net/mlp.yaml", "xgen/conf/hydra/help/xgen.yaml", "xgen/runtime/cli/__init__.py",
              "xgen/runtime/cli/train.py", "xgen/runtime/cli/eval.py", "xgen/runtime/cli/report.py", "xgen/runtime/rundir.py", "xgen/runtime/config.py"):
        assert f in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_tensorboard_gets_scalars_and_images(compose, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(compose(FAST + ["logger=tensorboard"]))
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert "val/nelbo" in acc.Tags()["scalars"]
    assert {"samples", "reconstructions"} <= set(acc.Tags()["images"])


def test_ddp_cpu_two_processes_one_run_directory(tmp_path):
    r = run_cli([*FAST, "trainer=ddp_cpu", "trainer.max_epochs=2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 1  # the second rank reuses the first rank's run directory
    s = json.loads((runs[0] / "summary.json").read_text())
    # digits: 1,346 training images, 2 ranks x batch 64 -> 10 steps per epoch
    assert s["status"] == "completed" and s["global_step"] == 20
    assert {"val/nelbo", "val/rec", "val/kl", "test/nelbo", "train/nelbo_epoch"} <= set(s["metrics"])


def test_rundir_is_the_one_rule_for_resume_eval_and_report(tmp_path):
    from xgen.checkpoint.runs import RunDir, find_checkpoints, resolve_checkpoint

    sweep = tmp_path / "multirun"
    for job in ("10", "2", "0", "extra"):
        (sweep / job / "checkpoints").mkdir(parents=True)
        (sweep / job / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (sweep / job / "config.yaml").write_text("data: {}\n")
    (sweep / "not_a_run").mkdir()
    assert [r.name for r in RunDir.find(sweep)] == ["0", "2", "10", "extra"]  # numeric job order, then names
    assert [r.name for r in RunDir.find(sweep / "2")] == ["2"]
    assert [(c.parent.parent.name, r.name) for c, r in find_checkpoints(sweep)][:2] == [("0", "0"), ("2", "2")]
    # resume: last -> this run's checkpoint; a directory -> its last.ckpt; a file -> itself and its run
    run = sweep / "2"
    assert resolve_checkpoint("last", run) == (run / "checkpoints" / "last.ckpt", RunDir(run))
    assert resolve_checkpoint(str(sweep / "0"), run)[1] == RunDir(sweep / "0")
    assert resolve_checkpoint(str(run / "checkpoints" / "last.ckpt"), tmp_path) == (run / "checkpoints" / "last.ckpt",
                                                                                     RunDir(run))
    assert resolve_checkpoint(None, run) == (None, None)
    with pytest.raises(ConfigError, match=r"ckpt_path=last: no checkpoints/last.ckpt under"):
        resolve_checkpoint("last", sweep / "not_a_run")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_checkpoint(str(tmp_path / "nope.ckpt"), run)
    # summary.json: written atomically, read back; a corrupt one is reported, not raised
    rd = RunDir(sweep / "0")
    assert rd.read_summary() is None
    rd.write_summary({"status": "completed", "overrides": ["model=vae"], "metrics": {"val/nelbo": 1.5}})
    assert rd.read_summary()["metrics"] == {"val/nelbo": 1.5} and rd.overrides() == ["model=vae"]
    rd.summary_file.write_text("{not json")
    assert rd.read_summary() == {"status": "corrupt summary.json"}
    assert RunDir(sweep / "0").outputs() == ["summary.json", "checkpoints/last.ckpt"]
