"""Every key checked before any data is read: the composed config is validated as a whole, and a run
refused at that point leaves nothing behind."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("xgen")


def remove_unstarted_run_dir(run_dir: str | Path) -> bool:
    """Delete a run directory holding only what Hydra writes at launch (``.hydra/``, the job's log):
    a run refused before it started leaves no directory. Returns True when it was removed."""
    d = Path(run_dir)
    if not d.is_dir():
        return False
    entries = list(d.iterdir())
    if any(not (p.name == ".hydra" and p.is_dir()) and not (p.is_file() and p.suffix == ".log") for p in entries):
        return False
    for h in list(logging.getLogger().handlers):  # Hydra's file handler keeps the log open
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == d:
            logging.getLogger().removeHandler(h)
            h.close()
    shutil.rmtree(d, ignore_errors=True)
    return not d.exists()
