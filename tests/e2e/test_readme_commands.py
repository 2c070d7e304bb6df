"""Issue 22: every ``xgen`` command line in README.md's shell blocks runs and prints no warning of xgen's making.

The commands are read from README.md (not copied), made cheap — training gets ``debug=fast`` (a few
batches), one epoch and ``trainer.log_every_n_steps=1`` (Lightning warns when an epoch, now 5 batches, is
shorter than the logging interval), its run or sweep directory under ``tmp_path``; ``--images`` of an explain command
becomes two images; ``<run dir>`` / ``<multirun dir>`` are the directories the earlier commands made —
and run in order, each in its own process (``fork_runner.py``: forked from one interpreter that imported
xgen once), with warnings raised from xgen's modules turned into errors and every other warning
printed. A command fails the test if it exits non-zero or its stderr holds any warning that is not on
the short list of third-party ones in tests/runtime/test_warnings.py. Lines of the README's shell blocks
that are not ``xgen`` commands are listed in NOT_RUN with the reason; a new one fails until it is listed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUNNER = Path(__file__).with_name("fork_runner.py")

# shell lines of the README that are not xgen commands -> why this test does not run them
NOT_RUN = {
    "make run": "installs xgen and trains 5 epochs (the suite runs with xgen installed; `xgen` below trains)",
    "make test": "runs the whole test suite, this test included",
    "wandb sync <run dir>/wandb/offline-run-*": "uploads to api.wandb.ai: needs the network and a W&B account",
    "python -m pytest -q tests/models": "a test run, not a documented xgen command",
}

_spec = importlib.util.spec_from_file_location("_xgen_test_warnings", ROOT / "tests" / "runtime" / "test_warnings.py")
tw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tw)  # warnings_in, unexpected, NEVER: the same rules as tests/runtime/test_warnings.py


def shell_lines() -> list[str]:
    """Every command line of README.md's ```bash blocks, comments dropped."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(" ".join(words))
    return lines


def readme_commands() -> list[str]:
    return [line for line in shell_lines() if line.split()[0] == "xgen"]


def cheap(line: str, i: int, tmp: Path, made: dict[str, Path]) -> list[str]:
    """The README command ``line`` made cheap (its arguments after ``xgen``); ``made`` maps the README's
    placeholders (``<run dir>``, ``<multirun dir>``) to the directories earlier commands made."""
    for placeholder, path in made.items():
        line = line.replace(placeholder, shlex.quote(str(path)))
    argv = shlex.split(line)[1:]
    if argv[0] == "explain":
        return [("0-1" if prev == "--images" else a) for prev, a in zip([None, *argv], argv)]
    if argv[0] in ("eval", "report", "human-eval") or "--help" in argv or "--cfg" in argv:
        if argv[0] == "eval":
            argv += ["--num-samples", "200", "--iw-samples", "2", "--iw-images", "20", "--metrics", "fid,is"]
        return argv
    argv = [a for a in argv if not a.startswith("trainer.max_epochs=")] + ["debug=fast", "trainer.max_epochs=1",
                                                                            "trainer.log_every_n_steps=1"]
    if "-m" in argv or "--multirun" in argv:
        made["<multirun dir>"] = tmp / f"sweep{i}"
        return argv + [f"hydra.sweep.dir={tmp / f'sweep{i}'}"]
    made.setdefault("<run dir>", tmp / f"run{i}")
    return argv + [f"hydra.run.dir={tmp / f'run{i}'}"]


def test_every_readme_shell_line_is_run_or_listed():
    others = [line for line in shell_lines() if line.split()[0] != "xgen"]
    assert set(others) == set(NOT_RUN), "README.md shell lines that are neither xgen commands nor in NOT_RUN"
    cmds = readme_commands()
    assert len(cmds) >= 10 and any(c.startswith("xgen explain") for c in cmds) and any(" -m " in c for c in cmds)


@pytest.mark.slow  # 13 commands: 96 s on a 2-core machine shared with other jobs (imports paid once: 244 s before)
def test_readme_commands_run_without_warnings_of_xgens(tmp_path, fashion_available):
    made: dict[str, Path] = {}
    jobs = []
    for i, line in enumerate(readme_commands()):
        jobs.append({"readme": line, "argv": cheap(line, i, tmp_path, made),
                     "out": str(tmp_path / f"cmd{i}")})
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    env = {**os.environ, "XGEN_OUTPUT": str(tmp_path / "outputs"), "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(RUNNER), str(spec)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    failures = []
    for job in jobs:
        out = Path(job["out"])
        rc = int(Path(str(out) + ".rc").read_text())
        stdout, stderr = Path(str(out) + ".out").read_text(), Path(str(out) + ".err").read_text()
        bad = tw.unexpected(tw.warnings_in(stderr)) + [("never", p) for p in tw.NEVER if re.search(p, stdout + stderr)]
        if rc != 0 or bad:
            failures.append(f"{job['readme']}  (ran: xgen {' '.join(job['argv'])}): exit {rc}, warnings {bad}\n"
                            f"{stderr[-2000:]}")
    for job in jobs:  # shown with pytest -rA: where the time goes
        print(f"{Path(job['out'] + '.time').read_text():>6} s  {job['readme']}")
    assert failures == [], "\n\n".join(failures)
    assert (made["<multirun dir>"] / "report.md").is_file()
