"""No lost work: signals save a mid-epoch checkpoint and end the run 'interrupted'; writes are atomic."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from test_resume import FAST, SRC, TESTS, xgen, xgen_process

WRITER = r"""
import sys, torch
from xgen.callbacks.checkpoint import atomic_torch_save
from xgen.checkpoint.safety import add_digest
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
path, how = sys.argv[1], sys.argv[2]
io = TorchCheckpointIO()
for i in range(10**6):
    ck = {"state_dict": {"w": torch.full((4_000_000,), float(i))}, "epoch": i}
    add_digest(ck)
    atomic_torch_save(ck, path) if how == "atomic" else io.save_checkpoint(ck, path)
    print(i, flush=True)
"""


def kill_during_writes(directory: Path, how: str, kills: int, seed: int = 0) -> dict[str, int]:
    """SIGKILL a process that rewrites ``last.ckpt`` (16 MB) in a loop, ``kills`` times at random moments;
    count the outcomes of reading ``last.ckpt`` afterwards."""
    from xgen.errors import ConfigError
    from xgen.checkpoint.safety import read_checkpoint

    rng = random.Random(seed)
    path = directory / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = {"ok": 0, "corrupt": 0, "orphans": 0}
    for _ in range(kills):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), how], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        p.stdout.readline()  # one complete write done (the previous good checkpoint exists)
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            read_checkpoint(path)
            out["ok"] += 1
        except ConfigError:
            out["corrupt"] += 1
        out["orphans"] += len([q for q in directory.iterdir() if q.name != "last.ckpt"])
    return out


@pytest.mark.slow  # 8 writer processes (torch import each): ~30 s idle, 194 s measured on the shared 2-core box
@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (a filesystem other than the temp dir)")
def test_kill_during_checkpoint_write_on_another_filesystem_never_corrupts_last_ckpt():
    from xgen.callbacks.checkpoint import remove_stale_temps

    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        res = kill_during_writes(Path(d), "atomic", kills=8)
        assert res["ok"] == 8 and res["corrupt"] == 0, res
        remove_stale_temps(d)  # what the checkpoint callback does when a run starts
        assert [p.name for p in Path(d).iterdir()] == ["last.ckpt"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130), ("SIGUSR1", 138)])
def test_signal_mid_epoch_saves_checkpoint_and_ends_interrupted(tmp_path, monkeypatch, capsys, sig, code):
    from xgen.models import load_model

    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("XGEN_PLUGINS", "xgen_killer")
    run = tmp_path / "run"
    # 320 images / 32 = 10 batches per epoch; the signal arrives while batch 5 of epoch 0 trains
    args = [*FAST, "data.train_subset=320", "data.batch_size=32", "trainer.max_epochs=3", f"hydra.run.dir={run}",
            "+callbacks.killer._target_=xgen_killer.KillAt", "+callbacks.killer.step=5",
            f"+callbacks.killer.marker={tmp_path / 'sent'}", f"+callbacks.killer.sig={sig}"]
    assert xgen(args) == code
    assert "interrupted by " + sig in capsys.readouterr().err
    s = _summary(run)
    assert s["status"] == "interrupted" and s["global_step"] == 6 and s["signal"] == getattr(signal, sig)
    ckpt = torch.load(s["checkpoint"], weights_only=True)
    assert ckpt["global_step"] == 6 and ckpt["epoch"] == 0
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 6  # mid-epoch
    assert load_model(s["checkpoint"]).hparams.latent_dim == 16
    # and the run continues from there to the end
    assert xgen([f"hydra.run.dir={run}", "ckpt_path=last"]) == 0
    assert _summary(run)["status"] == "completed" and _summary(run)["global_step"] == 30


def test_sigterm_real_process_exits_143_with_summary(tmp_path):
    run = tmp_path / "run"
    r = xgen_process([*FAST, "data.train_subset=320", "data.batch_size=32", "trainer.max_epochs=3",
                      f"hydra.run.dir={run}", "+callbacks.killer._target_=xgen_killer.KillAt",
                      "+callbacks.killer.step=12", f"+callbacks.killer.marker={tmp_path / 'sent'}",
                      "+callbacks.killer.sig=SIGTERM"], tmp_path)
    assert r.returncode == 143, r.stderr[-2000:]
    s = _summary(run)
    assert s["status"] == "interrupted" and s["global_step"] == 13
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 13


def test_multirun_relaunch_continues_interrupted_job_with_its_overrides(tmp_path):
    """A sweep job stopped by SIGTERM is continued by launching the same sweep again: its own overrides
    (data=..., seed=...) are not changes to refuse on resume (they were, before: 'data: cannot change')."""
    sweep = tmp_path / "sweep"
    args = ["-m", *FAST, "seed=3", "trainer.max_epochs=2", f"hydra.sweep.dir={sweep}",
            "+callbacks.killer._target_=xgen_killer.KillAt", "+callbacks.killer.step=5",
            f"+callbacks.killer.marker={tmp_path / 'sent'}", "+callbacks.killer.sig=SIGTERM"]
    r = xgen_process(args, tmp_path)
    assert r.returncode == 143, r.stderr[-2000:]
    s = _summary(sweep / "0")
    assert s["status"] == "interrupted" and s["global_step"] == 6
    r = xgen_process(args, tmp_path)  # the same command; the marker keeps the killer from firing again
    assert r.returncode == 0, r.stderr[-2000:]
    s = _summary(sweep / "0")
    assert s["status"] == "completed" and s["global_step"] == 8, s  # 2 epochs x 4 batches (256 samples, batch 64)
    assert "continuing" in (sweep / "0" / "train.log").read_text()


@pytest.mark.parametrize("preset", [["callbacks=none"], ["callbacks=default", "+callbacks/fid=default"],
                                    ["callbacks=gan", "callbacks.resume_state=null", "callbacks.stop_on_signal=null"]])
def test_stop_on_signal_and_resume_state_are_configured_or_added_and_come_last(compose, tmp_path, preset):
    """Both are entries of the callbacks config (every preset but none); a config without them still gets
    them; StopOnSignal comes after the checkpoint callbacks and ResumeState after every callback."""
    from xgen.callbacks.checkpoint import Checkpoint
    from xgen.callbacks.resume import ResumeState
    from xgen.callbacks.signals import StopOnSignal, active_watch
    from xgen.runtime import resume, signals
    from xgen.runtime.train import build

    model = ["model=infogan"] if "callbacks=gan" in preset else ["model=vae"]
    cfg = compose(["data=digits", *model, *preset, "logger=csv", "trainer.accelerator=cpu"])
    configured = [k for k in ("stop_on_signal", "resume_state") if (cfg.callbacks or {}).get(k) is not None]
    assert configured == ([] if "callbacks=none" in preset or "callbacks.resume_state=null" in preset
                          else ["stop_on_signal", "resume_state"])
    _, _, trainer, _ = build(cfg, tmp_path / "run")
    before = [c for c in trainer.callbacks if isinstance(c, (StopOnSignal, ResumeState))]
    assert len(before) == len(configured)
    with signals.SignalWatch() as watch:
        assert signals.active() is watch and active_watch() is watch
        signals.attach(trainer, tmp_path / "run")
        resume.attach(trainer)
    assert active_watch() is None
    *rest, stop, state = trainer.callbacks
    assert isinstance(stop, StopOnSignal) and isinstance(state, ResumeState)
    assert not any(isinstance(c, (StopOnSignal, ResumeState)) for c in rest)
    assert all(c in (stop, state) for c in before)  # the configured ones are kept, not replaced
    assert stop.watch is None  # it reads the active watch at every check
    if "callbacks=none" not in preset:
        assert any(isinstance(c, Checkpoint) for c in rest)
