"""What every disentanglement metric shares: the estimator defaults, input checks of (codes, factors),
factor-name handling, discretisation (equal-width histogram bins, factors as classes), entropy and
mutual information from the contingency table, the MI matrix, and representation sampling — the codes
of a model (``embed`` in eval mode, no gradients) and the sources of rows that share one factor
(:class:`_TableSource` over given rows, :class:`_ModelSource` rendering fresh factors)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from xgen.data.base import to_value_range
from xgen.errors import ConfigError, DataError, check
from xgen.protocols import Embeds, require

__all__ = ["BATCH_SIZE", "NUM_TRAIN", "NUM_EVAL", "NUM_BINS", "NUM_VARIANCE", "PRUNE_STD",
           "DisentanglementWarning", "FactorData", "ScoreResult", "discretize", "discrete_factors", "entropy",
           "mutual_information_matrix", "codes_of_model"]


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


# ================================================================================ input checks, factor names,
# discretisation, entropy and mutual information
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


def mutual_information_matrix(codes: Any, factors: Any, num_bins: int = NUM_BINS) -> np.ndarray:
    """I(z_j; v_k) in nats for every code unit j and factor k, shape (D, K): codes discretised into
    ``num_bins`` histogram bins, factors as classes (see :func:`discrete_factors`)."""
    c = _codes(codes, "mutual_information_matrix")
    f = _factors(factors, c.shape[0], "mutual_information_matrix")
    _check_bins(c.shape[0], num_bins, "mutual_information_matrix")
    cd, fd = discretize(c, num_bins), discrete_factors(f, num_bins)
    return np.array([[_mi(cd[:, j], fd[:, k]) for k in range(fd.shape[1])] for j in range(cd.shape[1])])


# ================================================================================ representation sampling
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


# ================================================================================ the classifier-based scores' result
@dataclass
class ScoreResult:
    """A classifier-based score: ``score`` is the evaluation accuracy."""

    score: float
    train_accuracy: float
    eval_accuracy: float
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
