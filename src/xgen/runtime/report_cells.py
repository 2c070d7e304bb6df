"""Safe cells, labels and warnings for ``xgen report`` (:mod:`xgen.runtime.report` and
:mod:`xgen.runtime.report_seeds` share them): text from a run directory someone else made is shown, never
evaluated (no spreadsheet formulas, HTML, Markdown links, terminal escapes or mathtext), and every piece of
input left out is named in one warning line."""
from __future__ import annotations

import html
import re
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from xgen.checkpoint.runs import is_inside

MAX_PROBLEMS_PER_FILE = 10         # warnings printed per file (then a count of the rest)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP: a cell a spreadsheet may evaluate
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()|~])")  # Markdown punctuation that may start markup inside a cell
BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


class Problems:
    """Warnings about input that was left out, each ``file:line: what`` (at most
    :data:`MAX_PROBLEMS_PER_FILE` per file, then one line with the count of the rest)."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._count: dict[str, int] = {}

    def add(self, path: Path | str, line: int | None, message: str) -> None:
        where = printable(str(path))
        n = self._count[where] = self._count.get(where, 0) + 1
        if n <= MAX_PROBLEMS_PER_FILE:
            self._lines.append(f"{where}:{line}: {message}" if line else f"{where}: {message}")

    @property
    def lines(self) -> list[str]:
        more = [f"{w}: {n - MAX_PROBLEMS_PER_FILE} more problems not shown" for w, n in self._count.items()
                if n > MAX_PROBLEMS_PER_FILE]
        return self._lines + more


def printable(s: str) -> str:
    """``s`` without control characters (terminal escapes, bidi overrides): tabs and line breaks become
    spaces, the others U+FFFD."""
    return "".join(" " if ch in "\t\n\r" else "\ufffd" if unicodedata.category(ch) == "Cc" or ch in BIDI else ch
                   for ch in s)


def excerpt(v: Any, n: int = 40) -> str:
    """A short quoted form of a bad value for a warning (control characters escaped by repr)."""
    s = repr(v[:n] + "..." if isinstance(v, str) and len(v) > n else v)
    return s if len(s) <= 2 * n else s[:2 * n] + "..."


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def readable(f: Path, root: Path, problems: Problems) -> bool:
    """``f`` is a regular file inside ``root`` (a link to elsewhere is not read: its content would land
    in the report)."""
    if not f.is_file():
        return False
    if not is_inside(f, root):
        problems.add(f, None, f"a link to {printable(str(f.resolve()))}, outside {printable(str(root))}; not read")
        return False
    return True


def swept_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Override keys that take more than one value across jobs (the sweep's axes)."""
    keys: dict[str, set] = {}
    for r in rows:
        for k, v in r["params"].items():
            keys.setdefault(k, set()).add(str(v))
    return [k for k, vals in keys.items() if len(vals) > 1 or any(k not in r["params"] for r in rows)]


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def csv_cell(v: Any) -> Any:
    """A report.csv cell a spreadsheet shows and never evaluates: numbers stay numbers; text starting
    with = + - @ tab or carriage return (after any spaces) gets a leading ``'`` (OWASP's CSV-injection
    rule), unless it is a plain number such as ``-0.5``."""
    if v is None:
        return ""
    if is_number(v):
        return v
    s = str(v)
    if s.lstrip(" ")[:1] in FORMULA_START and not PLAIN_NUMBER.fullmatch(s):
        return "'" + s
    return s


def md_cell(v: Any) -> str:
    """A report.md table cell that renders as its text: HTML special characters as entities, Markdown
    punctuation backslash-escaped (no link, image, code or emphasis), no control characters."""
    return MD_SPECIAL.sub(r"\\\1", html.escape(printable(fmt(v))))


def plot_label(v: Any, n: int = 80) -> str:
    """Text for a matplotlib label or legend: ``$`` escaped (no mathtext), no control characters,
    at most ``n`` characters."""
    s = printable(str(v))
    return (s[:n] + "..." if len(s) > n else s).replace("$", r"\$")


def file_part(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", s)[:60]
