"""A plain run prints xgen's progress and results and no warning of xgen's own making.

Three things a new user does — a joblib multirun, a DDP run, ``xgen report`` — run here with every
warning collected; any warning that is not on the short list of third-party ones below fails the
test (pyproject.toml has no blanket filter for xgen's warnings). The list holds only warnings that
another package raises about its own code (Lightning calling a deprecated torch API).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

# (file the warning is attributed to, message): warnings other packages raise about their own code
THIRD_PARTY = [
    ("lightning/pytorch/utilities/_pytree.py", r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    ("lightning/fabric/utilities/distributed.py", r"torch\.distributed\.nn\.functional\.all_gather is deprecated"),
    # Lightning's hint on machines with SLURM installed (CI installs slurm-wlm for tests/runtime/test_slurm.py)
    ("lightning/fabric/plugins/environments/slurm.py", r"The `srun` command is available on your system but is not used"),
]
# messages that must never appear, warning or log line (each one was printed by xgen runs before)
NEVER = [r"sync_dist", r"validated against ConfigStore schema", r"`weights_only` was not set"]

TINY = ["data=digits", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "trainer.log_every_n_steps=1", "callbacks.progress_bar=null",
        "trainer.enable_model_summary=false"]

WARNING_LINE = re.compile(r"^(?P<file>\S+?\.py|<[^>]+>):\d+: (?:(?P<cat>[A-Za-z]*Warning): )?(?P<msg>.*)$")


def warnings_in(stderr: str) -> list[tuple[str, str]]:
    """(file, message) of every warning Python or Lightning printed (``path:line: [Category: ]message``;
    a message that starts on the next line, as Hydra's do, is read from there)."""
    lines = stderr.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = WARNING_LINE.match(line)
        if m:
            msg = m["msg"].strip() or next((nxt.strip() for nxt in lines[i + 1:] if nxt.strip()), "")
            found.append((m["file"], msg))
    return found


def third_party(file: str, msg: str) -> bool:
    return any(file.replace(os.sep, "/").endswith(f) and re.search(pat, msg) for f, pat in THIRD_PARTY)


def unexpected(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(f, m) for f, m in found if not third_party(f, m)]


def xgen(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "XGEN_OUTPUT": str(cwd / "outputs"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "default"}  # show every warning once per place, as a user's terminal would
    return subprocess.run([sys.executable, "-m", "xgen", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check_clean(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    assert unexpected(warnings_in(r.stderr)) == [], r.stderr[-3000:]
    for pat in NEVER:
        assert not re.search(pat, r.stdout + r.stderr), pat


def test_warning_parser_reads_python_lightning_and_hydra_formats():
    err = ("/x/lightning/pytorch/trainer/connectors/logger_connector/result.py:433: It is recommended to use "
           "`self.log('train/loss_d', ..., sync_dist=True)` when logging\n"
           "<frozen runpy>:88: UserWarning: \n'hydra/launcher/joblib' is validated against ConfigStore schema\n"
           "/x/lightning/pytorch/utilities/_pytree.py:21: `isinstance(treespec, LeafSpec)` is deprecated, use ...\n"
           "[2026-01-01 10:00:00,000][HYDRA] Launching jobs\n")
    found = warnings_in(err)
    assert [m[:20] for _, m in found] == ["It is recommended to", "'hydra/launcher/jobl", "`isinstance(treespec"]
    assert [third_party(f, m) for f, m in found] == [False, False, True]


def test_multirun_ddp_and_report_print_no_warning_of_xgens(tmp_path, caplog):
    # a joblib multirun of two jobs: no ConfigStore-schema warnings; each job says where its outputs are
    sweep = tmp_path / "sweep"
    r = xgen(["-m", *TINY, "model=vae,beta_vae", "model/net=mlp", "test=false", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"], tmp_path)
    check_clean(r)
    for job in (0, 1):
        assert f"xgen: job {job}: outputs in {sweep / str(job)} (summary.json, checkpoints/last.ckpt" in r.stdout

    # DDP on CPU (2 processes): InfoGAN with the GAN callbacks logs every kind of metric xgen has
    ddp = tmp_path / "ddp"
    r = xgen([*TINY, "trainer=ddp_cpu", "model=infogan", "model/net=infogan_small", "callbacks=gan",
              "callbacks.progress_bar=null", f"hydra.run.dir={ddp}"], tmp_path)
    check_clean(r)
    assert r.stdout.count(f"xgen: outputs in {ddp}") == 1  # rank 0 only
    assert r.stdout.count(f"xgen: run directory {ddp}") == 1

    # the report, and loading a checkpoint, in this process: every warning recorded
    from xgen.models import load_model
    from xgen.runtime.report import report

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        res = report(sweep)
        load_model(sweep / "0" / "checkpoints" / "last.ckpt")
    assert [(w.filename, str(w.message)) for w in caught] == []
    assert not any(re.search(p, caplog.text) for p in NEVER)
    assert [r["status"] for r in res["rows"]] == ["completed", "completed"]
    assert (sweep / "curves.png").is_file()
