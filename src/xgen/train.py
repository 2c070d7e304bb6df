"""The training job behind ``xgen``: compose -> instantiate -> fit -> test -> summary.json."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from xgen.errors import ConfigError, XgenError
from xgen.utils.loggers import build_loggers

log = logging.getLogger("xgen")


def instantiate(cfg: Any, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, unwrapping xgen's own errors so the user sees their message."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as _instantiate

    try:
        return _instantiate(cfg, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, XgenError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise ConfigError(f"{key}: {e}") from e


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> tuple[str | None, Path | None]:
    """``null`` -> no resume; ``last`` -> this run directory's checkpoints/last.ckpt; a directory ->
    that run's last.ckpt; a file -> itself. Returns (checkpoint, run directory it belongs to)."""
    if not ckpt_path:
        return None, None
    p = run_dir if str(ckpt_path) == "last" else Path(str(ckpt_path)).expanduser()
    if p.is_dir():
        cand = p / "checkpoints" / "last.ckpt"
        if not cand.is_file():
            raise ConfigError(f"ckpt_path={ckpt_path}: no checkpoints/last.ckpt under {p}. To resume, "
                              "point hydra.run.dir (or ckpt_path) at the run directory to continue.")
        return str(cand), p
    if not p.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file.")
    return str(p), p.parent.parent if p.parent.name == "checkpoints" else p.parent


def build(cfg: DictConfig, run_dir: Path):
    """Instantiate data module, model, callbacks, loggers and trainer (no data is read here)."""
    datamodule = instantiate(cfg.data, "data")
    # networks inside the model config are built by the model itself (it knows image_shape)
    model = instantiate(cfg.model, "model", image_shape=list(datamodule.image_shape),
                        _recursive_=False, _convert_="all")
    callbacks = [instantiate(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c]
    ckpt, resume_dir = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    loggers = build_loggers(cfg.get("logger"), run_dir, resume_dir, model_name=type(model).__name__)
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers,
                          default_root_dir=str(run_dir))
    return datamodule, model, trainer, ckpt


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train as configured and return the final metrics (also written to ``summary.json``)."""
    run_dir = Path(run_dir or cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    datamodule, model, trainer, ckpt = build(cfg, run_dir)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if v.numel() == 1 and not k.endswith("_step")}
    if cfg.get("test") and not trainer.interrupted:
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for r in results for k, v in r.items()})
    summary = {"status": "interrupted" if trainer.interrupted else "completed",
               "wall_time_s": round(time.perf_counter() - start, 3),
               "epochs": trainer.current_epoch, "global_step": trainer.global_step,
               "metrics": dict(sorted(metrics.items())), "run_dir": str(run_dir)}
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
