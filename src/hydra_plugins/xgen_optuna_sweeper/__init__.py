"""xgen's Hydra sweeper over Optuna's ask-and-tell interface (``hydra/sweeper=xgen_optuna``).

Hydra finds it because ``hydra_plugins`` is a namespace package (no ``__init__.py`` one level up).
Nothing heavy is imported here: Hydra imports every plugin module on every start.
"""
