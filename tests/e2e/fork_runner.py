"""Run several ``xgen`` command lines, each in its own process, paying the import of torch/Lightning once.

    python fork_runner.py JOBS.json

JOBS.json is a list of ``{"argv": [...], "out": "<file prefix>"}``. The runner imports xgen's command line
once, then forks one child per command line (in order, one at a time): the child sends its stdout and
stderr to ``<prefix>.out`` / ``<prefix>.err``, turns every warning raised from a module of xgen into an
error, shows every other warning once per place (as ``PYTHONWARNINGS=default`` would), and runs
``xgen.runtime.cli.main(argv)`` exactly as the ``xgen`` console script does. The exit status of each
child goes to ``<prefix>.rc``, its wall time in seconds to ``<prefix>.time``. Used by tests/e2e/test_readme_commands.py (on a 2-core machine shared
with other jobs, importing Lightning alone takes 10-20 s; twelve fresh interpreters would take minutes).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings


def child(argv: list[str], prefix: str) -> None:
    for fd, suffix in ((1, ".out"), (2, ".err")):
        f = os.open(prefix + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    warnings.resetwarnings()
    warnings.simplefilter("default")
    warnings.filterwarnings("error", module=r"^(xgen|hydra_plugins\.xgen_optuna_sweeper)(\.|$)")
    sys.argv = ["xgen", *argv]
    code = 0
    try:
        from xgen.runtime.cli import main

        main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a traceback is what the test shows
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(jobs: list[dict]) -> None:
    import importlib

    # the expensive imports, once: torch, Lightning, Hydra, matplotlib and the modules the commands use
    for name in ("xgen.runtime.cli", "xgen.runtime.cli.train", "xgen.runtime.train", "xgen.runtime.validate",
                 "xgen.runtime.cli.eval", "xgen.runtime.cli.report", "xgen.runtime.cli.explain", "xgen.models",
                 "xgen.data", "xgen.callbacks", "xgen.metrics", "xgen.explain", "lightning.pytorch",
                 "lightning.pytorch.loggers", "hydra._internal.utils", "matplotlib.pyplot"):
        importlib.import_module(name)

    for job in jobs:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            child(job["argv"], job["out"])
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        with open(job["out"] + ".rc", "w") as f:
            f.write(str(rc))
        with open(job["out"] + ".time", "w") as f:
            f.write(f"{time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        run(json.load(f))
