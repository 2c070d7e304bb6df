"""Loggers from the ``logger`` config group: CSV always, W&B (offline when there is no network),
TensorBoard optional."""

from __future__ import annotations

import os
import secrets
import socket
import warnings
from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch.loggers import CSVLogger, Logger

WANDB_HOST = ("api.wandb.ai", 443)


def network_available(host: tuple[str, int] = WANDB_HOST, timeout: float = 1.5) -> bool:
    """True when a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str | None) -> str:
    """'online' or 'offline': $WANDB_MODE wins, then the config, then 'auto' tests the network."""
    env = os.environ.get("WANDB_MODE")
    if env in ("offline", "dryrun", "disabled"):
        return "offline"
    mode = (requested or "auto").lower()
    if mode == "auto":
        return "online" if network_available() else "offline"
    if mode not in ("online", "offline"):
        from xgen.errors import ConfigError

        raise ConfigError(f"logger.wandb.mode: choose auto, online or offline, got {requested!r}")
    return mode


def csv_logger(run_dir: Path) -> CSVLogger:
    """A CSVLogger writing ``<run_dir>/metrics.csv``; rows already there (a resumed run) are kept.

    Lightning's CSV writer deletes an existing metrics.csv when it starts; xgen appends instead, so a
    resumed run's metrics.csv holds the whole history.
    """
    logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    path = run_dir / "metrics.csv"
    previous = path.read_text() if path.is_file() else ""
    with warnings.catch_warnings():  # "directory not empty": it holds config.yaml (and a resumed run)
        warnings.simplefilter("ignore")
        writer = logger.experiment  # created lazily; this is where an old metrics.csv is removed
    if previous.strip():
        path.write_text(previous)
        writer.metrics_keys = previous.splitlines()[0].split(",")
    return logger


def build_loggers(cfg: Mapping[str, Any] | None, run_dir: Path, resume_from: Path | None = None,
                  model_name: str | None = None, group: str | None = None) -> list[Logger]:
    """Instantiate the configured loggers; a CSVLogger writing ``<run_dir>/metrics.csv`` is always first.

    For W&B the run id is stored in ``<run_dir>/wandb_id.txt`` so that a resumed run (``ckpt_path``
    pointing into ``resume_from``) continues the same W&B run.
    """
    from xgen.checkpoint.safety import instantiate

    cfg = dict(cfg or {})
    loggers: list[Logger] = [csv_logger(run_dir)]
    for name, spec in cfg.items():
        if not spec or name == "csv":
            continue
        spec = dict(spec)
        target = str(spec.get("_target_", ""))
        if target.endswith("WandbLogger"):
            mode = wandb_mode(spec.pop("mode", "auto"))
            spec["offline"] = mode == "offline"
            spec.setdefault("save_dir", str(run_dir))
            if not spec.get("job_type"):
                spec["job_type"] = model_name
            if not spec.get("group"):
                spec["group"] = group
            id_file = (resume_from or run_dir) / "wandb_id.txt"
            if id_file.is_file():
                spec["id"] = id_file.read_text().strip()
                spec["resume"] = "allow"
            elif not spec.get("id"):
                spec["id"] = secrets.token_hex(4)  # W&B run ids: short lowercase strings
            (run_dir / "wandb_id.txt").write_text(str(spec["id"]))
            loggers.append(instantiate(spec, "logger", f"logger.{name}"))
        else:
            spec.setdefault("save_dir", str(run_dir))
            loggers.append(instantiate(spec, "logger", f"logger.{name}"))
    return loggers
