"""Unsupervised clustering accuracy: the best one-to-one mapping of clusters to labels (Hungarian)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def contingency(pred, labels, num_clusters: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """counts[k, c] = number of items assigned to cluster k whose label is c."""
    p, y = _np(pred).astype(np.int64).ravel(), _np(labels).astype(np.int64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"pred and labels must have the same length, got {p.shape} and {y.shape}")
    k = int(num_clusters if num_clusters is not None else p.max() + 1)
    c = int(num_classes if num_classes is not None else y.max() + 1)
    counts = np.zeros((k, c), dtype=np.int64)
    np.add.at(counts, (p, y), 1)
    return counts


def cluster_accuracy(pred, labels, num_clusters: int | None = None, num_classes: int | None = None) -> float:
    """Accuracy under the one-to-one cluster->label mapping that maximises it (Hungarian matching).

    With more clusters than classes, unmatched clusters count as errors (the mapping is one-to-one).
    """
    counts = contingency(pred, labels, num_clusters, num_classes)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / max(counts.sum(), 1))
