"""Metrics as plain functions of tensors."""

from xgen.metrics.clustering import cluster_accuracy, contingency
from xgen.metrics.mmd import kernel_matrix, mmd

__all__ = ["cluster_accuracy", "contingency", "kernel_matrix", "mmd"]
