"""Where xgen's Hydra configs live (``xgen.conf``, shipped in the wheel) and where outputs go by default.

A module of its own so that library code (eval, report, tests) can find the configs without
importing the command line (``xgen.runtime.cli`` re-exports ``CONFIG_DIR``).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

CONFIG_DIR = str(Path(str(files("xgen.conf"))).resolve())
"""Absolute path of the shipped config tree (``train.yaml``, ``data/``, ``model/``, ...)."""


def output_root() -> Path:
    """The root of all outputs: ``$XGEN_OUTPUT``, else ``./outputs`` (the same rule as ``paths.log_dir``)."""
    return Path(os.environ.get("XGEN_OUTPUT") or "outputs")


def data_configs() -> list[str]:
    """Names of the shipped data configs (``data=<name>``)."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))
