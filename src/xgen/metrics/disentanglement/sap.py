"""SAP (Kumar et al. 2018; disentanglement_lib's ``sap_score``): R² of a line for a continuous factor, for
a discrete one the test accuracy of scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")`` on one
unit (on the raw codes, not standardised, as there), trained on the training points and scored on the
evaluation points."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from xgen.errors import ConfigError, DataError
from xgen.metrics.disentanglement.common import (NUM_BINS, _codes, _factors, _informative, _names, _train_test,
                                                 discrete_factors)

__all__ = ["SAPResult", "SAP_SVM_C", "sap"]


@dataclass
class SAPResult:
    """Kumar et al. (2018) SAP score: ``score`` the mean over factors of ``gaps`` (top − second entry of
    the factor's column of ``matrix``)."""

    score: float
    gaps: dict[str, float]           # per informative factor
    matrix: np.ndarray               # (D, K') R² (continuous factor) or test accuracy (discrete factor)
    continuous: dict[str, bool]      # how each informative factor was scored
    skipped: list[str] = field(default_factory=list)


SAP_SVM_C = 0.01


def _continuous_columns(f: np.ndarray, continuous: bool | Sequence[bool] | None, num_bins: int) -> list[bool]:
    k = f.shape[1]
    if continuous is None:  # the factor convention of this module: integer or few-valued columns are classes
        return [not np.issubdtype(f.dtype, np.integer) and len(np.unique(f[:, j])) > num_bins for j in range(k)]
    if isinstance(continuous, (bool, np.bool_)):
        return [bool(continuous)] * k
    flags = [bool(v) for v in continuous]
    if len(flags) != k:
        raise ConfigError(f"continuous: {len(flags)} flags for {k} factors")
    return flags


def _r2(z: np.ndarray, y: np.ndarray) -> float:
    """Squared Pearson correlation = R² of the least-squares line y ≈ a·z + b (0 for a constant z)."""
    zc, yc = z - z.mean(), y - y.mean()
    vz, vy = float(zc @ zc), float(yc @ yc)
    if vz <= 1e-12 * len(z) or vy == 0.0:
        return 0.0
    return float((zc @ yc) ** 2 / (vz * vy))


def _svm_accuracy(z: np.ndarray, y: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, seed: int) -> float:
    """Test accuracy of a linear SVM on the single feature z (C = 0.01, classes weighted to balance, as
    disentanglement_lib's SAP)."""
    from sklearn.svm import LinearSVC

    if np.ptp(z) == 0.0:  # no information in a constant unit: the balanced answer is a guess of one class
        return float(np.mean(y_test == np.bincount(y).argmax()))
    clf = LinearSVC(C=SAP_SVM_C, class_weight="balanced", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning on one uninformative feature
        clf.fit(z[:, None], y)
    return float(np.mean(clf.predict(z_test[:, None]) == y_test))


def sap(codes: Any, factors: Any, test_codes: Any = None, test_factors: Any = None,
        continuous: bool | Sequence[bool] | None = None, train_fraction: float = 2 / 3, seed: int = 0,
        factor_names: Sequence[str] | None = None, num_bins: int = NUM_BINS) -> SAPResult:
    """Separated Attribute Predictability (Kumar et al. 2018, as disentanglement_lib's ``sap_score``):
    a score for every code unit j and factor k — for a continuous factor the R² of a linear fit of v_k
    on z_j (squared correlation, on the training rows), for a discrete factor the test accuracy of a
    linear SVM on z_j alone (C = 0.01, balanced class weights) — then, per factor, the gap between
    the two best units, averaged over factors. Needs D >= 2. ``continuous``: one flag for all factors
    or one per factor; by default float columns with more than ``num_bins`` values are continuous,
    the rest (class indices) discrete. Without test rows the first ``train_fraction`` of the rows train
    and the rest test."""
    c = _codes(codes, "SAP")
    f = _factors(factors, c.shape[0], "SAP")
    if c.shape[1] < 2:
        raise DataError("SAP: the representation has a single unit; the gap between the two most predictive "
                        "units is undefined (use a latent of size >= 2).")
    c, f, ct, ft = _train_test(c, f, test_codes, test_factors, train_fraction, "SAP")
    names = _names(factor_names, f.shape[1])
    flags = _continuous_columns(np.concatenate([f, ft]), continuous, num_bins)
    both = discrete_factors(np.concatenate([f, ft]), num_bins)
    fd, ftd = both[: f.shape[0]], both[f.shape[0]:]
    keep, skipped = _informative(fd, names, "SAP")
    matrix = np.zeros((c.shape[1], len(keep)))
    for i, k in enumerate(keep):
        for j in range(c.shape[1]):
            if flags[k]:
                matrix[j, i] = _r2(c[:, j], f[:, k].astype(np.float64))
            else:
                matrix[j, i] = _svm_accuracy(c[:, j], fd[:, k], ct[:, j], ftd[:, k], seed)
    top = np.sort(matrix, axis=0)[::-1]
    gaps = {names[k]: float(top[0, i] - top[1, i]) for i, k in enumerate(keep)}
    return SAPResult(float(np.mean(list(gaps.values()))), gaps, matrix, {names[k]: flags[k] for k in keep}, skipped)
