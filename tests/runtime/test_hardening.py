"""A handed run can't touch your machine: each attack of the hardening issue, reproduced and refused.

Every test here failed on the main before the fix (the note of that session lists before/after)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xgen.checkpoint.schema import ALL_KEY, DIGEST_KEY, full_digest
from xgen.errors import ConfigError
from xgen.checkpoint.safety import INT8_KEY, add_digest, quantize_int8, read_checkpoint

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
FAST = ["data=digits", "data.repeat=1", "model/net=mlp", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "test=false", "data.train_subset=256", "logger=csv"]


def xgen(args: list[str]) -> int:
    from xgen.runtime.cli import main

    try:
        main(list(args))
        return 0
    except SystemExit as e:
        return int(e.code or 0)


def save_crafted(ckpt: dict, path: Path) -> None:
    """Write a modified checkpoint with both digests recomputed, as an attacker would."""
    ckpt = dict(ckpt)
    add_digest(ckpt)
    ckpt[DIGEST_KEY] = {**ckpt[DIGEST_KEY], ALL_KEY: full_digest(ckpt)}
    torch.save(ckpt, path)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 1-epoch run on digits (copied per test)."""
    root = tmp_path_factory.mktemp("trained")
    os.environ["XGEN_OUTPUT"] = str(root / "outputs")
    run = root / "run"
    assert xgen([*FAST, "trainer.max_epochs=1", f"hydra.run.dir={run}"]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    dst = tmp_path / "run"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


def resume(run: Path, epochs: int = 2) -> int:
    return xgen([f"hydra.run.dir={run}", "ckpt_path=last", f"trainer.max_epochs={epochs}"])


# ----------------------------------------------------------------------------- 1. a checkpoint is data
@pytest.mark.parametrize("how", ["absolute", "dotdot", "local_url"])
def test_best_model_path_in_a_checkpoint_never_deletes_outside_the_run(run, tmp_path, how, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    path = {"absolute": str(victim), "dotdot": f"{run}/checkpoints/../../victim",
            "local_url": f"local://{victim}"}[how]
    ck = load(run / "checkpoints" / "last.ckpt")
    key = next(k for k in ck["callbacks"] if k.startswith("Checkpoint"))
    state = dict(ck["callbacks"][key])
    state.update(best_model_path=path, kth_best_model_path=path, best_k_models={path: torch.tensor(0.0)},
                 dirpath=str(run / "checkpoints"))
    ck["callbacks"] = {**ck["callbacks"], key: state}
    save_crafted(ck, run / "checkpoints" / "last.ckpt")
    assert resume(run, 3) == 0
    assert (victim / "precious.txt").read_text() == "keep me"
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


def _crafted_loop(ck):
    ck["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] = -5


def _crafted_loop_order(ck):
    ck["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] = 10**9
    ck["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] = 10**10


def _crafted_optimizer(ck):
    st = ck["optimizer_states"][0]["state"]
    k = next(iter(st))
    st[k]["exp_avg"] = torch.zeros(3, 3)


def _crafted_optimizer_groups(ck):
    ck["optimizer_states"][0]["param_groups"][0]["params"] = [0]


def _crafted_rng(ck):
    ck["callbacks"]["ResumeState"]["rng"]["python"] = (3, (1, 2, 3), None)


def _crafted_rng_torch(ck):
    ck["callbacks"]["ResumeState"]["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)


def _crafted_datamodule(ck):
    ck["DigitsDataModule"] = {"seed": 12345}


def _crafted_datamodule_target(ck):
    ck["DigitsDataModule"] = {"seed": 0, "_target_": "os.system"}


def _crafted_shape(ck):
    k = next(iter(ck["state_dict"]))
    ck["state_dict"][k] = torch.zeros(2, 2)


def _crafted_top(ck):
    ck["_target_"] = "os.system"


def _crafted_callback(ck):
    key = next(k for k in ck["callbacks"] if k.startswith("Checkpoint"))
    ck["callbacks"][key] = {**ck["callbacks"][key], "evil": {"_target_": "os.system"}}


@pytest.mark.parametrize("craft,entry", [
    (_crafted_loop, "loops/fit_loop/epoch_progress/total/completed"), (_crafted_loop_order, "epoch_loop.batch_progress"),
    (_crafted_optimizer, "optimizer_states[0]/state"), (_crafted_optimizer_groups, "optimizer_states[0]/param_groups"),
    (_crafted_rng, "ResumeState/rng/python"), (_crafted_rng_torch, "ResumeState/rng/torch"),
    (_crafted_datamodule, "DigitsDataModule/seed"), (_crafted_datamodule_target, "DigitsDataModule"),
    (_crafted_shape, "state_dict/"), (_crafted_top, "_target_"), (_crafted_callback, "callbacks/Checkpoint"),
])
def test_crafted_training_state_with_recomputed_digest_is_refused_naming_the_entry(run, craft, entry, capsys):
    """Optimizer, loop, callback, data-module and RNG entries changed and both digests recomputed: the
    resume stops with one `xgen: error:` line naming the file and the entry; nothing is trained."""
    ck = load(run / "checkpoints" / "last.ckpt")
    craft(ck)
    save_crafted(ck, run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert resume(run) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("xgen: error:")]
    assert len(lines) == 1 and "last.ckpt" in lines[0] and entry in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1  # nothing was trained


def test_a_flipped_byte_in_the_optimizer_state_is_caught_by_the_whole_file_digest(run):
    ck = load(run / "checkpoints" / "last.ckpt")
    assert ALL_KEY in ck[DIGEST_KEY]  # written by xgen's checkpoint IO
    st = ck["optimizer_states"][0]["state"]
    t = st[next(iter(st))]["exp_avg"]
    t.view(-1)[0] += 1.0
    torch.save(ck, run / "checkpoints" / "last.ckpt")  # digests not recomputed
    with pytest.raises(ConfigError, match="do not match its recorded SHA-256"):
        read_checkpoint(run / "checkpoints" / "last.ckpt")


def test_kgan_extra_state_with_an_added_target_is_refused():
    from xgen.models import KGAN

    m = KGAN(image_shape=[1, 8, 8], k=2)
    good = m.get_extra_state()
    m.set_extra_state(good)
    with pytest.raises(ConfigError, match="_extra_state"):
        m.set_extra_state({**good, "_target_": "os.system"})
    with pytest.raises(ConfigError, match="partition_log"):
        m.set_extra_state({"partition_log": [{"epoch": 1, "how": "kmeans", "sizes": [1], "moved": None,
                                              "_target_": "os.system"}]})


def test_kgan_partition_fields_are_typed():
    from xgen.models import KGAN

    for bad in ({"start_epoch": True}, {"every_n_epochs": "2"}, {"sinkhorn_eps": float("nan")}, {"pool": 0}):
        with pytest.raises(ConfigError, match="model.partition."):
            KGAN(image_shape=[1, 8, 8], k=2, partition=bad)


# ----------------------------------------------------------------------------- non-finite weights, on every load path
def _nan_ckpt(run: Path, tmp_path: Path) -> Path:
    ck = load(run / "checkpoints" / "last.ckpt")
    k = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][k] = ck["state_dict"][k].clone()
    ck["state_dict"][k].view(-1)[0] = float("nan")
    out = tmp_path / "nan.ckpt"
    save_crafted(ck, out)
    return out


def _inf_scale_ckpt(run: Path, tmp_path: Path) -> Path:
    ck = load(run / "checkpoints" / "last.ckpt")
    q, scales = quantize_int8(ck["state_dict"], min_numel=1)
    k = next(iter(scales))
    scales[k] = torch.full_like(scales[k], 1e38)  # finite, but 127 * 1e38 is inf in float32
    out = tmp_path / "inf.ckpt"
    save_crafted({**{n: v for n, v in ck.items() if n in ("state_dict", "hyper_parameters", "xgen_class")},
                  "state_dict": q, INT8_KEY: scales}, out)
    return out


@pytest.mark.parametrize("make", [_nan_ckpt, _inf_scale_ckpt])
def test_non_finite_weights_are_refused_on_every_load_path(run, tmp_path, make, capsys):
    from xgen.models import VAE, load_model

    bad = make(run, tmp_path)
    with pytest.raises(ConfigError, match="NaN or inf"):
        load_model(bad)
    with pytest.raises(ConfigError, match="NaN or inf"):
        VAE.load_from_checkpoint(bad)
    from xgen.runtime.cli.eval import main as eval_main

    capsys.readouterr()
    assert eval_main([str(bad), "--num-samples", "64"]) == 2
    assert "NaN or inf" in capsys.readouterr().err
    from xgen.runtime.cli.explain import main as explain_main

    assert explain_main(["traverse", "--model", str(bad)]) == 2
    assert "NaN or inf" in capsys.readouterr().err
    from xgen.runtime.human_eval.images import run_images

    handed = tmp_path / "handed"
    shutil.copytree(run, handed)
    shutil.copy(bad, handed / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="NaN or inf"):
        run_images(handed, 4)


# ----------------------------------------------------------------------------- a tiny file can't take the machine
STRIDE_SCRIPT = r"""
import resource, sys, time, torch
from xgen.errors import ConfigError
from xgen.checkpoint.safety import read_checkpoint
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    read_checkpoint(sys.argv[1])
    print("ACCEPTED")
except ConfigError as e:
    print("REFUSED", time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, e)
"""


@pytest.mark.parametrize("n", [28_000, 1_000_000])
def test_stride_zero_tensor_is_refused_fast_and_small(tmp_path, n):
    """A 28000² (and a 10⁶×10⁶) tensor stored as a stride-0 view of a few bytes: refused in < 1 s and
    < 200 MB, in a fresh process (its peak memory is the measure)."""
    f = tmp_path / "stride0.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1).expand(n, n)}, "xgen_class": "xgen.models.vae.VAE"}, f)
    assert f.stat().st_size < 10_000
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", STRIDE_SCRIPT, str(f)], capture_output=True, text=True, env=env,
                         timeout=120).stdout.strip()
    assert out.startswith("REFUSED"), out
    _, secs, mb, *msg = out.split(" ", 3)
    assert float(secs) < 1.0 and float(mb) < 200, out
    assert "stride" in out and "state_dict/w" in out


# ----------------------------------------------------------------------------- 3. writes stay inside the run
def test_eval_refuses_to_write_through_a_link_out_of_the_run(run, tmp_path, capsys):
    from xgen.runtime.cli.eval import main as eval_main

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (run / "eval.json").symlink_to(victim)
    assert eval_main([str(run), "--num-samples", "64"]) == 2
    assert "refusing to write there" in capsys.readouterr().err
    assert victim.read_text() == "keep me"


def test_resume_refuses_a_symlinked_checkpoints_folder(run, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(run / "checkpoints"), elsewhere)
    (run / "checkpoints").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    assert resume(run) == 2
    assert "a link out of the run directory" in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == before


@pytest.mark.parametrize("key", ["callbacks.model_checkpoint.dirpath", "logger.csv.save_dir"])
def test_resume_refuses_a_config_that_writes_elsewhere(run, tmp_path, key, capsys):
    import yaml

    home = tmp_path / "home"
    home.mkdir()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    node = cfg
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = str(home)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert resume(run) == 2
    assert f"{key} is" in capsys.readouterr().err and "outside the run directory" in capsys.readouterr().err + \
        "outside the run directory"
    assert list(home.iterdir()) == []


def test_a_fresh_run_refuses_a_run_dir_with_a_link_out(tmp_path, capsys):
    victim = tmp_path / "victim.log"
    victim.write_text("keep me")
    d = tmp_path / "handed"
    d.mkdir()
    (d / "train.log").symlink_to(victim)
    assert xgen([*FAST, "trainer.max_epochs=1", f"hydra.run.dir={d}"]) == 2
    assert "a link out of the run directory" in capsys.readouterr().err
    assert victim.read_text() == "keep me"


# ----------------------------------------------------------------------------- 2. every command line is checked
@pytest.mark.parametrize("argv,key", [
    (["-m", "data=digits", "seed=0,1", "+callbacks.x._target_=builtins.print"], "callbacks.x._target_"),
    (["-m", "data=digits", "seed=0,1", "+callbacks.x._target_=torch.load", "+callbacks.x.f=/tmp/x",
      "+callbacks.x.weights_only=false"], "callbacks.x._target_"),
    (["-m", "data=digits", "seed=0,1", "trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["-m", "data=digits", "model=vae,beta_vae", "model.beta=-2"], "model.beta"),
    (["+sweep=model_zoo", "data=digits", "model.lr=-1"], "model.lr"),
    (["-m", "data=digits", "seed=0,1", "hydra.sweep.dir=/proc/x"], "hydra.sweep.dir"),
])
def test_multirun_command_lines_are_checked_before_any_job(argv, key, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    assert xgen(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("xgen: error:")]
    assert len(lines) == 1 and key in lines[0], err[-1500:]
    assert ("job 0" in lines[0]) == ("hydra.sweep.dir" not in key)
    assert not (tmp_path / "outputs").exists() and not Path("/tmp/x").exists()


@pytest.mark.parametrize("override,key", [
    ("+trainer.val_check_interval=0", "trainer.val_check_interval"),
    ("callbacks.model_checkpoint.dirpath=/proc/x", "callbacks.model_checkpoint.dirpath"),
    ("+callbacks.model_checkpoint.monitor=nonexistent", "callbacks.model_checkpoint.monitor"),
    ("+callbacks.sample_grids.traversal_span=[1]", "callbacks.sample_grids.traversal_span"),
    ("logger.wandb.mode=foo", "logger.wandb.mode"),
    ("hydra.run.dir=/proc/x", "hydra.run.dir"),
    ("model.partition.start_epoch=true", "model.partition.start_epoch"),
])
def test_overrides_that_used_to_crash_are_refused_up_front(override, key, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XGEN_OUTPUT", str(tmp_path / "outputs"))
    extra = {"logger.wandb.mode=foo": ["logger=wandb"], "model.partition.start_epoch=true": ["model=kgan"]}
    base = FAST if "partition" not in override else [a for a in FAST if a != "model/net=mlp"]
    for argv in ([*base, *extra.get(override, []), override], ["-m", *base, "seed=0,1", *extra.get(override, []), override]):
        assert xgen(argv) == 2, argv
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("xgen: error:")]
        assert len(lines) == 1 and key in lines[0] and "Traceback" not in err, err[-1500:]
    assert not (tmp_path / "outputs").exists()


def test_lightning_misconfiguration_after_start_is_one_line(run, capsys):
    """A monitored key the model never logs is known only after the first validation: one line, naming it."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert xgen([*FAST, "trainer.max_epochs=1", f"hydra.run.dir={run.parent / 'm'}",
                 "+callbacks.model_checkpoint.monitor=val/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "xgen: error: callbacks.model_checkpoint.monitor:" in err and "Traceback" not in err
    assert cfg  # the handed run was not touched


@pytest.mark.slow
def test_fuzz_bad_overrides_through_multirun(tmp_path, capsys):
    """>= 300 generated bad overrides, each as a single run and as job of a 2-job `-m` sweep: 0 tracebacks,
    0 accepted, every message naming its key (and, through -m, the job)."""
    from test_validate import NAMED, generated_cases

    from xgen.runtime.validate import precheck_command

    cases = generated_cases() + NAMED
    assert len(cases) >= 300
    start = time.perf_counter()
    tally = {"refused": 0, "accepted": [], "traceback": [], "unnamed": []}
    for overrides, key in cases:
        for argv in (overrides, ["-m", "seed=0,1", *overrides]):
            try:
                precheck_command(argv)
                tally["accepted"].append(argv[-1])
            except ConfigError as e:
                msg = str(e)
                ok = key in msg and "\n" not in msg.strip() and (argv[0] != "-m" or msg.startswith(("job 0", "every job")))
                if ok:
                    tally["refused"] += 1
                else:
                    tally["unnamed"].append((argv[-1], msg[:160]))
            except Exception as e:  # noqa: BLE001 - what this test counts
                tally["traceback"].append((argv[-1], f"{type(e).__name__}: {e}"[:200]))
    elapsed = time.perf_counter() - start
    print(f"fuzz -m: {len(cases)} cases x 2 in {elapsed:.0f} s: refused {tally['refused']}, accepted "
          f"{len(tally['accepted'])}, tracebacks {len(tally['traceback'])}, unnamed {len(tally['unnamed'])}")
    assert not tally["traceback"], tally["traceback"][:10]
    assert not tally["accepted"], tally["accepted"][:20]
    assert not tally["unnamed"], tally["unnamed"][:10]
    assert tally["refused"] == 2 * len(cases)


# ----------------------------------------------------------------------------- 6. faults say what happened
def test_disk_full_during_a_checkpoint_write_names_path_and_free_space(tmp_path):
    """A real full disk: a 1 MiB tmpfs (or, where mounting is not allowed, the same ENOSPC injected)."""
    from xgen.callbacks.checkpoint import WriteError, atomic_torch_save

    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    try:
        target = mnt / "last.ckpt"
        atomic_torch_save({"w": torch.zeros(10)}, target)
        before = target.read_bytes()
        big = {"w": torch.zeros(2_000_000)}  # 8 MB
        if mounted:
            with pytest.raises(WriteError) as e:
                atomic_torch_save(big, target)
        else:  # pragma: no cover - a sandbox without mount
            import errno
            from unittest import mock

            with mock.patch("torch.save", side_effect=OSError(errno.ENOSPC, "No space left on device")):
                with pytest.raises(WriteError) as e:
                    atomic_torch_save(big, target)
        msg = str(e.value)
        assert "disk is full" in msg and str(target) in msg and "MiB free" in msg and "7.6 MiB" in msg, msg
        assert target.read_bytes() == before  # the previous checkpoint survives
        assert [p.name for p in mnt.iterdir()] == ["last.ckpt"]  # no temp file left
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)])


def test_read_only_and_permission_denied_are_named(tmp_path):
    from xgen.callbacks.checkpoint import WriteError, atomic_torch_save

    d = tmp_path / "ro"
    d.mkdir()
    ro = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(d)], capture_output=True).returncode == 0
    try:
        if ro:
            with pytest.raises(WriteError, match="read-only"):
                atomic_torch_save({"w": torch.zeros(3)}, d / "x.ckpt")
    finally:
        if ro:
            subprocess.run(["umount", str(d)])
    import errno
    from unittest import mock

    with mock.patch("builtins.open", side_effect=PermissionError(errno.EACCES, "Permission denied")):
        with pytest.raises(WriteError, match="permission denied"):
            atomic_torch_save({"w": torch.zeros(3)}, tmp_path / "y.ckpt")


def _weights(run: Path) -> dict:
    return load(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow
def test_a_sigkilled_multirun_job_continues_from_its_checkpoint_bit_identical(tmp_path):
    """A 2-job sweep is SIGKILLed in job 0's second epoch (nothing is written at a SIGKILL); the same command
    again continues job 0 from its last.ckpt (not from epoch 0, and its files are not moved aside) and
    runs job 1: both jobs' final weights equal an uninterrupted sweep's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "XGEN_PLUGINS": "xgen_killer",
           "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "XGEN_OUTPUT": str(tmp_path / "outputs")}
    common = ["-m", *FAST, "seed=0,1", "trainer.max_epochs=2", "data.train_subset=512"]

    def sweep(d: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "xgen", *common, f"hydra.sweep.dir={d}", *extra], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    ref = sweep(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    steps = load(tmp_path / "ref" / "0" / "checkpoints" / "last.ckpt")["global_step"]
    # the killer is part of the jobs' overrides, so the re-launch is the same command line; it fires once
    kill = ["+callbacks.kill._target_=xgen_killer.KillAt", f"+callbacks.kill.step={steps * 3 // 4}",
            f"+callbacks.kill.marker={tmp_path / 'killed'}"]
    d = tmp_path / "sweep"
    first = sweep(d, *kill)
    assert first.returncode == -9 and (tmp_path / "killed").exists(), first.stderr[-2000:]
    assert json.loads((d / "0" / "summary.json").read_text())["status"] == "running"
    assert load(d / "0" / "checkpoints" / "last.ckpt")["global_step"] == steps // 2  # epoch 1's checkpoint
    assert not (d / "1").exists()
    again = sweep(d, *kill)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "continuing" in again.stderr + again.stdout and not (d / "0" / "attempt-1").exists()
    for job in ("0", "1"):
        assert json.loads((d / job / "summary.json").read_text())["status"] == "completed"
        a, b = _weights(tmp_path / "ref" / job), _weights(d / job)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), job


def test_a_fresh_run_refused_before_its_first_step_leaves_no_directory(tmp_path, capsys):
    """The data is found missing only when the job sets up (after Hydra made the run directory): one line,
    and the directory is gone."""
    empty = tmp_path / "empty"
    empty.mkdir()
    d = tmp_path / "never"
    assert xgen(["data=folder", f"data.root={empty}", "trainer.max_epochs=1", f"hydra.run.dir={d}",
                 "callbacks.progress_bar=null"]) == 2
    err = capsys.readouterr().err
    assert "xgen: error:" in err and "Traceback" not in err
    assert not d.exists()


def test_sweep_file_params_are_expanded_whatever_the_order_of_the_overrides():
    """A sweep file's own axes are crossed with the command line's even when a command-line sweep and a
    launcher choice come first (the overrides are paired with their parses, not with a filtered list)."""
    from xgen.runtime.validate import expand_jobs

    for argv in (["+sweep=model_zoo", "data=digits", "seed=0,1", "hydra/launcher=joblib"],
                 ["seed=0,1", "hydra/launcher=joblib", "+sweep=model_zoo", "data=digits"]):
        jobs, multirun = expand_jobs(argv, True)
        models = {o for j in jobs for o in j if o.startswith("model=")}
        assert multirun and len(jobs) == 12 and len(models) == 6, (argv, len(jobs))
        assert all("data=digits" in j for j in jobs)
