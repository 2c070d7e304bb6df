"""One type for a run directory: what a training job leaves behind, and how tools find it.

A run directory (Hydra's ``hydra.run.dir``, or one job ``<n>/`` of a multirun) holds::

    config.yaml              the composed config of the job (resolved)
    checkpoints/last.ckpt    the latest checkpoint (resume, eval, explain read it)
    summary.json             status, final metrics, overrides, wall time (written atomically)
    eval.json                what ``xgen eval`` measured on it
    metrics.csv, samples/    the CSV logger's rows, image grids
    .hydra/overrides.yaml    Hydra's record of the job's command-line overrides

Resume (``ckpt_path=last|<dir>|<file>``), ``xgen eval`` and ``xgen report`` all find runs and their
files through :class:`RunDir`, so the three agree on what a run is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from xgen.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    """A run directory (it need not exist yet: a new run's directory is one too)."""

    path: Path

    CONFIG = "config.yaml"
    LAST_CKPT = "checkpoints/last.ckpt"
    SUMMARY = "summary.json"
    EVAL = "eval.json"
    METRICS = "metrics.csv"
    SAMPLES = "samples"
    OVERRIDES = ".hydra/overrides.yaml"

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path).expanduser())

    # ---------------------------------------------------------------- files
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def last_checkpoint(self) -> Path:
        return self.path / self.LAST_CKPT

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def eval_file(self) -> Path:
        return self.path / self.EVAL

    @property
    def metrics_csv(self) -> Path:
        return self.path / self.METRICS

    @property
    def samples_dir(self) -> Path:
        return self.path / self.SAMPLES

    def is_run(self) -> bool:
        """True when the directory holds what a training job writes (config, summary, checkpoint or
        Hydra's record of the job)."""
        return any(f.is_file() for f in (self.config_file, self.summary_file, self.last_checkpoint,
                                         self.path / self.OVERRIDES))

    def has_checkpoint(self) -> bool:
        return self.last_checkpoint.is_file()

    def outputs(self) -> list[str]:
        """The names of the main outputs present, for the line a run prints at its end."""
        found = [n for n in (self.SUMMARY, self.LAST_CKPT, self.METRICS, self.EVAL) if (self.path / n).is_file()]
        if self.samples_dir.is_dir():
            found.append(self.SAMPLES + "/")
        return found

    # ---------------------------------------------------------------- contents
    def read_summary(self) -> dict[str, Any] | None:
        """summary.json as a dict; None when there is none; ``{"status": "corrupt summary.json"}``
        when it cannot be parsed (a crash never leaves half a file, but a user may)."""
        p = self.summary_file
        if not p.is_file():
            return None
        try:
            s = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {"status": "corrupt summary.json"}
        return s if isinstance(s, dict) else {"status": "corrupt summary.json"}

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write summary.json atomically (a crash never leaves half a file for ``xgen report`` to read)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(self.summary_file, json.dumps(summary, indent=2, default=str))

    def overrides(self, summary: dict[str, Any] | None = None) -> list[str]:
        """The job's command-line overrides: from summary.json, else Hydra's ``.hydra/overrides.yaml``."""
        summary = self.read_summary() if summary is None else summary
        if summary and isinstance(summary.get("overrides"), list) and summary["overrides"]:
            return [str(o) for o in summary["overrides"]]
        f = self.path / self.OVERRIDES
        if f.is_file():
            from omegaconf import OmegaConf

            try:
                return [str(o) for o in OmegaConf.load(f)]
            except Exception:  # unreadable: the report shows the job without its overrides
                return []
        return []

    def config(self):
        """The run's config.yaml (an OmegaConf DictConfig; nothing in it is instantiated here)."""
        from omegaconf import OmegaConf

        if not self.config_file.is_file():
            raise ConfigError(f"{self.path}: no {self.CONFIG}; pass a run directory written by xgen.")
        try:
            return OmegaConf.load(self.config_file)
        except Exception as e:
            raise ConfigError(f"{self.config_file}: unreadable ({type(e).__name__}: {e}).") from None

    # ---------------------------------------------------------------- finding runs
    @classmethod
    def of_checkpoint(cls, ckpt: str | Path) -> RunDir:
        """The run directory a checkpoint file belongs to (``<run>/checkpoints/x.ckpt`` -> ``<run>``;
        a checkpoint elsewhere -> its folder)."""
        p = Path(ckpt).expanduser()
        return cls(p.parent.parent if p.parent.name == "checkpoints" else p.parent)

    @classmethod
    def find(cls, root: str | Path) -> list[RunDir]:
        """``root`` itself when it is a run, else the runs directly under it (a multirun's jobs),
        numbered jobs first in numeric order, then the others by name."""
        root = Path(root).expanduser()
        if cls(root).is_run():
            return [cls(root)]
        if not root.is_dir():
            return []
        return sort_runs(cls(p) for p in root.iterdir() if p.is_dir() and cls(p).is_run())


def sort_runs(runs: Iterable[RunDir]) -> list[RunDir]:
    """Multirun order: job 0, 1, 2, ..., 10 (numeric), then non-numeric names alphabetically."""
    return sorted(runs, key=lambda r: (0, int(r.name), "") if r.name.isdigit() else (1, 0, r.name))


def find_checkpoints(path: str | Path) -> list[tuple[Path, RunDir | None]]:
    """(checkpoint, its run directory or None) for a checkpoint file, a run directory or a multirun
    directory: what ``xgen eval`` scores. A run directory counts only with a config.yaml beside the
    checkpoint (that is what tells eval the data)."""
    p = Path(path).expanduser()
    if p.is_file():
        run = RunDir.of_checkpoint(p)
        return [(p, run if run.config_file.is_file() else None)]
    if p.is_dir():
        runs = [r for r in RunDir.find(p) if r.has_checkpoint()]
        if runs:
            return [(r.last_checkpoint, r) for r in runs]
        raise ConfigError(f"{p}: no checkpoints/last.ckpt in it or in its sub-directories; pass a run directory, "
                          "a multirun directory or a .ckpt file.")
    raise ConfigError(f"{p}: no such file or directory.")


def resolve_checkpoint(ckpt_path: str | Path | None, current: str | Path) -> tuple[Path | None, RunDir | None]:
    """Resume: ``None`` -> no resume; ``last`` -> the current run directory's checkpoints/last.ckpt;
    a directory -> that run's last.ckpt; a file -> itself. Returns (checkpoint, run it belongs to)."""
    if not ckpt_path:
        return None, None
    p = Path(current) if str(ckpt_path) == "last" else Path(str(ckpt_path)).expanduser()
    if p.is_dir() or str(ckpt_path) == "last":  # last always names a run directory (maybe not made yet)
        run = RunDir(p)
        if not run.has_checkpoint():
            raise ConfigError(f"ckpt_path={ckpt_path}: no checkpoints/last.ckpt under {p}. To resume, "
                              "point hydra.run.dir (or ckpt_path) at the run directory to continue.")
        return run.last_checkpoint, run
    if not p.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file.")
    return p, RunDir.of_checkpoint(p)


# ----------------------------------------------------------------------------- file helpers
def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a fresh temp file beside it, then rename: a link at ``path`` (or
    at the temp name) is replaced, never written through, and a crash leaves the old file or the new one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path``, with every link on the way followed, lies in ``root`` (or is ``root``)."""
    p, r = Path(path).expanduser().resolve(), Path(root).expanduser().resolve()
    return p == r or r in p.parents
