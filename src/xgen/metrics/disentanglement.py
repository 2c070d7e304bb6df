"""Disentanglement metrics: β-VAE metric, FactorVAE metric, MIG, DCI, SAP, modularity and the vae-thesis
covariance metric.

Two forms of every score:

* **plain functions of (codes, factors)** — ``codes`` (N, D) floats, ``factors`` (N, K) — for any
  representation already computed: :func:`mig`, :func:`beta_vae_score`, :func:`factor_vae_score`,
  :func:`dci`, :func:`sap`, :func:`modularity`, :func:`mutual_information_matrix`,
  :func:`covariance_metric`. The β-VAE and FactorVAE
  metrics need pairs/batches that share one factor; here they are drawn from the rows given (pick a
  row, then a random row with the same value of the factor), so they work when only a subset of the
  factor grid is present;
* **a sampler-based form** — :func:`beta_vae_score_of_model`, :func:`factor_vae_score_of_model`,
  :func:`codes_of_model`, :func:`disentanglement_scores` — that draws fresh fixed-factor batches from a
  data module's factor interface (``factor_sizes``, ``sample_factors(n, generator)``,
  ``images_from_factors(f)`` -> uint8) and maps them through any model's ``embed``
  (:class:`xgen.protocols.Embeds`): a VAE's posterior means and InfoGAN's Q are scored the same way.
  The model runs in eval mode under ``no_grad`` on images scaled to ``model.value_range``.

**What is scored**: ``embed(x)`` — the posterior mean for the VAE family (as disentanglement_lib's
``mean`` representation), never a sample. The covariance metric alone reads the full posterior
(``encode``: mean and log-variance).

**Estimator settings** (defaults = disentanglement_lib's protocol, Locatello et al. 2019):
batch 64 image pairs per β-VAE / FactorVAE point, 10,000 training and 5,000 evaluation points,
10,000 points for FactorVAE's global variances with dimensions of std < 0.05 pruned, MIG on 10,000
points with each code discretised into 20 equal-width histogram bins (``np.histogram`` edges, as
disentanglement_lib), mutual information and entropies in nats from the contingency table (equal to
``sklearn.metrics.mutual_info_score``). The β-VAE metric's linear classifier is scikit-learn's
``LogisticRegression`` (lbfgs, C = 1; ``max_iter`` 1000 so that it converges); the score is its
accuracy on the evaluation points. DCI uses one importance model per factor: ``"gbt"`` scikit-learn's
``GradientBoostingClassifier()`` (disentanglement_lib's choice; slow on CPU: with 40 orientation
classes it fits 4,000 trees) or ``"forest"`` a ``RandomForestClassifier`` (``forest_trees`` trees of
depth ≤ ``forest_depth``, all features per split; minutes faster, what the callback uses on CPU) —
importances are impurity-based ``feature_importances_``; informativeness is the test accuracy
averaged over factors. SAP (disentanglement_lib's ``sap_score``): R² of a line for a continuous factor,
for a discrete one the test accuracy of scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")``
on one unit (on the raw codes, not standardised, as there), trained on the training points and scored
on the evaluation points. Modularity (disentanglement_lib's ``modularity_explicitness``, the
modularity part): the MIG mutual-information matrix (20 bins). Smaller settings are allowed (e.g. ``num_train=2000`` for a CPU callback);
scores from different settings are not comparable — MIG in particular depends on the number of bins
and points (users of other libraries report values 1000× off for exactly this reason).

**Factors**: integer columns are class indices (discrete factors); float columns with at most
``num_bins`` distinct values are treated as discrete, others (continuous factors) are discretised
into ``num_bins`` histogram bins like the codes. A factor with a single value (entropy 0, e.g.
dSprites' color) carries no information: it is skipped with a warning and listed in ``skipped``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from xgen.data.base import to_value_range
from xgen.errors import ConfigError, DataError, check
from xgen.protocols import Embeds, Encodes, require

__all__ = ["BATCH_SIZE", "NUM_TRAIN", "NUM_EVAL", "NUM_BINS", "FactorData", "MIGResult", "ScoreResult", "DCIResult",
           "discretize", "discrete_factors", "entropy", "mutual_information_matrix", "mig", "beta_vae_score",
           "factor_vae_score", "dci", "sap", "modularity", "modularity_from_mi", "SAPResult",
           "ModularityResult", "covariance_metric", "codes_of_model", "posterior_of_model",
           "beta_vae_score_of_model", "factor_vae_score_of_model", "disentanglement_scores",
           "DisentanglementWarning"]

BATCH_SIZE = 64
NUM_TRAIN = 10_000
NUM_EVAL = 5_000
NUM_BINS = 20
NUM_VARIANCE = 10_000
PRUNE_STD = 0.05


class DisentanglementWarning(UserWarning):
    """A metric skipped something (a constant factor) or ran with settings that bias it."""


@runtime_checkable
class FactorData(Protocol):
    """What the sampler-based metrics need of a data module (xgen's dSprites provides it)."""

    factor_sizes: Sequence[int]

    def sample_factors(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def images_from_factors(self, factor_indices: torch.Tensor) -> torch.Tensor: ...


# ================================================================================ input checks
def _codes(codes: Any, who: str) -> np.ndarray:
    c = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
        raise DataError(f"{who}: codes must be (N, D) with N, D >= 1, got shape {tuple(c.shape)}")
    if not np.issubdtype(c.dtype, np.number):
        raise DataError(f"{who}: codes must be numbers, got dtype {c.dtype}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        bad = int((~np.isfinite(c)).any(1).sum())
        raise DataError(f"{who}: {bad} of {c.shape[0]} codes contain NaN or inf; the representation is broken "
                        "(a diverged model?) and no score is defined.")
    return c


def _factors(factors: Any, n: int, who: str) -> np.ndarray:
    f = factors.detach().cpu().numpy() if isinstance(factors, torch.Tensor) else np.asarray(factors)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or f.shape[0] != n:
        raise DataError(f"{who}: factors must be (N, K) with the codes' N = {n} rows, got shape {tuple(f.shape)}")
    if not np.issubdtype(f.dtype, np.number) or not np.isfinite(f).all():
        raise DataError(f"{who}: factors must be finite numbers (class indices or values)")
    return f


def _train_test(c: np.ndarray, f: np.ndarray, test_codes: Any, test_factors: Any, train_fraction: float,
                who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes, factors, test codes, test factors): the test rows given, or the last 1 − train_fraction."""
    if test_codes is None:
        check(0 < train_fraction < 1, "train_fraction", f"must be in (0, 1), got {train_fraction}")
        n_tr = int(math.ceil(c.shape[0] * train_fraction))
        c, ct, f, ft = c[:n_tr], c[n_tr:], f[:n_tr], f[n_tr:]
    else:
        ct = _codes(test_codes, f"{who} (test codes)")
        ft = _factors(test_factors, ct.shape[0], f"{who} (test factors)")
        if ct.shape[1] != c.shape[1] or ft.shape[1] != f.shape[1]:
            raise DataError(f"{who}: train and test codes/factors must have the same number of columns")
    if c.shape[0] < 2 or ct.shape[0] < 1:
        raise DataError(f"{who}: needs >= 2 training and >= 1 test rows, got {c.shape[0]} and {ct.shape[0]}")
    return c, f, ct, ft


def _names(names: Sequence[str] | None, k: int) -> list[str]:
    if names is None:
        return [f"factor {i}" for i in range(k)]
    if len(names) != k:
        raise ConfigError(f"factor_names: {len(names)} names for {k} factors")
    return list(names)


def discretize(x: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Each column into ``num_bins`` equal-width histogram bins over its range (labels 1..num_bins)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], num_bins)[1]
        out[:, j] = np.digitize(x[:, j], edges[:-1])
    return out


def discrete_factors(factors: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Factors as class labels 0..m-1 per column: integer columns and float columns with <= num_bins
    distinct values keep their classes; other float columns (continuous factors) are binned."""
    f = np.asarray(factors)
    out = np.empty(f.shape, dtype=np.int64)
    for k in range(f.shape[1]):
        col = f[:, k]
        values, inverse = np.unique(col, return_inverse=True)
        if np.issubdtype(f.dtype, np.integer) or len(values) <= num_bins:
            out[:, k] = inverse.reshape(-1)
        else:
            out[:, k] = discretize(col[:, None].astype(np.float64), num_bins)[:, 0]
    return out


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.float64)
    np.add.at(table, (ia.reshape(-1), ib.reshape(-1)), 1.0)
    return table


def _mi(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) of two label vectors from their contingency table."""
    p = _contingency(a, b)
    p /= p.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(max((p[nz] * (np.log(p[nz]) - np.log((pa @ pb)[nz]))).sum(), 0.0))


def entropy(labels: np.ndarray) -> float:
    """Entropy (nats) of a label vector."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _check_bins(n: int, num_bins: int, who: str) -> None:
    check(int(num_bins) >= 2, "num_bins", f"{who} needs at least 2 histogram bins, got {num_bins}")
    if n < num_bins:
        raise ConfigError(f"num_bins: {who} got {n} samples for {num_bins} histogram bins per code; the "
                          f"discretised mutual information is meaningless with fewer samples than bins. "
                          f"Score more samples (disentanglement_lib uses 10,000) or lower num_bins.")


def _informative(fd: np.ndarray, names: list[str], who: str) -> tuple[list[int], list[str]]:
    keep, skipped = [], []
    for k in range(fd.shape[1]):
        (keep if len(np.unique(fd[:, k])) > 1 else skipped).append(k)
    skipped_names = [names[k] for k in skipped]
    if skipped:
        warnings.warn(f"{who}: factor(s) {', '.join(skipped_names)} take a single value here (entropy 0, no "
                      "information to recover); skipped.", DisentanglementWarning, stacklevel=3)
    if not keep:
        raise DataError(f"{who}: every factor takes a single value; there is nothing to disentangle.")
    return keep, skipped_names


# ================================================================================ MI and MIG
def mutual_information_matrix(codes: Any, factors: Any, num_bins: int = NUM_BINS) -> np.ndarray:
    """I(z_j; v_k) in nats for every code unit j and factor k, shape (D, K): codes discretised into
    ``num_bins`` histogram bins, factors as classes (see :func:`discrete_factors`)."""
    c = _codes(codes, "mutual_information_matrix")
    f = _factors(factors, c.shape[0], "mutual_information_matrix")
    _check_bins(c.shape[0], num_bins, "mutual_information_matrix")
    cd, fd = discretize(c, num_bins), discrete_factors(f, num_bins)
    return np.array([[_mi(cd[:, j], fd[:, k]) for k in range(fd.shape[1])] for j in range(cd.shape[1])])


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


# ================================================================================ modularity
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


# ================================================================================ SAP
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


# ================================================================================ sources of fixed-factor batches
class _TableSource:
    """Rows of (codes, factors): a random row, and random rows that share one factor's value with it."""

    def __init__(self, codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator):
        self.c, self.f, self.rng = codes, factors, rng
        self.order, self.start, self.count = [], [], []
        for k in range(factors.shape[1]):
            order = np.argsort(factors[:, k], kind="stable")
            vals, start, count = np.unique(factors[order, k], return_index=True, return_counts=True)
            lookup_start = np.zeros(vals.max() + 1, dtype=np.int64)
            lookup_count = np.zeros(vals.max() + 1, dtype=np.int64)
            lookup_start[vals], lookup_count[vals] = start, count
            self.order.append(order)
            self.start.append(lookup_start)
            self.count.append(lookup_count)

    def sample(self, n: int) -> np.ndarray:
        return self.rng.integers(0, self.f.shape[0], n)

    def share(self, keys: np.ndarray, k: int) -> np.ndarray:
        v = self.f[keys, k]
        off = (self.rng.random(len(keys)) * self.count[k][v]).astype(np.int64)
        return self.order[k][self.start[k][v] + off]

    def codes(self, keys: np.ndarray) -> np.ndarray:
        return self.c[keys]


class _ModelSource:
    """Fresh factors from a data module, rendered and embedded: fixing factor k copies its column."""

    def __init__(self, model: Any, data: Any, rng: np.random.Generator, batch_size: int):
        self.model, self.data, self.rng, self.batch_size = model, data, rng, batch_size

    def sample(self, n: int) -> np.ndarray:
        g = torch.Generator().manual_seed(int(self.rng.integers(2 ** 62)))
        return np.asarray(self.data.sample_factors(int(n), g), dtype=np.int64)

    def share(self, keys: np.ndarray, k: int) -> np.ndarray:
        fresh = self.sample(len(keys))
        fresh[:, k] = keys[:, k]
        return fresh

    def codes(self, keys: np.ndarray) -> np.ndarray:
        images = self.data.images_from_factors(torch.from_numpy(keys))
        return codes_of_model(self.model, images, batch_size=max(self.batch_size, 256))


# ================================================================================ β-VAE metric
@dataclass
class ScoreResult:
    """A classifier-based score: ``score`` is the evaluation accuracy."""

    score: float
    train_accuracy: float
    eval_accuracy: float
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _beta_vae_points(src, n: int, batch_size: int, keep: list[int], rng: np.random.Generator,
                     chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    done = 0
    while done < n:
        m = min(chunk, n - done)
        y = rng.choice(keep, m)
        k1 = src.sample(m * batch_size)
        k2 = np.concatenate([src.share(k1[i * batch_size:(i + 1) * batch_size], int(y[i])) for i in range(m)])
        both = src.codes(np.concatenate([k1, k2]))
        z1, z2 = both[: m * batch_size], both[m * batch_size:]
        feats.append(np.abs(z1 - z2).reshape(m, batch_size, -1).mean(1))
        labels.append(y)
        done += m
    return np.concatenate(feats), np.concatenate(labels)


def _beta_vae(src, k: int, names: list[str], keep: list[int], skipped: list[str], num_train: int, num_eval: int,
              batch_size: int, seed: int) -> ScoreResult:
    from sklearn.linear_model import LogisticRegression

    check(int(batch_size) >= 1, "batch_size", f"must be >= 1, got {batch_size}")
    check(int(num_train) >= 2 and int(num_eval) >= 1, "num_train", "need num_train >= 2 and num_eval >= 1")
    rng = np.random.default_rng(seed)
    x_tr, y_tr = _beta_vae_points(src, int(num_train), int(batch_size), keep, rng)
    x_ev, y_ev = _beta_vae_points(src, int(num_eval), int(batch_size), keep, rng)
    if len(np.unique(y_tr)) < 2:
        acc = float(np.mean(y_ev == y_tr[0]))
        return ScoreResult(acc, 1.0, acc, skipped)
    clf = LogisticRegression(max_iter=1000, random_state=seed)
    clf.fit(x_tr, y_tr)
    tr, ev = float(clf.score(x_tr, y_tr)), float(clf.score(x_ev, y_ev))
    return ScoreResult(ev, tr, ev, skipped, {"chance": 1.0 / len(keep)})


def beta_vae_score(codes: Any, factors: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                   batch_size: int = BATCH_SIZE, seed: int = 0, factor_names: Sequence[str] | None = None,
                   num_bins: int = NUM_BINS) -> ScoreResult:
    """The β-VAE metric (Higgins et al. 2017; vae-thesis §6.1.1) on precomputed rows: each point picks a
    factor y, ``batch_size`` random rows and for each a random row with the same value of y, and
    averages |z₁ − z₂|; a logistic regression predicts y from that average. Chance is 1/#factors."""
    c = _codes(codes, "the β-VAE metric")
    f = discrete_factors(_factors(factors, c.shape[0], "the β-VAE metric"), num_bins)
    names = _names(factor_names, f.shape[1])
    keep, skipped = _informative(f, names, "the β-VAE metric")
    rng = np.random.default_rng(seed + 1)
    return _beta_vae(_TableSource(c, f, rng), f.shape[1], names, keep, skipped, num_train, num_eval, batch_size, seed)


# ================================================================================ FactorVAE metric
def _factor_vae(src, d: int, keep: list[int], skipped: list[str], num_train: int, num_eval: int, batch_size: int,
                num_variance: int, prune_std: float, seed: int) -> ScoreResult:
    check(int(batch_size) >= 2, "batch_size", f"the FactorVAE metric needs >= 2 images per batch, got {batch_size}")
    rng = np.random.default_rng(seed)
    global_var = np.var(src.codes(src.sample(int(num_variance))), axis=0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_var) >= prune_std)
    if active.size == 0:
        warnings.warn(f"the FactorVAE metric: no latent unit has std >= {prune_std} over the data (collapsed "
                      "representation); score 0.", DisentanglementWarning, stacklevel=3)
        return ScoreResult(0.0, 0.0, 0.0, skipped, {"num_active_dims": 0})
    kmax = max(keep) + 1

    def votes(n: int, chunk: int = 16) -> np.ndarray:
        v = np.zeros((kmax, d), dtype=np.int64)
        done = 0
        while done < n:
            m = min(chunk, n - done)
            ks = rng.choice(keep, m)
            anchors = src.sample(m)
            keys = np.concatenate([src.share(np.repeat(anchors[i:i + 1], batch_size, 0), int(ks[i]))
                                   for i in range(m)])
            z = src.codes(keys).reshape(m, batch_size, -1)
            local = np.var(z, axis=1, ddof=1)[:, active] / global_var[active]
            np.add.at(v, (ks, active[np.argmin(local, axis=1)]), 1)
            done += m
        return v

    train, ev = votes(int(num_train)), votes(int(num_eval))
    classifier = np.argmax(train, axis=0)  # the majority factor of each latent unit
    dims = np.arange(d)
    tr = float(train[classifier, dims].sum() / train.sum())
    ea = float(ev[classifier, dims].sum() / ev.sum())
    return ScoreResult(ea, tr, ea, skipped, {"num_active_dims": int(active.size), "chance": 1.0 / len(keep)})


def factor_vae_score(codes: Any, factors: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                     batch_size: int = BATCH_SIZE, num_variance: int = NUM_VARIANCE, prune_std: float = PRUNE_STD,
                     seed: int = 0, factor_names: Sequence[str] | None = None,
                     num_bins: int = NUM_BINS) -> ScoreResult:
    """The FactorVAE metric (Kim & Mnih 2018) on precomputed rows: for a batch sharing one factor's value,
    the unit with the smallest variance (normalised by its variance over the data; units of std <
    ``prune_std`` dropped) votes for that factor; a majority-vote classifier maps units to factors."""
    c = _codes(codes, "the FactorVAE metric")
    f = discrete_factors(_factors(factors, c.shape[0], "the FactorVAE metric"), num_bins)
    names = _names(factor_names, f.shape[1])
    keep, skipped = _informative(f, names, "the FactorVAE metric")
    src = _TableSource(c, f, np.random.default_rng(seed + 1))
    return _factor_vae(src, c.shape[1], keep, skipped, num_train, num_eval, batch_size,
                       min(int(num_variance), c.shape[0]), prune_std, seed)


# ================================================================================ DCI
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


# ================================================================================ covariance metric
def covariance_metric(mean: Any, logvar: Any, samples: Any = None, generator: torch.Generator | None = None) -> float:
    """The vae-thesis §5.1 metric F̃ = (1/N) Σᵢ ‖Σᵢ(X) − Σ̃(X)‖_F: Σᵢ = diag(exp(logvarᵢ)) the posterior
    covariance of image i, Σ̃ the empirical covariance of samples zᵢ ~ q(z|xᵢ) (one per image, drawn
    with ``generator`` unless ``samples`` are given) — the aggregate posterior's covariance."""
    mu = _codes(mean, "the covariance metric (means)")
    lv = _codes(logvar, "the covariance metric (log-variances)")
    if lv.shape != mu.shape:
        raise DataError(f"the covariance metric: means {mu.shape} and log-variances {lv.shape} differ in shape")
    if mu.shape[0] < 2:
        raise DataError("the covariance metric needs >= 2 images to estimate the aggregate covariance")
    var = np.exp(lv)
    if samples is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64).numpy()
        z = mu + np.sqrt(var) * eps
    else:
        z = _codes(samples, "the covariance metric (samples)")
        if z.shape != mu.shape:
            raise DataError(f"the covariance metric: samples {z.shape} must match the means {mu.shape}")
    agg = np.atleast_2d(np.cov(z, rowvar=False))
    # ‖diag(v) − A‖²_F = ‖A‖²_F − 2 Σ_d v_d A_dd + Σ_d v_d²
    sq = (agg ** 2).sum() - 2 * var @ np.diag(agg) + (var ** 2).sum(1)
    return float(np.sqrt(np.maximum(sq, 0.0)).mean())


# ================================================================================ models
def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


class _EvalMode:
    def __init__(self, model: Any):
        self.model = model
        self.was = model.training if isinstance(model, torch.nn.Module) else None

    def __enter__(self):
        if self.was is not None:
            self.model.eval()
        return self

    def __exit__(self, *exc):
        if self.was is not None:
            self.model.train(self.was)


def _images_for(model: Any, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise DataError(f"images must be uint8 in [0, 255] (a data module's images), got {images.dtype}")
    return to_value_range(images.to(device), model.value_range)


def codes_of_model(model: Any, images: torch.Tensor, batch_size: int = 256, tool: str = "the disentanglement metrics") -> np.ndarray:
    """``model.embed`` of uint8 images (N, C, H, W), in eval mode without gradients, images scaled to
    ``model.value_range``: float64 (N, D). Checks every batch: (B, D) rows for B images, finite."""
    m = require(model, Embeds, tool)
    device = _device(m)
    out, dim = [], None
    with torch.no_grad(), _EvalMode(m):
        for i in range(0, images.shape[0], int(batch_size)):
            x = _images_for(m, images[i:i + int(batch_size)], device)
            z = m.embed(x)
            if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != x.shape[0]:
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise DataError(f"{tool}: {type(m).__name__}.embed returned {shape} for a batch of {x.shape[0]} "
                                f"images; it must return one row per image, (B, D).")
            if dim is not None and z.shape[1] != dim:
                raise DataError(f"{tool}: {type(m).__name__}.embed changed its width from {dim} to {z.shape[1]}")
            dim = z.shape[1]
            if not torch.isfinite(z).all():
                raise DataError(f"{tool}: {type(m).__name__}.embed returned NaN or inf for "
                                f"{int((~torch.isfinite(z)).any(1).sum())} of {x.shape[0]} images; the model is "
                                "broken (diverged training?) and cannot be scored.")
            out.append(z.detach().to(torch.float64).cpu())
    return torch.cat(out).numpy()


def posterior_of_model(model: Any, images: torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(means, log-variances) of q(z|x) for uint8 images, eval mode, no gradients."""
    m = require(model, Encodes, "the covariance metric", "It reads the posterior's covariance (VAE family).")
    device = _device(m)
    mus, lvs = [], []
    with torch.no_grad(), _EvalMode(m):
        for i in range(0, images.shape[0], int(batch_size)):
            x = _images_for(m, images[i:i + int(batch_size)], device)
            mu, lv = m.encode(x)
            if mu.shape[0] != x.shape[0] or lv.shape != mu.shape:
                raise DataError(f"the covariance metric: {type(m).__name__}.encode returned {tuple(mu.shape)} and "
                                f"{tuple(lv.shape)} for {x.shape[0]} images")
            mus.append(mu.double().cpu())
            lvs.append(lv.double().cpu())
    return torch.cat(mus).numpy(), torch.cat(lvs).numpy()


def _factor_data(data: Any, tool: str) -> FactorData:
    if not isinstance(data, FactorData):
        raise ConfigError(f"{tool} needs data with known generative factors (factor_sizes, sample_factors, "
                          f"images_from_factors), e.g. data=dsprites; {type(data).__name__} has none.")
    return data


def _names_of(data: Any) -> list[str]:
    names = getattr(data, "factor_names", None)  # optional part of the factor interface
    return list(names) if names is not None else [f"factor {i}" for i in range(len(data.factor_sizes))]


def _model_source(model, data, seed, batch_size, pool_size, tool):
    require(model, Embeds, tool)
    data = _factor_data(data, tool)
    sizes = [int(s) for s in data.factor_sizes]
    names = _names_of(data)
    keep = [k for k, s in enumerate(sizes) if s > 1]
    skipped = [names[k] for k, s in enumerate(sizes) if s <= 1]
    if skipped:
        warnings.warn(f"{tool}: factor(s) {', '.join(skipped)} take a single value (entropy 0); skipped.",
                      DisentanglementWarning, stacklevel=3)
    if pool_size:
        g = torch.Generator().manual_seed(seed + 2)
        f = np.asarray(data.sample_factors(int(pool_size), g), dtype=np.int64)
        c = codes_of_model(model, data.images_from_factors(torch.from_numpy(f)), tool=tool)
        return _TableSource(c, f, np.random.default_rng(seed + 1)), c.shape[1], names, keep, skipped
    src = _ModelSource(model, data, np.random.default_rng(seed + 1), batch_size)
    d = codes_of_model(model, data.images_from_factors(data.sample_factors(2, torch.Generator().manual_seed(0))),
                       tool=tool).shape[1]
    return src, d, names, keep, skipped


def beta_vae_score_of_model(model: Any, data: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                            batch_size: int = BATCH_SIZE, seed: int = 0, pool_size: int | None = None) -> ScoreResult:
    """The β-VAE metric of ``model.embed`` on fresh fixed-factor pairs rendered by ``data`` (the
    protocol: 64 pairs per point, 10,000 + 5,000 points = 1.92M images). ``pool_size``: embed that many
    random images once and draw the pairs from them instead (cheaper; the only way when the data holds
    only part of the factor grid)."""
    src, _, names, keep, skipped = _model_source(model, data, seed, batch_size, pool_size, "the β-VAE metric")
    return _beta_vae(src, len(names), names, keep, skipped, num_train, num_eval, batch_size, seed)


def factor_vae_score_of_model(model: Any, data: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                              batch_size: int = BATCH_SIZE, num_variance: int = NUM_VARIANCE,
                              prune_std: float = PRUNE_STD, seed: int = 0,
                              pool_size: int | None = None) -> ScoreResult:
    """The FactorVAE metric of ``model.embed`` on fresh batches that share one factor (see
    :func:`beta_vae_score_of_model` for ``pool_size``)."""
    src, d, names, keep, skipped = _model_source(model, data, seed, batch_size, pool_size, "the FactorVAE metric")
    return _factor_vae(src, d, keep, skipped, num_train, num_eval, batch_size, num_variance, prune_std, seed)


METRICS = ("mig", "beta_vae", "factor_vae", "dci", "sap", "modularity", "covariance")


def disentanglement_scores(model: Any, datamodule: Any, metrics: Sequence[str] = METRICS, num_train: int = NUM_TRAIN,
                           num_eval: int = NUM_EVAL, batch_size: int = BATCH_SIZE, num_bins: int = NUM_BINS,
                           num_variance: int = NUM_VARIANCE, importance_model: str = "gbt", forest_trees: int = 50,
                           forest_depth: int = 10, pool_size: int | None = None,
                           covariance_split: str = "test", covariance_images: int = 10_000,
                           seed: int = 0) -> dict[str, float]:
    """Every requested score of ``model`` on ``datamodule``'s factors, as flat floats for logging:
    ``mig``, ``beta_vae_score``, ``factor_vae_score``, ``dci_disentanglement``, ``dci_completeness``,
    ``dci_informativeness``, ``sap_score`` (+ ``sap_<factor>``), ``modularity_score``,
    ``covariance_metric`` (this one needs :class:`~xgen.protocols.Encodes`
    and is skipped with a warning for a model without a posterior, e.g. InfoGAN). MIG, modularity, DCI
    and SAP use ``num_train`` fresh random points (DCI and SAP test on ``num_eval`` more). Per-factor
    keys carry the data module's ``factor_names``. For ``xgen eval`` and the callback."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"metrics: unknown {unknown}; choose from {list(METRICS)}")
    out: dict[str, float] = {}
    needs_factors = [m for m in metrics if m != "covariance"]
    if needs_factors:
        require(model, Embeds, "the disentanglement metrics")
        data = _factor_data(datamodule, "the disentanglement metrics")
        names = _names_of(data)
        if {"mig", "dci", "sap", "modularity"} & set(metrics):
            g = torch.Generator().manual_seed(seed + 3)
            n = int(num_train) + (int(num_eval) if {"dci", "sap"} & set(metrics) else 0)
            f = np.asarray(data.sample_factors(n, g), dtype=np.int64)
            c = codes_of_model(model, data.images_from_factors(torch.from_numpy(f)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DisentanglementWarning)  # the constant factor: warned once below
                if "mig" in metrics:
                    r = mig(c[:num_train], f[:num_train], num_bins, names)
                    out["mig"] = r.score
                    out.update({f"mig_{k}": v for k, v in r.gaps.items()})
                if "dci" in metrics:
                    d = dci(c[:num_train], f[:num_train], c[num_train:], f[num_train:], importance_model=importance_model,
                            forest_trees=forest_trees, forest_depth=forest_depth, seed=seed, factor_names=names,
                            num_bins=num_bins)
                    out.update(dci_disentanglement=d.disentanglement, dci_completeness=d.completeness,
                               dci_informativeness=d.informativeness)
                if "sap" in metrics:
                    s = sap(c[:num_train], f[:num_train], c[num_train:], f[num_train:], seed=seed, factor_names=names,
                            num_bins=num_bins)
                    out["sap_score"] = s.score
                    out.update({f"sap_{k}": v for k, v in s.gaps.items()})
                if "modularity" in metrics:
                    out["modularity_score"] = modularity(c[:num_train], f[:num_train], num_bins, names).score
        if "beta_vae" in metrics:
            out["beta_vae_score"] = beta_vae_score_of_model(model, data, num_train, num_eval, batch_size, seed,
                                                            pool_size).score
        if "factor_vae" in metrics:
            out["factor_vae_score"] = factor_vae_score_of_model(model, data, num_train, num_eval, batch_size,
                                                                num_variance, seed=seed, pool_size=pool_size).score
    if "covariance" in metrics:
        if isinstance(model, Encodes):
            x, _ = datamodule.split(covariance_split)
            mu, lv = posterior_of_model(model, x[: int(covariance_images)])
            out["covariance_metric"] = covariance_metric(mu, lv, generator=torch.Generator().manual_seed(seed))
        else:
            warnings.warn(f"the covariance metric needs a posterior (encode); {type(model).__name__} has none, "
                          "skipped.", DisentanglementWarning, stacklevel=2)
    return out
