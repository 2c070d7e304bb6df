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


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    from xgen.utils.resources import concurrent_jobs

    if not OmegaConf.has_resolver("xgen.concurrent_jobs"):
        OmegaConf.register_new_resolver("xgen.concurrent_jobs", lambda per_gpu: concurrent_jobs(int(per_gpu)))


def _share_machine(cfg, hc, multirun: bool) -> None:
    """Concurrent jobs of a sweep split the CPU cores and go round robin over the visible GPUs."""
    import torch
    from omegaconf import open_dict

    from xgen.utils.resources import plan

    if not multirun:
        return
    launcher = hc.launcher
    n_parallel = launcher.get("n_jobs") if "Joblib" in str(launcher.get("_target_", "")) else None
    res = plan(hc.job.num, n_parallel, gpu_count=torch.cuda.device_count())
    torch.set_num_threads(res.threads)
    trainer = cfg.trainer
    if (res.gpu is not None and str(trainer.get("devices")) == "1"
            and str(trainer.get("accelerator")) in ("auto", "gpu", "cuda")):
        with open_dict(cfg):
            cfg.trainer.devices = [res.gpu]


def _train_app():
    import hydra
    from omegaconf import DictConfig

    from xgen.errors import XgenError

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
    def run(cfg: DictConfig):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from xgen.train import run_job

        _route_lightning_logs_to_hydra()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        _share_machine(cfg, hc, multirun)
        try:
            summary = run_job(cfg, hc.runtime.output_dir, list(hc.overrides.task), multirun)
        except XgenError as e:
            print(f"xgen: error: {e}", file=sys.stderr)
            if multirun:  # let Hydra record this job as failed; the other jobs of the sweep go on
                raise
            raise SystemExit(2) from None
        return summary["metrics"].get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None

    return run


# `xgen <sub> ...` runs another entry point; anything else is a Hydra training run.
SUBCOMMANDS = {
    "eval": "xgen.evaluate:main",   # metrics of a checkpoint or run directory
    "report": "xgen.report:main",   # table + plots of a run or multirun directory
    "explain": "xgen.explain.cli:main",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, func = SUBCOMMANDS[argv[0]].split(":")
        sys.argv = [f"xgen {argv[0]}", *argv[1:]]
        raise SystemExit(getattr(importlib.import_module(module), func)(argv[1:]))
    sys.argv = [sys.argv[0], *argv]
    _register_resolvers()
    _train_app()()


if __name__ == "__main__":
    main()
