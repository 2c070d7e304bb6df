"""The training job behind ``xgen``: compose -> instantiate -> fit -> test -> summary.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from xgen.errors import ConfigError, XgenError
from xgen.checkpoint.runs import RunDir
from xgen.runtime.compose import instantiate, resolve_ckpt
from xgen.utils.loggers import build_loggers

log = logging.getLogger("xgen")


def sweep_group(cfg: DictConfig) -> str | None:
    """The W&B group of a job: ``sweep_name``, else the multirun directory's name, else None."""
    if cfg.get("sweep_name"):
        return str(cfg.sweep_name)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return Path(str(hc.sweep.dir)).name if hc.mode == RunMode.MULTIRUN else None
    except ValueError:  # HydraConfig not set: called from Python, not from the xgen command
        return None


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as {"model.beta": 4.0, ...}: what W&B's parallel-coordinates view needs."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node if not isinstance(node, list) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def build(cfg: DictConfig, run_dir: Path):
    """Instantiate data module, model, callbacks, loggers and trainer (no data is read here).

    The data module is handed the model's ``value_range`` here (a tanh generator reads and writes
    (-1, 1)); a ``data.value_range`` set by hand must agree with it.
    """
    from xgen.data import InMemoryDataModule
    from xgen.protocols import value_range_of

    datamodule = instantiate(cfg.data, "data")
    # networks inside the model config are built by the model itself (it knows image_shape)
    model = instantiate(cfg.model, "model", image_shape=list(datamodule.image_shape),
                        _recursive_=False, _convert_="all")
    from xgen.runtime.validate import check_built  # what needs the built objects, checked on the ones trained

    check_built(datamodule, model)
    if isinstance(datamodule, InMemoryDataModule):
        model_range = value_range_of(model)
        if datamodule.value_range_given and datamodule.value_range != model_range:
            raise ConfigError(f"data.value_range: {list(datamodule.value_range)} differs from the range "
                              f"{list(model_range)} that {type(model).__name__} reads and writes; leave "
                              "data.value_range=null (xgen passes the model's range to the data).")
        datamodule.set_value_range(model_range)
    from xgen.runtime import speed
    from xgen.callbacks.checkpoint import install_atomic_io

    speed.apply(model, speed.options(cfg.get("speed")))  # channels_last, compile; cuda_graph at train start
    callbacks = [instantiate(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c]
    ckpt, resume_dir = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    loggers = build_loggers(cfg.get("logger"), run_dir, resume_dir, model_name=type(model).__name__,
                            group=sweep_group(cfg))
    quiet = {} if cfg.trainer.get("profiler") else {"profiler": speed.NoProfiler()}  # docs/speed.md
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers,
                          default_root_dir=str(run_dir), **quiet)
    install_atomic_io(trainer)  # every checkpoint read is checked as data, every write atomic (xgen.checkpoint.schema)
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and trainer.is_global_zero:
            lg.experiment.config.update(flat_config(cfg), allow_val_change=True)
    return datamodule, model, trainer, ckpt


SUMMARY = RunDir.SUMMARY


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's summary.json (:meth:`xgen.runtime.rundir.RunDir.read_summary`)."""
    return RunDir(run_dir).read_summary()


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> None:
    """Write summary.json atomically (:meth:`xgen.runtime.rundir.RunDir.write_summary`)."""
    RunDir(run_dir).write_summary(summary)


def _is_rank_zero() -> bool:
    """False in the processes DDP starts for ranks > 0 (they re-run the command into rank 0's directory)."""
    import os

    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _alive(summary: dict[str, Any]) -> bool:
    """Whether the process a ``running`` summary names is still running on this machine."""
    import os
    import socket

    pid = summary.get("pid")
    if not isinstance(pid, int) or summary.get("host") != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (OSError, ProcessLookupError):
        return False
    return True


def run_job(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None,
            multirun: bool = False) -> dict[str, Any]:
    """One job of a run or multirun: skip it when an identical job already completed in this
    directory (multirun re-launch), continue it from its ``last.ckpt`` when it was interrupted or
    killed, else train; a failure is recorded in summary.json, then raised. A fresh job refused
    before its first training step leaves no files of its own."""
    import traceback

    from xgen.runtime import resume  # [harden] resuming uses the run's own config; interrupted jobs continue
    from xgen.runtime.rundir import check_run_tree

    run_dir = Path(run_dir)
    overrides = list(overrides or [])
    check_run_tree(run_dir)  # [harden] no write through a link out of the run
    previous = read_summary(run_dir)
    if (multirun and cfg.get("skip_completed", True) and previous and previous.get("status") == "completed"
            and previous.get("overrides") == overrides):
        log.info("skipping %s: already completed with the same overrides (skip_completed=true)", run_dir)
        return {**previous, "skipped": True}
    if previous and previous.get("status") == "running" and _is_rank_zero() and _alive(previous):
        raise ConfigError(f"hydra.run.dir={run_dir}: this job is running now (pid {previous['pid']}); wait for it or "
                          "stop it first.")
    if (multirun and previous and previous.get("status") in ("interrupted", "running") and not cfg.get("ckpt_path")
            and previous.get("overrides") == overrides and (run_dir / "checkpoints" / "last.ckpt").is_file()):
        from omegaconf import open_dict

        how = "interrupted" if previous["status"] == "interrupted" else "killed"
        log.info("continuing %s from its last.ckpt (%s earlier)", run_dir, how)
        with open_dict(cfg):
            cfg.ckpt_path = "last"
        # its overrides are the ones it was started with (checked above), not changes to refuse on resume
        cfg = resume.resume_config(cfg, [], run_dir)
    else:
        cfg = resume.resume_config(cfg, overrides, run_dir)
        if multirun:  # [harden] every job checked as a single run is (Optuna trials, launchers, sweep files)
            from xgen.runtime.validate import validate

            validate(cfg, run_dir)
    from xgen.runtime.validate import check_fresh_run_dir  # [harden] a fresh run never appends to another run's files

    check_fresh_run_dir(cfg, run_dir, multirun)
    fresh = not cfg.get("ckpt_path")
    kept = {n: (run_dir / n).read_bytes() for n in ("config.yaml", "summary.json")
            if not fresh and (run_dir / n).is_file() and not (run_dir / n).is_symlink()}
    from xgen.runtime.signals import Interrupted  # [harden] signals end a job as "interrupted"

    try:
        return train(cfg, run_dir, overrides=overrides)
    except Interrupted as e:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_summary(run_dir, {"status": "interrupted", "error": str(e), "signal": e.signum,
                                "checkpoint": e.checkpoint, "global_step": e.step, "overrides": overrides,
                                "metrics": {}, "run_dir": str(run_dir)})
        raise
    except Exception as e:
        if isinstance(e, XgenError) and (getattr(e, "before_first_step", False)
                                         or not (run_dir / "config.yaml").is_file()):
            if fresh:
                discard_attempt(run_dir)
            else:  # a refused resume leaves the run's files as they were
                from xgen.checkpoint.runs import atomic_write_text

                for n, b in kept.items():
                    atomic_write_text(run_dir / n, b.decode("utf-8", "replace"))
            raise  # [harden] refused before it started: no summary (the command removes the empty run dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            status = "pruned" if type(e).__name__ == "TrialPruned" else "failed"  # Optuna stopped it early
            write_summary(run_dir, {"status": status, "error": f"{type(e).__name__}: {e}",
                                    "traceback": traceback.format_exc(limit=20), "overrides": overrides,
                                    "metrics": {}, "run_dir": str(run_dir)})
        except OSError:  # a full disk: the error itself says so
            pass
        raise


ATTEMPT_FILES = ("config.yaml", "summary.json", "hparams.yaml", "metrics.csv", "samples", "checkpoints",
                 "lightning_logs", "wandb", "tensorboard")


def discard_attempt(run_dir: Path) -> None:
    """Remove what a fresh job wrote before it was refused (it never took a training step)."""
    import shutil

    for name in ATTEMPT_FILES:
        p = run_dir / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def train(cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train as configured and return the final metrics (also written to ``summary.json``)."""
    import os
    import socket

    from xgen.checkpoint.runs import atomic_write_text

    run_dir = Path(run_dir or cfg.paths.output_dir)
    resumed = None
    if cfg.get("ckpt_path"):  # [harden] a checkpoint of another model/data is refused before any write
        from xgen.runtime.resume import check_checkpoint_matches

        try:
            ck_file, ck_run = resolve_ckpt(cfg.ckpt_path, run_dir)
            resumed = check_checkpoint_matches(cfg, ck_file)
        except XgenError as e:
            e.before_first_step = True
            raise
    run_dir.mkdir(parents=True, exist_ok=True)
    if resumed is not None and ck_run is not None and ck_run.resolve() == run_dir.resolve():
        from xgen.runtime.rundir import trim_metrics  # rows a killed run logged after its checkpoint would come twice

        step = resumed.get("global_step")
        if isinstance(step, int) and trim_metrics(run_dir / "metrics.csv", step):
            log.info("metrics.csv: dropped the rows logged after step %d (the checkpoint this run continues)", step)
    resumed = None  # Lightning reads the file itself (through xgen's checked IO)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # a job killed without a word (SIGKILL, OOM, node failure) is continued on re-launch from this mark
    if _is_rank_zero():
        write_summary(run_dir, {"status": "running", "overrides": list(overrides or []), "pid": os.getpid(),
                                "host": socket.gethostname(), "metrics": {}, "run_dir": str(run_dir)})
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    from xgen.runtime.signals import SignalWatch  # [harden] SIGTERM/SIGINT/SIGUSR1: checkpoint, then stop

    with SignalWatch():
        trainer = None
        try:
            datamodule, model, trainer, ckpt = build(cfg, run_dir)
            return _fit_and_test(cfg, run_dir, overrides, datamodule, model, trainer, ckpt)
        except XgenError as e:
            if str(e).startswith("checkpoint: ") and cfg.get("ckpt_path"):  # name the file a state came from
                e = type(e)(f"{resolve_ckpt(cfg.ckpt_path, run_dir)[0]}: {str(e)[len('checkpoint: '):]}")
            e.before_first_step = trainer is None or trainer.global_step == 0
            raise e from None
        except Exception as e:
            from lightning.fabric.utilities.exceptions import MisconfigurationException

            if isinstance(e, MisconfigurationException):  # Lightning's word on a setting: one line, naming it
                err = ConfigError(_lightning_key(cfg, str(e)) + " ".join(str(e).split("HINT:")[0].split())[:400])
                err.before_first_step = trainer is None or trainer.global_step == 0
                raise err from None
            raise
        finally:
            finish_wandb()


def _lightning_key(cfg: DictConfig, msg: str) -> str:
    """The config key a Lightning misconfiguration message is about, as a prefix ('callbacks.x.monitor: ')."""
    import re

    m = re.search(r"monitor='([^']*)'", msg)
    if m:
        for name, spec in (cfg.get("callbacks") or {}).items():
            if spec is not None and spec.get("monitor") == m.group(1):
                return f"callbacks.{name}.monitor: "
    return "trainer: "


def finish_wandb() -> None:
    """Close the active W&B run: otherwise the next job of a multirun in the same process would
    silently log into it (wandb.init returns the run in progress)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _fit_and_test(cfg, run_dir, overrides, datamodule, model, trainer, ckpt) -> dict[str, Any]:
    if trainer.world_size > 1 and cfg.get("seed") is not None:
        # the same seed on every rank would make all ranks draw the same latent noise each step (the
        # model's initial weights are broadcast from rank 0 by DDP anyway): offset it by the rank
        L.seed_everything(int(cfg.seed) + 1000 * trainer.global_rank, workers=True, verbose=False)
    from xgen.runtime import resume, signals  # [harden] RNG states in checkpoints; stop on signals
    from xgen.callbacks.signals import save_last

    from xgen.callbacks import finite_guard

    finite_guard.attach(trainer)  # NaN/inf ends the run as failed, naming the step and the last good ckpt
    signals.attach(trainer, run_dir)  # configured (callbacks.stop_on_signal) or added; moved to the end
    resume.attach(trainer)  # configured (callbacks.resume_state) or added; after every other callback
    from xgen.callbacks.checkpoint import Checkpoint

    for cb in trainer.callbacks:  # no "checkpoint directory is not empty" warning when continuing a run
        if isinstance(cb, Checkpoint):
            cb.resuming = ckpt is not None
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    watch = signals.active()
    if watch is not None and watch.signum is not None:  # a signal during the last validation
        watch.raise_if_signalled(save_last(trainer, run_dir), trainer.global_step)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if v.numel() == 1 and not k.endswith("_step")}
    if cfg.get("test") and not trainer.interrupted:
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for r in results for k, v in r.items()})
    summary = {"status": "interrupted" if trainer.interrupted else "completed",
               "wall_time_s": round(time.perf_counter() - start, 3),
               # CPU seconds of this process (every thread) over fit, validation and test; on DDP rank 0's
               "cpu_time_s": round(time.process_time() - cpu_start, 3),
               "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "metrics": dict(sorted(metrics.items())), "run_dir": str(run_dir),
               "overrides": list(overrides or []), "torch_threads": torch.get_num_threads(),
               "devices": [str(d) for d in trainer.device_ids] if hasattr(trainer, "device_ids") else None}
    if trainer.is_global_zero:
        write_summary(run_dir, summary)
    return summary
