"""Exact resume: the run's own config, mismatches refused before any write, bit-identical continuation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
FAST = ["data=digits", "data.repeat=1", "model/net=mlp", "trainer.accelerator=cpu", "callbacks.progress_bar=null", "test=false",
        "data.train_subset=256", "logger=csv"]


def xgen(args: list[str], capsys=None) -> int:
    """Run the `xgen` command in this process (Hydra + training as the CLI does); return the exit code."""
    from xgen.runtime.cli import main

    try:
        main(list(args))
        return 0
    except SystemExit as e:
        return int(e.code or 0)


def xgen_process(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "XGEN_OUTPUT": str(cwd / "outputs"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "XGEN_PLUGINS": "xgen_killer"}
    return subprocess.run([sys.executable, "-m", "xgen", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture
def run_a(tmp_path, monkeypatch):
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    run = tmp_path / "A"
    assert xgen([*FAST, "trainer.max_epochs=1", f"hydra.run.dir={run}"]) == 0
    return run


def test_resume_with_only_run_dir_uses_the_runs_own_config(run_a, capsys):
    """`xgen hydra.run.dir=<run> ckpt_path=last trainer.max_epochs=2` continues digits, same model and logger."""
    before = yaml.safe_load((run_a / "config.yaml").read_text())
    assert xgen([f"hydra.run.dir={run_a}", "ckpt_path=last", "trainer.max_epochs=2"]) == 0
    after = yaml.safe_load((run_a / "config.yaml").read_text())
    assert after["data"] == before["data"] and after["data"]["_target_"] == "xgen.data.DigitsDataModule"
    assert after["model"] == before["model"] and after["logger"] == before["logger"]
    assert after["trainer"]["max_epochs"] == 2 and before["trainer"]["max_epochs"] == 1
    ckpt = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and "DigitsDataModule" in ckpt and ckpt["xgen_class"].endswith(".VAE")
    summary = yaml.safe_load((run_a / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    epochs = [line.split(",")[0] for line in (run_a / "metrics.csv").read_text().splitlines()[1:]]
    assert sorted(set(epochs)) == ["0", "1"]  # the same CSV logger continued
    assert not list((run_a / "checkpoints").glob("last-v*.ckpt"))


def test_resume_refuses_other_overrides_and_leaves_files_untouched(run_a, capsys):
    files = snapshot(run_a)
    assert xgen([f"hydra.run.dir={run_a}", "ckpt_path=last", "model.beta=2"]) == 2
    err = capsys.readouterr().err
    assert "xgen: error: model.beta: cannot change when resuming" in err and "trainer.max_epochs" in err
    assert xgen([f"hydra.run.dir={run_a}", "ckpt_path=last", "data=mnist"]) == 2
    assert "data: cannot change when resuming" in capsys.readouterr().err
    after = snapshot(run_a)
    assert {k: v for k, v in after.items() if not k.startswith(".hydra")} == \
           {k: v for k, v in files.items() if not k.startswith(".hydra")}


def test_mismatched_checkpoint_is_refused_before_anything_is_written(run_a, tmp_path, capsys):
    files = snapshot(run_a)
    other = tmp_path / "B"
    ck = run_a / "checkpoints" / "last.ckpt"
    assert xgen(["model=infogan", "data=digits", f"ckpt_path={ck}", f"hydra.run.dir={other}"]) == 2
    err = capsys.readouterr().err
    assert "holds a VAE" in err and "xgen.models.InfoGAN" in err and "nothing was written" in err
    assert xgen([*FAST, "model.latent_dim=3", f"ckpt_path={ck}", f"hydra.run.dir={other}"]) == 2
    assert "model.latent_dim is 3 in the config but 16 in the checkpoint" in capsys.readouterr().err
    assert xgen(["model/net=mlp", "data=mnist", f"ckpt_path={ck}", f"hydra.run.dir={other}"]) == 2
    assert "trained on DigitsDataModule" in capsys.readouterr().err
    assert not (other / "config.yaml").exists() and not (other / "summary.json").exists()
    assert snapshot(run_a) == files


def test_a_copied_run_directory_continues_its_own_last_ckpt(run_a, tmp_path):
    copy = tmp_path / "copied"
    shutil.copytree(run_a, copy)
    original = snapshot(run_a)
    assert xgen([f"hydra.run.dir={copy}", "ckpt_path=last", "trainer.max_epochs=2"]) == 0
    names = sorted(p.name for p in (copy / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [n for n in names if n.startswith("last-v")], names
    assert torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert yaml.safe_load((copy / "config.yaml").read_text())["callbacks"]["model_checkpoint"]["dirpath"] == \
        str(copy / "checkpoints")
    assert snapshot(run_a) == original  # the original run was not written to


def _bit_exact(tmp_path: Path, args: list[str], kill_step: int) -> tuple[int, int]:
    """Uninterrupted run A; run B SIGKILLed at `kill_step` and resumed; (#tensors, #differing tensors)."""
    common = [*args, "trainer.accelerator=cpu", "trainer.deterministic=true", "callbacks.progress_bar=null",
              "test=false", "callbacks.model_checkpoint.every_n_minutes=1e-9"]  # last.ckpt after every batch
    a, b = tmp_path / "A", tmp_path / "B"
    r = xgen_process([*common, f"hydra.run.dir={a}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = xgen_process([*common, f"hydra.run.dir={b}", "+callbacks.killer._target_=xgen_killer.KillAt",
                      f"+callbacks.killer.step={kill_step}", f"+callbacks.killer.marker={tmp_path / 'killed'}"],
                     tmp_path)
    assert r.returncode == -9 and (tmp_path / "killed").exists(), r.stderr[-2000:]
    killed_at = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < killed_at["global_step"] < torch.load(a / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    r = xgen_process([f"hydra.run.dir={b}", "ckpt_path=last"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    sa = torch.load(a / "checkpoints" / "last.ckpt", weights_only=True)
    sb = torch.load(b / "checkpoints" / "last.ckpt", weights_only=True)
    assert sa["global_step"] == sb["global_step"]
    diff = sum(not torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])
    return len(sa["state_dict"]), diff


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical_vae(tmp_path):
    n, diff = _bit_exact(tmp_path, ["data=digits", "data.repeat=1", "model/net=mlp", "data.train_subset=320", "data.batch_size=32",
                                    "trainer.max_epochs=3"], kill_step=13)  # epoch 1, batch 3 of 10
    assert n > 0 and diff == 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical_infogan(tmp_path):
    # GAN global_step counts both optimisers' steps: 2 per batch; 14 = epoch 1, batch 2 of 5
    n, diff = _bit_exact(tmp_path, ["model=infogan", "callbacks=gan", "data=digits", "data.repeat=1", "data.train_subset=320",
                                    "trainer.max_epochs=2", "callbacks.mutual_information.num_samples=64"],
                         kill_step=14)
    assert n > 0 and diff == 0


def test_fresh_run_into_an_existing_run_is_refused(run_a, capsys):
    files = snapshot(run_a)
    assert xgen([*FAST, "trainer.max_epochs=1", f"hydra.run.dir={run_a}"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    after = snapshot(run_a)
    assert {k: v for k, v in after.items() if not k.startswith(".hydra") and not k.endswith(".log")} == \
           {k: v for k, v in files.items() if not k.startswith(".hydra") and not k.endswith(".log")}


def test_non_finite_training_ends_failed_naming_step_and_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    run = tmp_path / "nan"
    # lr 1e12 is finite (validation accepts it) but the weights overflow within the second epoch
    assert xgen([*FAST, "trainer.max_epochs=5", "model.lr=1e12", f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err
    s = yaml.safe_load((run / "summary.json").read_text())
    assert s["status"] == "failed" and "became NaN/inf by step" in s["error"] and "last good checkpoint" in s["error"]
    assert "became NaN/inf" in err
    for ck in (run / "checkpoints").glob("*.ckpt"):  # nothing non-finite was saved
        sd = torch.load(ck, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


@pytest.mark.slow
def test_two_launches_in_the_same_second_get_two_directories(tmp_path):
    args = [*FAST, "trainer.max_epochs=1", "data.train_subset=64"]
    env = {**os.environ, "XGEN_OUTPUT": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-m", "xgen", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for e in errs]
    runs = sorted((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 2, runs
    for r in runs:
        assert yaml.safe_load((r / "summary.json").read_text())["status"] == "completed"
        epochs = [line.split(",")[0] for line in (r / "metrics.csv").read_text().splitlines()[1:]]
        assert set(epochs) == {"0"}  # each run's own metrics only
