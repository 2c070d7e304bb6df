"""Lightning callbacks shared by every model."""

from xgen.callbacks.images import SampleGrids, log_grid

__all__ = ["SampleGrids", "log_grid"]
