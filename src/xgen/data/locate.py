"""Find dataset files locally: data.root, $XGEN_DATA, Debian's /usr/share/datasets, the xgen cache.

An explicit ``root`` (``data.root``) is the only place searched: ``root`` and ``root/<name>`` (a
root that lacks the files is an error naming them and that folder, never a silent fallback to other
copies). Without one, a dataset is looked for, in order, in
  1. ``$XGEN_DATA`` and ``$XGEN_DATA/<name>``,
  2. ``/usr/share/datasets/<name>`` (where Debian's ``dataset-*`` packages put files),
  3. ``~/.cache/xgen/<name>`` (where xgen downloads to when online).
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
    """Every directory searched for dataset `name`, in priority order (duplicates removed): under an
    explicit `root` only, else $XGEN_DATA, the system folder and the xgen cache."""
    names = [name, *aliases]
    bases: list[Path] = []
    if root:
        r = Path(root).expanduser()
        bases += [r] + [r / n for n in names]
    else:
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


def describe_dirs(dirs: Iterable[Path], root: str | os.PathLike | None = None) -> str:
    """The folders searched, one a line; with an explicit `root`, a line saying only it was searched."""
    text = "\n".join(f"  - {d}" for d in dirs)
    if root:
        text += (f"\n(data.root={root} is given, so only it was searched — not $XGEN_DATA, "
                 f"{SYSTEM_DATASETS} or the xgen cache; drop data.root to search those.)")
    return text
