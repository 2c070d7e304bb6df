"""Metrics as plain functions of tensors."""

from xgen.metrics.mmd import kernel_matrix, mmd

__all__ = ["kernel_matrix", "mmd"]
