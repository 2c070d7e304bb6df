"""Find dataset files locally: data.root, $XGEN_DATA, Debian's /usr/share/datasets, the xgen cache.

A dataset is looked for, in order, in
  1. the explicit ``root`` given in the config (``data.root``),
  2. ``$XGEN_DATA`` and ``$XGEN_DATA/<name>``,
  3. ``/usr/share/datasets/<name>`` (where Debian's ``dataset-*`` packages put files),
  4. ``~/.cache/xgen/<name>`` (where xgen downloads to when online).
Each directory is also searched in the sub-folders torchvision uses (e.g. ``FashionMNIST/raw``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

SYSTEM_DATASETS = Path("/usr/share/datasets")


def cache_dir(name: str) -> Path:
    """Where xgen downloads `name` to when no root is configured."""
    base = os.environ.get("XGEN_DATA")
    if base:
        return Path(base).expanduser() / name
    return Path.home() / ".cache" / "xgen" / name


def candidate_dirs(name: str, root: str | os.PathLike | None, aliases: Sequence[str] = (),
                   subdirs: Sequence[str] = ()) -> list[Path]:
    """Every directory searched for dataset `name`, in priority order (duplicates removed)."""
    names = [name, *aliases]
    bases: list[Path] = []
    if root:
        r = Path(root).expanduser()
        bases += [r] + [r / n for n in names]
    env = os.environ.get("XGEN_DATA")
    if env:
        e = Path(env).expanduser()
        bases += [e] + [e / n for n in names]
    bases += [SYSTEM_DATASETS / n for n in names]
    bases += [cache_dir(name)]
    dirs: list[Path] = []
    for b in bases:
        for d in [b, *(b / s for s in subdirs)]:
            if d not in dirs:
                dirs.append(d)
    return dirs


def find_file(dirs: Iterable[Path], filename: str, suffixes: Sequence[str] = ("", ".gz")) -> Path | None:
    """The first `dir/filename+suffix` that exists, or None."""
    for d in dirs:
        for s in suffixes:
            p = d / (filename + s)
            if p.is_file():
                return p
    return None


def describe_dirs(dirs: Iterable[Path]) -> str:
    return "\n".join(f"  - {d}" for d in dirs)
