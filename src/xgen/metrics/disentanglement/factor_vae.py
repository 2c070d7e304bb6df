"""The FactorVAE metric (Kim & Mnih 2018): batches of 64 images that share one factor, 10,000 training and
5,000 evaluation points, 10,000 points for the global variances with dimensions of std < 0.05 pruned, by
default. On given rows (:func:`factor_vae_score`) or on fresh batches rendered by a data module
(:func:`factor_vae_score_of_model`)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from xgen.errors import check
from xgen.metrics.disentanglement.common import (BATCH_SIZE, NUM_BINS, NUM_EVAL, NUM_TRAIN, NUM_VARIANCE, PRUNE_STD,
                                                 DisentanglementWarning, ScoreResult, _codes, _factors, _informative,
                                                 _model_source, _names, _TableSource, discrete_factors)

__all__ = ["factor_vae_score", "factor_vae_score_of_model"]


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


def factor_vae_score_of_model(model: Any, data: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                              batch_size: int = BATCH_SIZE, num_variance: int = NUM_VARIANCE,
                              prune_std: float = PRUNE_STD, seed: int = 0,
                              pool_size: int | None = None) -> ScoreResult:
    """The FactorVAE metric of ``model.embed`` on fresh batches that share one factor (see
    :func:`beta_vae_score_of_model` for ``pool_size``)."""
    src, d, names, keep, skipped = _model_source(model, data, seed, batch_size, pool_size, "the FactorVAE metric")
    return _factor_vae(src, d, keep, skipped, num_train, num_eval, batch_size, num_variance, prune_std, seed)
