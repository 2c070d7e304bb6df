"""The architecture contracts of .importlinter, checked by import-linter (not by hand): the library never
imports the runtime, Hydra or the Hydra plugins, and no two modules or packages of xgen import each other
in a cycle at any depth (function-local imports included: grimp reads every import statement)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([exe, "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})


def test_contracts_declare_the_library_runtime_arrow_and_no_cycles():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    forbidden = cfg["importlinter:contract:library-no-runtime"]
    assert forbidden["type"] == "forbidden"
    assert {"xgen.runtime", "hydra"} <= set(forbidden["forbidden_modules"].split())
    library = set(forbidden["source_modules"].split())
    packages = {p.name if p.is_dir() else p.stem for p in (REPO / "src/xgen").iterdir()
                if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and not p.name.startswith("__"))}
    # every package and module of xgen is on one side: the library (this list) or the runtime
    # (xgen.conf holds only the YAML configs the runtime composes)
    assert packages - {"runtime", "conf"} == {m.split(".", 1)[1] for m in library}, packages
    cycles = cfg["importlinter:contract:no-cycles"]
    assert cycles["type"] == "acyclic_siblings" and cycles["ancestors"].split() == ["xgen"]


def test_import_linter_keeps_every_contract():
    res = _lint_imports()
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Contracts: 2 kept, 0 broken." in out, out


def test_a_library_import_of_the_runtime_breaks_the_contract(tmp_path):
    """The check can fail: a copy of the tree with one library module importing the runtime is refused."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "weights", "conf"))
    losses = src / "xgen" / "losses.py"
    losses.write_text(losses.read_text() + "\n\ndef _bad():\n    from xgen.runtime import train  # noqa\n")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    res = subprocess.run([exe, "--config", str(REPO / ".importlinter")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "xgen.losses -> xgen.runtime.train" in out, out
    assert "broken" in out

