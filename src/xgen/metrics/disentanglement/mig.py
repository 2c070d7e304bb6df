"""MIG, the Mutual Information Gap (Chen et al. 2018): on 10,000 points by default, each code discretised
into 20 equal-width histogram bins (``np.histogram`` edges, as disentanglement_lib), mutual information
and entropies in nats from the contingency table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from xgen.errors import DataError
from xgen.metrics.disentanglement.common import (NUM_BINS, _check_bins, _codes, _factors, _informative, _names,
                                                 discrete_factors, entropy, mutual_information_matrix)

__all__ = ["MIGResult", "mig"]


@dataclass
class MIGResult:
    """MIG = mean over informative factors of (top MI − second MI) / H(v_k)."""

    score: float
    gaps: dict[str, float]           # normalised gap per factor
    mi: np.ndarray                   # (D, K) nats
    entropy: np.ndarray              # (K,) nats
    skipped: list[str] = field(default_factory=list)


def mig(codes: Any, factors: Any, num_bins: int = NUM_BINS, factor_names: Sequence[str] | None = None) -> MIGResult:
    """Mutual Information Gap (Chen et al. 2018; vae-thesis eq. 6.1) of ``codes`` (N, D) w.r.t. ``factors``
    (N, K). Needs D >= 2 (the gap between the two most informative units); in [0, 1]."""
    c = _codes(codes, "MIG")
    f = _factors(factors, c.shape[0], "MIG")
    names = _names(factor_names, f.shape[1])
    if c.shape[1] < 2:
        raise DataError("MIG: the representation has a single unit; the gap between the two most informative "
                        "units is undefined (use a latent of size >= 2).")
    _check_bins(c.shape[0], num_bins, "MIG")
    fd = discrete_factors(f, num_bins)
    keep, skipped = _informative(fd, names, "MIG")
    m = mutual_information_matrix(c, fd, num_bins)
    h = np.array([entropy(fd[:, k]) for k in range(fd.shape[1])])
    gaps = {}
    for k in keep:
        top = np.sort(m[:, k])[::-1]
        gaps[names[k]] = float((top[0] - top[1]) / h[k])
    return MIGResult(float(np.mean(list(gaps.values()))), gaps, m, h, skipped)
