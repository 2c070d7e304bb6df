"""Lightning callbacks shared by every model."""

from xgen.callbacks.fid import FID
from xgen.callbacks.images import SampleGrids, log_grid

__all__ = ["FID", "SampleGrids", "log_grid"]
