"""Lightning callbacks shared by every model."""

from xgen.callbacks.images import SampleGrids, log_grid
from xgen.callbacks.optuna_pruning import OptunaPruning

__all__ = ["OptunaPruning", "SampleGrids", "log_grid"]
