"""The ``xgen`` command: a Hydra application over the configs shipped in ``xgen.conf``.

    xgen                                   # the default experiment (VAE on Fashion-MNIST)
    xgen model=beta_vae model.beta=4 data=digits trainer.max_epochs=1
    xgen -m model=vae,beta_vae data=digits # a multirun
    xgen --help / xgen --cfg job           # Hydra's help and the composed config
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

CONFIG_DIR = str(Path(str(files("xgen.conf"))).resolve())


def _route_lightning_logs_to_hydra() -> None:
    """Lightning prints through its own console handler; under Hydra that doubles every line. Let its
    records propagate to Hydra's handlers instead (console + the run's log file)."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.propagate = True


def _train_app():
    import hydra
    from omegaconf import DictConfig

    from xgen.errors import XgenError

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
    def run(cfg: DictConfig):
        from hydra.core.hydra_config import HydraConfig

        from xgen.train import train

        _route_lightning_logs_to_hydra()
        try:
            summary = train(cfg, HydraConfig.get().runtime.output_dir)
        except XgenError as e:
            print(f"xgen: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return summary["metrics"].get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None

    return run


# `xgen <sub> ...` runs another entry point; anything else is a Hydra training run.
SUBCOMMANDS = {
    "eval": "xgen.evaluate:main",   # metrics of a checkpoint or run directory
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, func = SUBCOMMANDS[argv[0]].split(":")
        sys.argv = [f"xgen {argv[0]}", *argv[1:]]
        raise SystemExit(getattr(importlib.import_module(module), func)(argv[1:]))
    sys.argv = [sys.argv[0], *argv]
    _train_app()()


if __name__ == "__main__":
    main()
