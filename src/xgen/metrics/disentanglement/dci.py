"""DCI (Eastwood & Williams 2018) as disentanglement_lib computes it: one importance model per factor,
``"gbt"`` scikit-learn's ``GradientBoostingClassifier()`` (disentanglement_lib's choice; slow on CPU: with
40 orientation classes it fits 4,000 trees) or ``"forest"`` a ``RandomForestClassifier``
(``forest_trees`` trees of depth ≤ ``forest_depth``, all features per split; minutes faster, what the
callback uses on CPU); importances are impurity-based ``feature_importances_``; informativeness is the
test accuracy averaged over factors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from xgen.errors import ConfigError
from xgen.metrics.disentanglement.common import (NUM_BINS, _codes, _factors, _informative, _names, _train_test,
                                                 discrete_factors)

__all__ = ["DCIResult", "dci", "dci_from_importance"]


@dataclass
class DCIResult:
    """Eastwood & Williams (2018): importance matrix R (D, K) from one predictor per factor."""

    disentanglement: float
    completeness: float
    informativeness: float          # test accuracy averaged over factors
    informativeness_train: float
    importance: np.ndarray
    skipped: list[str] = field(default_factory=list)


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    return -(p * np.log(p)).sum(axis=axis) / math.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix (D codes, K factors)."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    d, k = r.shape
    if r.sum() == 0:
        return 0.0, 0.0
    dis = 1.0 - _entropy_base(r, k, axis=1) if k > 1 else np.ones(d)
    code_w = r.sum(1) / r.sum()
    comp = 1.0 - _entropy_base(r, d, axis=0) if d > 1 else np.ones(k)
    factor_w = r.sum(0) / r.sum()
    return float((dis * code_w).sum()), float((comp * factor_w).sum())


def _predictor(kind: str, seed: int, trees: int, depth: int):
    from sklearn import ensemble

    if kind == "gbt":
        return ensemble.GradientBoostingClassifier(random_state=seed)
    if kind == "forest":
        return ensemble.RandomForestClassifier(n_estimators=trees, max_depth=depth, max_features=None,
                                               random_state=seed, n_jobs=1)
    raise ConfigError(f"importance_model: unknown {kind!r}; choose 'gbt' (disentanglement_lib) or 'forest'")


def dci(codes: Any, factors: Any, test_codes: Any = None, test_factors: Any = None, train_fraction: float = 2 / 3,
        importance_model: str = "gbt", forest_trees: int = 50, forest_depth: int = 10, seed: int = 0,
        factor_names: Sequence[str] | None = None, num_bins: int = NUM_BINS) -> DCIResult:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018) as
    disentanglement_lib computes them: one classifier per factor predicts it from all codes; its
    feature importances form column k of R; disentanglement weighs 1 − H_K(R_j·) by each unit's share
    of importance, completeness 1 − H_D(R_·k) by each factor's. Without test rows, the first
    ``train_fraction`` of the rows train and the rest test."""
    c = _codes(codes, "DCI")
    f = _factors(factors, c.shape[0], "DCI")
    c, f, ct, ft = _train_test(c, f, test_codes, test_factors, train_fraction, "DCI")
    both = discrete_factors(np.concatenate([f, ft]), num_bins)
    fd, ftd = both[: f.shape[0]], both[f.shape[0]:]
    names = _names(factor_names, f.shape[1])
    keep, skipped = _informative(fd, names, "DCI")
    r = np.zeros((c.shape[1], len(keep)))
    acc_tr, acc_te = [], []
    for i, k in enumerate(keep):
        model = _predictor(importance_model, seed, forest_trees, forest_depth)
        model.fit(c, fd[:, k])
        r[:, i] = np.abs(model.feature_importances_)
        acc_tr.append(float(np.mean(model.predict(c) == fd[:, k])))
        acc_te.append(float(np.mean(model.predict(ct) == ftd[:, k])))
    dis, comp = dci_from_importance(r)
    return DCIResult(dis, comp, float(np.mean(acc_te)), float(np.mean(acc_tr)), r, skipped)
