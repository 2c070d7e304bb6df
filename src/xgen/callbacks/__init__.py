"""Lightning callbacks shared by every model."""

from xgen.callbacks.collapse_guard import CollapseGuard
from xgen.callbacks.disentanglement import Disentanglement
from xgen.callbacks.dropout_schedule import DropoutSchedule, insert_dropout
from xgen.callbacks.fid import FID
from xgen.callbacks.images import SampleGrids, log_grid
from xgen.callbacks.mutual_information import MutualInformation
from xgen.callbacks.optuna_pruning import OptunaPruning

__all__ = ["SampleGrids", "log_grid", "MutualInformation", "DropoutSchedule", "insert_dropout", "CollapseGuard",
           "FID", "OptunaPruning", "Disentanglement"]
