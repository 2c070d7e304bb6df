"""Modularity (Ridgeway & Mozer 2018; disentanglement_lib's ``modularity_explicitness``, the modularity
part) from the MIG mutual-information matrix (20 bins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from xgen.errors import DataError
from xgen.metrics.disentanglement.common import (NUM_BINS, _check_bins, _codes, _factors, _informative, _names,
                                                 discrete_factors, mutual_information_matrix)

__all__ = ["ModularityResult", "modularity", "modularity_from_mi"]


@dataclass
class ModularityResult:
    """Ridgeway & Mozer (2018) modularity: for each code unit, how much of its information is about a
    single factor; ``score`` is the mean over units of ``per_unit``."""

    score: float
    per_unit: np.ndarray             # (D,) modularity of each code unit, 0 for a unit with no information
    mi: np.ndarray                   # (D, K') nats, the informative factors' columns
    skipped: list[str] = field(default_factory=list)


def modularity_from_mi(mi: Any) -> tuple[float, np.ndarray]:
    """(mean, per-unit) modularity of a mutual-information matrix (D units, K factors): unit j's
    ideal row keeps only its largest entry θ_j = max_k I(z_j; v_k); with the squared deviation from that
    template δ_j = Σ_{k ≠ argmax} I(z_j; v_k)² / (θ_j² (K − 1)), the unit scores 1 − δ_j (0 for a unit
    with θ_j = 0). Needs K >= 2."""
    m = np.asarray(mi, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2 or m.shape[0] < 1:
        raise DataError(f"modularity: needs an MI matrix (D >= 1 units, K >= 2 factors), got shape {m.shape}; "
                        "with a single factor every unit is trivially modular.")
    sq = m ** 2
    top = sq.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(1) - top) / (top * (m.shape[1] - 1))
    per_unit = np.where(top > 0, 1.0 - delta, 0.0)
    return float(per_unit.mean()), per_unit


def modularity(codes: Any, factors: Any, num_bins: int = NUM_BINS,
               factor_names: Sequence[str] | None = None) -> ModularityResult:
    """Modularity (Ridgeway & Mozer 2018, as disentanglement_lib's ``modularity_explicitness``) of
    ``codes`` (N, D) w.r.t. ``factors`` (N, K) from the MI matrix of :func:`mutual_information_matrix`
    (codes in ``num_bins`` histogram bins); see :func:`modularity_from_mi`. 1: every unit informs about
    one factor at most; a unit that carries two factors equally scores 1 − 1/(K − 1). Needs >= 2
    informative factors."""
    c = _codes(codes, "modularity")
    f = _factors(factors, c.shape[0], "modularity")
    names = _names(factor_names, f.shape[1])
    _check_bins(c.shape[0], num_bins, "modularity")
    fd = discrete_factors(f, num_bins)
    keep, skipped = _informative(fd, names, "modularity")
    if len(keep) < 2:
        raise DataError(f"modularity: needs at least 2 informative factors, got {[names[k] for k in keep]}; "
                        "with one factor every unit is trivially modular.")
    m = mutual_information_matrix(c, fd[:, keep], num_bins)
    score, per_unit = modularity_from_mi(m)
    return ModularityResult(score, per_unit, m, skipped)
