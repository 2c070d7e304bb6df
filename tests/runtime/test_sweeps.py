"""Multiruns: failure isolation, re-launch skipping completed jobs, W&B grouping, launchers, report."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xgen.utils.resources import concurrent_jobs, plan

FAST = ["data=digits", "data.repeat=1", "trainer.max_epochs=1", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "model/net=mlp", "test=false"]


def xgen(args, cwd, timeout=600):
    env = {**os.environ, "XGEN_OUTPUT": str(cwd / "outputs"), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "xgen", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def test_failing_job_is_isolated_reported_and_relaunch_runs_only_it(tmp_path):
    from xgen.utils.wandb_files import read_run

    sweep = tmp_path / "sweep"
    # job 1 diverges (a run-time failure: a config error would refuse the whole sweep before any job starts)
    args = ["-m", *FAST, "model.lr=0.003,1e9,0.001", "logger=wandb", "sweep_name=beta_check", f"hydra.sweep.dir={sweep}"]
    r = xgen(args, tmp_path)
    assert r.returncode != 0  # the sweep reports its failed job...
    s = summaries(sweep)
    assert s["0"]["status"] == s["2"]["status"] == "completed"  # ...but the others completed
    assert s["1"]["status"] == "failed" and "training diverged" in s["1"]["error"]

    # W&B: one offline run per completed job, grouped by sweep, job type = model, flattened config
    for job, lr in (("0", 0.003), ("2", 0.001)):
        (run_file,) = (sweep / job / "wandb").glob("offline-run-*/run-*.wandb")
        run = read_run(run_file)
        assert run["group"] == "beta_check" and run["job_type"] == "VAE"
        assert json.loads(run["config"]["model.lr"]) == lr
        assert json.loads(run["config"]["data._target_"]) == "xgen.data.DigitsDataModule"
        assert any("val/nelbo" in h for h in run["history"])

    # report: a table with the failure marked, and plots
    r = xgen(["report", str(sweep)], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(sweep / "report.csv")))
    assert [row["status"] for row in rows] == ["completed", "failed", "completed"]
    assert "training diverged" in rows[1]["error"]
    assert float(rows[0]["val/nelbo"]) > 0 and rows[1]["val/nelbo"] == ""
    assert (sweep / "report.md").read_text().count("| failed |") == 1
    assert (sweep / "curves.png").is_file() and list(sweep.glob("plot_val_nelbo_vs_model_lr.png"))

    # re-launch the same sweep: completed jobs are skipped (files untouched), the failed one runs again
    before = {j: (sweep / j / "summary.json").stat().st_mtime_ns for j in ("0", "2")}
    ckpt = (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    r = xgen(args, tmp_path)
    assert r.stdout.count("skipping") + r.stderr.count("skipping") == 2
    assert {j: (sweep / j / "summary.json").stat().st_mtime_ns for j in ("0", "2")} == before
    assert (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == ckpt
    assert summaries(sweep)["1"]["status"] == "failed"


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers_run_jobs_in_their_own_directories(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    r = xgen(["-m", *FAST, "model=vae,beta_vae", f"hydra/launcher={launcher}", *extra, f"hydra.sweep.dir={sweep}"],
             tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = summaries(sweep)
    assert sorted(s) == ["0", "1"] and all(v["status"] == "completed" for v in s.values())
    assert len({v["run_dir"] for v in s.values()}) == 2
    assert "ConfigStore schema" not in r.stderr  # xgen's configs do not shadow the launcher plugins' own
    if launcher == "joblib":  # 2 parallel jobs share the cores instead of each taking all of them
        cores = os.cpu_count() or 1
        assert all(v["torch_threads"] == max(1, cores // 2) for v in s.values())
    else:
        assert list((sweep / ".submitit").iterdir())  # submitit's own job folders


def _fake_job(sweep: Path, job: int, model: str, override: str, curves: dict[str, list[float]]) -> None:
    """A finished job directory as `xgen report` reads it: summary.json, config.yaml, metrics.csv."""
    d = sweep / str(job)
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"status": "completed", "overrides": [override], "metrics": {}}))
    (d / "config.yaml").write_text(f"model:\n  _target_: xgen.models.{model}\n")
    keys = list(curves)
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", *keys])
        for e in range(len(curves[keys[0]])):
            w.writerow([e, 10 * e, *[curves[k][e] for k in keys]])


def test_report_curves_have_a_legend_per_panel_naming_its_own_jobs(tmp_path):
    """The model-zoo case: VAE panels list only the VAEs, GAN panels only the GANs, with the model class;
    a job has the same colour in every panel."""
    import matplotlib.pyplot as plt

    from xgen.runtime.report import collect, curves_figure

    sweep = tmp_path / "zoo"
    _fake_job(sweep, 0, "VAE", "model=vae", {"val/nelbo": [300.0, 280.0]})
    _fake_job(sweep, 1, "BetaVAE", "model=beta_vae", {"val/nelbo": [320.0, 310.0]})
    _fake_job(sweep, 2, "GAN", "model=gan", {"train/loss_d_epoch": [1.2, 1.1], "train/loss_g_epoch": [0.9, 1.0]})
    _fake_job(sweep, 3, "InfoGAN", "model=infogan", {"train/loss_d_epoch": [0.6, 0.5], "train/loss_g_epoch": [1.5, 1.6]})
    fig = curves_figure(collect(sweep))
    try:
        panels = {ax.get_title(): ax for ax in fig.axes}
        assert sorted(panels) == ["train/loss_d_epoch", "train/loss_g_epoch", "val/nelbo"]
        legends = {k: [t.get_text() for t in ax.get_legend().get_texts()] for k, ax in panels.items()}
        assert legends == {"val/nelbo": ["0: VAE", "1: BetaVAE"], "train/loss_d_epoch": ["2: GAN", "3: InfoGAN"],
                           "train/loss_g_epoch": ["2: GAN", "3: InfoGAN"]}
        colours = {k: [line.get_color() for line in ax.get_lines()] for k, ax in panels.items()}
        assert colours["train/loss_d_epoch"] == colours["train/loss_g_epoch"]
        assert len(set(colours["val/nelbo"] + colours["train/loss_d_epoch"])) == 4  # one colour per job
        assert [list(line.get_ydata()) for line in panels["val/nelbo"].get_lines()] == [[300.0, 280.0], [320.0, 310.0]]
        assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() == k for k, ax in panels.items())
    finally:
        plt.close(fig)


def test_report_labels_add_the_other_swept_values(tmp_path):
    from xgen.runtime.report import collect, curve_label, swept_keys

    sweep = tmp_path / "betas"
    for job, beta in enumerate((1, 4)):
        _fake_job(sweep, job, "BetaVAE", f"model.beta={beta}", {"val/nelbo": [300.0 + beta]})
    rows = collect(sweep)
    assert [curve_label(r, swept_keys(rows)) for r in rows] == ["0: BetaVAE, model.beta=1", "1: BetaVAE, model.beta=4"]


def test_report_errors_are_one_line(tmp_path, capsys):
    from xgen.runtime.cli.report import main

    assert main([str(tmp_path / "missing")]) == 2
    assert "xgen report: error:" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_no_xgen_config_shadows_a_plugin_schema():
    """A yaml of the same name as a plugin's ConfigStore entry makes Hydra print a deprecation warning on
    every launch (it did, 9 times per joblib multirun): xgen's hydra/* configs must use other names."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from xgen.runtime.cli import CONFIG_DIR

    Plugins.instance()  # imports the installed plugins, which register their configs
    cs, root = ConfigStore.instance(), Path(CONFIG_DIR)
    checked = 0
    for f in root.glob("hydra/**/*.yaml"):
        group = str(f.parent.relative_to(root))
        try:
            stored = set(cs.list(group))
        except OSError:  # no ConfigStore group of that name
            stored = set()
        assert f.name not in stored, f"{f.relative_to(root)} shadows the ConfigStore entry {group}/{f.stem}"
        checked += 1
    assert checked >= 4 and {"joblib.yaml", "submitit_slurm.yaml"} <= set(cs.list("hydra/launcher"))


@pytest.mark.parametrize("launcher", ["joblib", "gpu_shared", "submitit_local", "submitit_slurm", "slurm"])
def test_launcher_configs_compose_without_warnings(launcher):
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from xgen.runtime.cli import CONFIG_DIR, _register_resolvers

    _register_resolvers()
    GlobalHydra.instance().clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    lc = cfg.hydra.launcher
    if launcher == "slurm":  # xgen's settings on top of the plugin's submitit_slurm
        assert lc._target_.endswith("SlurmLauncher")
        assert (lc.cpus_per_task, lc.gpus_per_node, lc.mem_gb, lc.max_num_timeout) == (2, None, None, 3)  # CPU-only defaults: a GPU request fails without GRES
    if launcher == "gpu_shared":
        assert lc._target_.endswith("JoblibLauncher") and lc.n_jobs >= 1


def test_resource_plan():
    assert plan(0, 2, cpu_count=8) == plan(1, 2, cpu_count=8)
    assert plan(0, 2, cpu_count=8).threads == 4 and plan(0, -1, cpu_count=8).threads == 1
    assert plan(0, None, cpu_count=8).threads == 8
    assert [plan(k, 8, cpu_count=16, gpu_count=2).gpu for k in range(5)] == [0, 1, 0, 1, 0]
    assert plan(3, 4, cpu_count=16, gpu_count=1).gpu is None  # one GPU: trainer.devices stays as is
    assert concurrent_jobs(4, gpu_count=2) == 8 and concurrent_jobs(3, gpu_count=0) == 3
    with pytest.raises(ValueError):
        concurrent_jobs(0, gpu_count=1)


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Expand a sweep config the way Hydra's basic sweeper does, without running it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from xgen.runtime.cli import CONFIG_DIR, _register_resolvers

    _register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides(params)
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch


def test_vae_thesis_sweep_is_the_thesis_grid():
    jobs = _sweep_jobs(["+sweep=vae_thesis_beta"])
    betas = {float(o.split("=")[1]) for j in jobs for o in j if o.startswith("model.beta=")}
    dims = {int(o.split("=")[1]) for j in jobs for o in j if o.startswith("model.latent_dim=")}
    assert len(jobs) == 30 and dims == {2, 3, 5}
    assert betas == {10.0 ** e for e in range(-6, 4)}


def test_wandb_sweep_file_calls_the_same_entry_point(tmp_path):
    import yaml

    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load(open(root / "sweeps" / "wandb" / "vae_beta.yaml"))
    sample = [f"{k}={v['values'][0] if 'values' in v else v['min']}" for k, v in spec["parameters"].items()]
    cmd = [c for c in spec["command"] if c != "${env}"]
    assert cmd[:3] == ["python", "-m", "xgen"] and cmd[-1] == "${args_no_hyphens}"
    r = xgen([*cmd[3:-1], *sample, "--cfg", "job"], tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["model"]["beta"] == 0.1 and cfg["model"]["latent_dim"] == 2
    assert spec["metric"]["name"] == "val/nelbo"


# thesis Table 4.1: id -> (z size, categorical codes, continuous codes, epochs, batch size, lr)
TABLE_4_1 = {
    111: (62, [10], 2, 50, 128, 2e-4), 112: (62, [10], 2, 50, 256, 2e-4), 113: (62, [10], 2, 100, 128, 2e-4),
    114: (62, [10], 2, 100, 128, 2e-4), 115: (100, [10], 2, 100, 128, 2e-4), 116: (30, [10], 2, 100, 128, 2e-4),
    117: (30, [10], 2, 200, 128, 2e-4), 118: (0, [10], 2, 100, 128, 2e-4), 119: (62, [10], 3, 100, 128, 2e-4),
    120: (62, [], 2, 100, 256, 2e-4),
}


def test_thesis_fmnist_sweep_is_table_4_1(compose):
    jobs = _sweep_jobs(["+sweep=thesis_fmnist"])
    assert len(jobs) == 10
    rows = {}
    for job in jobs:
        cfg = compose(["+sweep=thesis_fmnist", *job])
        run_id = int(job[0].split("_")[-1])
        lat = cfg.model.latent
        rows[run_id] = (lat.noise, list(lat.categorical), lat.continuous, cfg.trainer.max_epochs,
                        cfg.data.batch_size, cfg.model.lr_g)
        assert cfg.model.lr_d == cfg.model.lr_g  # the thesis: the same rate for both players
        assert cfg.data._target_ == "xgen.data.FashionMNISTDataModule"
        assert cfg.model._target_ == "xgen.models.InfoGAN"
        assert not (cfg.callbacks or {}).get("dropout_schedule")  # "Dropout: No" in every row
    assert rows == TABLE_4_1


def test_dropout_ablation_sweep_grid():
    jobs = _sweep_jobs(["+sweep=dropout_ablation"])
    assert len(jobs) == 18
    assert {tuple(sorted(o.split("=")[0] for o in j)) for j in jobs} == {("callbacks", "data", "seed")}


def test_fid_callback_same_value_under_ddp_and_ddp_checkpoint_resumes_in_one_process(tmp_path):
    """The untrained model (same seed, no training steps) is scored on the same 1,000 samples by one
    process and by 2 DDP processes that each decode half of them: the values must match."""
    common = ["data=digits", "data.repeat=1", "model/net=mlp", "callbacks=fid", "callbacks.progress_bar=null",
              "trainer.max_epochs=1", "callbacks.fid.num_samples_final=1000", "callbacks.fid.final_metrics=[fid,kid]"]
    values = {}
    for trainer in ("cpu", "ddp_cpu"):
        out = tmp_path / trainer
        r = subprocess.run([sys.executable, "-m", "xgen", *common, f"trainer={trainer}", "+trainer.limit_train_batches=0",
                            f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "WANDB_MODE": "offline"})
        assert r.returncode == 0, r.stderr[-3000:]
        values[trainer] = json.loads((out / "summary.json").read_text())["metrics"]
    assert values["cpu"]["test/fid"] > 10  # an untrained VAE is far from the data
    assert values["ddp_cpu"]["test/fid"] == pytest.approx(values["cpu"]["test/fid"], rel=1e-6)
    assert values["ddp_cpu"]["test/kid"] == pytest.approx(values["cpu"]["test/kid"], rel=1e-6)

    # a checkpoint written by 2 DDP processes continues in a single process
    ddp = tmp_path / "ddp_train"
    r = subprocess.run([sys.executable, "-m", "xgen", *FAST, "trainer=ddp_cpu", f"hydra.run.dir={ddp}"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads((ddp / "summary.json").read_text())
    r = subprocess.run([sys.executable, "-m", "xgen", *FAST, "trainer.max_epochs=2", f"ckpt_path={ddp}",
                        f"hydra.run.dir={tmp_path / 'single'}"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-3000:]
    second = json.loads((tmp_path / "single" / "summary.json").read_text())
    # DDP: 10 steps per epoch per process; one process: 21 steps per epoch (digits, batch 64)
    assert first["global_step"] == 10 and second["epochs"] == 2 and second["global_step"] == 10 + 21
