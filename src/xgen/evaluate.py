"""Moved: the measurements are :mod:`xgen.metrics.evaluation`, the command line :mod:`xgen.cli.eval`,
finding runs :mod:`xgen.rundir`. This module keeps the old import paths working (the command-line
names are looked up lazily, so importing it does not import :mod:`xgen.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xgen.metrics.evaluation import (STAGE_METRICS, categorical_accuracy, evaluate_model,  # noqa: F401
                                     noise_baseline, real_vs_real, vae_likelihood)
from xgen.rundir import find_checkpoints

_CLI_NAMES = ("main", "format_table", "data_module")


def find_runs(path: str | Path) -> list[tuple[Path, Path | None]]:
    """(checkpoint, run directory or None): :func:`xgen.rundir.find_checkpoints` with plain paths."""
    return [(ckpt, run.path if run is not None else None) for ckpt, run in find_checkpoints(path)]


def __getattr__(name: str) -> Any:
    if name in _CLI_NAMES:
        import xgen.cli.eval as cli_eval

        return getattr(cli_eval, name)
    raise AttributeError(f"module 'xgen.evaluate' has no attribute {name!r}")
