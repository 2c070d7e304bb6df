"""The ``xgen`` command: ``xgen [overrides]`` trains (a Hydra app); ``xgen <subcommand> ...`` runs a tool.

    xgen model=beta_vae data=digits        # train (xgen.runtime.cli.train)
    xgen eval <run | multirun | .ckpt>     # measurements -> eval.json (xgen.runtime.cli.eval)
    xgen report <run | multirun>           # table + plots (xgen.runtime.cli.report)

Each subcommand is a thin entry point ``main(argv) -> exit status`` named in :data:`SUBCOMMANDS`;
adding a tool is one line there. ``xgen --help`` lists them after Hydra's help.
"""

from __future__ import annotations

import sys

from xgen.runtime.cli.train import _register_resolvers  # noqa: F401  (tests and tools compose with the resolvers)
from xgen.runtime.config import CONFIG_DIR  # noqa: F401  (re-exported: xgen.runtime.cli.CONFIG_DIR)

SUBCOMMANDS: dict[str, str] = {
    "eval": "xgen.runtime.cli.eval:main",      # metrics of a checkpoint, run or multirun directory -> eval.json
    "report": "xgen.runtime.cli.report:main",  # table + plots of a run or multirun directory
    "explain": "xgen.runtime.cli.explain:main",  # traversals, Explainability Grids, Decision Maps, ... of a checkpoint
    "human-eval": "xgen.runtime.cli.human_eval:main",  # a local page where people tell real from generated images
}
"""``xgen <name> ...`` -> ``"module:function"``; the function takes argv and returns the exit status.
The first line of the module's docstring is the subcommand's line in ``xgen --help``."""


def _entry(name: str):
    import importlib

    module, func = SUBCOMMANDS[name].split(":")
    return importlib.import_module(module), func


def subcommands_help() -> str:
    """The block ``xgen --help`` prints after Hydra's help: every subcommand with its one-line purpose."""
    lines = ["== Subcommands (xgen <name> --help for each) =="]
    width = max(map(len, SUBCOMMANDS))
    for name in SUBCOMMANDS:
        try:
            doc = (_entry(name)[0].__doc__ or "").strip().splitlines()
            purpose = doc[0].split(":", 1)[-1].strip() if doc else ""
        except ImportError as e:  # a tool whose optional dependencies are missing still gets listed
            purpose = f"(unavailable: {e})"
        lines.append(f"  xgen {name.ljust(width)}  {purpose}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``xgen`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        from xgen.checkpoint.safety import load_plugins  # $XGEN_PLUGINS: modules that register user classes

        load_plugins()
        module, func = _entry(argv[0])
        sys.argv = [f"xgen {argv[0]}", *argv[1:]]
        raise SystemExit(getattr(module, func)(argv[1:]))
    from xgen.runtime.cli.train import main as train_main

    if "--help" in argv or "-h" in argv:
        try:
            train_main(argv)
        finally:
            print("\n" + subcommands_help())
        return
    train_main(argv)


if __name__ == "__main__":
    main()
