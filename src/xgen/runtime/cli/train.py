"""``xgen [overrides]``: the training run, a Hydra application over the configs in ``xgen.conf``.

    xgen                                   # the default experiment (VAE on Fashion-MNIST)
    xgen model=beta_vae model.beta=4 data=digits trainer.max_epochs=1
    xgen -m model=vae,beta_vae data=digits # a multirun
    xgen --help / xgen --cfg job           # Hydra's help and the composed config

Every job prints its run directory when it starts and what it wrote there when it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xgen.runtime.config import CONFIG_DIR


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

    if not OmegaConf.has_resolver("xgen.uid"):  # [harden] run dirs unique even within one second
        from xgen.runtime.validate import launch_uid

        OmegaConf.register_new_resolver("xgen.uid", launch_uid, use_cache=True)
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


def _is_main_process() -> bool:
    """False in the extra processes DDP starts (they re-run the command with a rank in the environment)."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def announce(run_dir: str | Path, when: str, job: int | None = None) -> None:
    """One line on stdout: where this run writes (``start``) or what it wrote there (``end``)."""
    from xgen.checkpoint.runs import RunDir

    if not _is_main_process():
        return
    tag = f"job {job}: " if job is not None else ""
    if when == "start":
        print(f"xgen: {tag}run directory {run_dir}", flush=True)
    else:
        found = RunDir(run_dir).outputs()
        print(f"xgen: {tag}outputs in {run_dir}" + (f" ({', '.join(found)})" if found else ""), flush=True)


def _train_app():
    import hydra
    from omegaconf import DictConfig

    from xgen.errors import XgenError

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
    def run(cfg: DictConfig):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from xgen.runtime.signals import Interrupted
        from xgen.runtime.train import run_job

        _route_lightning_logs_to_hydra()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        _share_machine(cfg, hc, multirun)
        job = hc.job.num if multirun else None
        announce(hc.runtime.output_dir, "start", job)
        try:
            summary = run_job(cfg, hc.runtime.output_dir, list(hc.overrides.task), multirun)
        except XgenError as e:
            print(f"xgen: error: {e}", file=sys.stderr)
            from xgen.runtime.validate import remove_unstarted_run_dir  # [harden] a run that never started leaves no dir

            remove_unstarted_run_dir(hc.runtime.output_dir)
            if multirun:  # let Hydra record this job as failed; the other jobs of the sweep go on
                raise
            raise SystemExit(2) from None
        except Interrupted as e:  # a signal: state saved, summary says interrupted; stop the sweep
            print(f"xgen: {e}. Continue with: xgen hydra.run.dir={hc.runtime.output_dir} ckpt_path=last",
                  file=sys.stderr)
            raise SystemExit(e.exit_code) from None
        announce(hc.runtime.output_dir, "end", job)
        return summary["metrics"].get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None

    return run


def main(argv: list[str] | None = None) -> None:
    """Run the Hydra training app on ``argv`` (Hydra reads ``sys.argv``)."""
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0], *argv]
    from xgen.checkpoint.safety import load_plugins  # [harden] $XGEN_PLUGINS: modules that register user classes

    load_plugins()
    _register_resolvers()
    from xgen.errors import XgenError  # [harden] every job of a run or multirun checked before Hydra starts one
    from xgen.runtime.validate import precheck_command

    try:
        precheck_command(argv)
    except XgenError as e:
        print(f"xgen: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    _train_app()()
