"""Building from a composed config (Hydra's ``instantiate``, unwrapping xgen's own errors) and finding the data
module of a run or of a named data config: shared by the training job, the checks before it and the
command lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xgen.checkpoint.runs import RunDir, resolve_checkpoint
from xgen.errors import ConfigError, XgenError
from xgen.runtime.config import CONFIG_DIR, data_configs


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
    that run's last.ckpt; a file -> itself. Returns (checkpoint, run directory it belongs to);
    the rules are :func:`xgen.checkpoint.runs.resolve_checkpoint`'s."""
    ckpt, run = resolve_checkpoint(ckpt_path, run_dir)
    return (str(ckpt) if ckpt is not None else None), (run.path if run is not None else None)


def data_module(run: RunDir | None, data: str | None):
    """The run's data module (from its config.yaml), or the named data config (``--data``)."""
    from hydra.utils import instantiate

    from xgen.checkpoint.safety import run_data_config

    if data is None and run is not None and run.config_file.is_file():
        cfg_data = run_data_config(run.config_file)  # allow-listed data module only: config.yaml is data, not code
        if cfg_data is not None:
            return instantiate(cfg_data)
    if data is None:
        raise ConfigError("--data: this checkpoint has no config.yaml beside it; name the data config "
                          "(e.g. --data fashion_mnist).")
    from hydra import compose, initialize_config_dir

    available = data_configs()
    if data not in available:
        raise ConfigError(f"--data: unknown data config {data!r}; choose one of {', '.join(available)}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={data}"])
    return instantiate(cfg.data)
