"""Writes of a training job stay inside its run directory: atomic files, link checks, config path checks,
metrics trimming on resume (the reading side, :class:`~xgen.checkpoint.runs.RunDir`, is library code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xgen.checkpoint.runs import atomic_write_text, is_inside
from xgen.errors import ConfigError

WRITE_KEYS = ("dirpath", "path", "save_dir", "dir", "log_dir", "root_dir", "default_root_dir", "output_dir",
              "run_dir")
"""Config keys (under ``callbacks``, ``logger``, ``trainer``, ``paths``) that name where a job writes."""
MAX_TREE = 20_000


# ----------------------------------------------------------------------------- writes stay inside the run
def check_write_target(path: str | Path, root: str | Path, what: str = "") -> Path:
    """Refuse (ConfigError) a write to ``path`` that would land outside ``root``: a path elsewhere, or a
    symlink (the file itself or a folder on the way) that leads out. Returns the path."""
    p = Path(path).expanduser()
    if not is_inside(p, root):
        link = next((q for q in [p, *p.parents] if q.is_symlink()), None)
        why = f"{link} is a link to {link.resolve()}" if link is not None else f"it is outside {root}"
        raise ConfigError(f"{what + ': ' if what else ''}{p}: refusing to write there: {why}. xgen writes only inside "
                          f"the run ({root}) or the output folder named on the command line.")
    return p


def check_run_tree(root: str | Path, what: str = "run directory") -> None:
    """Refuse a handed run directory holding a symlink that leads out of it (a write through it, or a
    resume into it, would change files elsewhere on the machine). W&B's ``wandb/`` folder is left to W&B,
    whose offline runs link their logs to its cache and which replaces those links itself."""
    r = Path(root).expanduser()
    if not r.is_dir():
        return
    seen = 0
    for dirpath, dirnames, filenames in os.walk(r):
        if "wandb" in dirnames:  # W&B's own folder (of a run, or of each job of a sweep): links it makes itself
            dirnames.remove("wandb")
        for name in dirnames + filenames:
            seen += 1
            p = Path(dirpath) / name
            if p.is_symlink() and not is_inside(p, r):
                raise ConfigError(f"{p}: a link out of the {what} {r} (to {p.resolve()}); xgen will not write through "
                                  "it. Remove the link, or copy the run without links.")
            if seen > MAX_TREE:
                raise ConfigError(f"{r}: more than {MAX_TREE} files; not a run directory xgen wrote.")


def check_config_writes(cfg: Any, root: str | Path, file: str | Path) -> None:
    """Refuse a handed run's config whose callbacks, loggers, trainer or paths would write outside
    ``root`` (e.g. ``callbacks.model_checkpoint.dirpath: /home/you``)."""
    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f"{key}.{k}"
                if isinstance(v, str) and str(k) in WRITE_KEYS and v and not is_inside(v, root):
                    raise ConfigError(f"{file}: {sub} is {v[:200]!r}, outside the run directory {root}; a resumed run "
                                      "writes only inside its own directory. Start a new run instead.")
                walk(v, sub)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")

    for section in ("callbacks", "logger", "trainer"):
        if isinstance(cfg, dict) and isinstance(cfg.get(section), dict):
            walk(cfg[section], section)
    paths = cfg.get("paths") if isinstance(cfg, dict) else None
    if isinstance(paths, dict) and isinstance(paths.get("output_dir"), str) and not is_inside(paths["output_dir"], root):
        raise ConfigError(f"{file}: paths.output_dir is outside the run directory {root}.")


def trim_metrics(csv_file: str | Path, global_step: int) -> int:
    """Drop the rows of a resumed run's ``metrics.csv`` logged after the checkpoint it continues from
    (``step > global_step``: a killed run logged them, the resumed one logs those steps again). Returns the
    number of rows dropped; the file is rewritten atomically, a link is never written through."""
    import csv
    import io

    f = Path(csv_file)
    if not f.is_file() or f.is_symlink():
        return 0
    try:
        text = f.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error):
        return 0
    if not rows or "step" not in rows[0]:
        return 0
    col = rows[0].index("step")

    def after(r: list[str]) -> bool:
        try:
            return len(r) > col and int(float(r[col])) > global_step
        except ValueError:
            return False

    kept = [rows[0]] + [r for r in rows[1:] if not after(r)]
    if len(kept) == len(rows):
        return 0
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    atomic_write_text(f, out.getvalue())
    return len(rows) - len(kept)
