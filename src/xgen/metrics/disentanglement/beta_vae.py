"""The β-VAE metric (Higgins et al. 2017): 64 image pairs per point, 10,000 training and 5,000 evaluation
points by default; the linear classifier is scikit-learn's ``LogisticRegression`` (lbfgs, C = 1;
``max_iter`` 1000 so that it converges) and the score its accuracy on the evaluation points. On given
rows (:func:`beta_vae_score`) or on fresh pairs rendered by a data module (:func:`beta_vae_score_of_model`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xgen.errors import check
from xgen.metrics.disentanglement.common import (BATCH_SIZE, NUM_BINS, NUM_EVAL, NUM_TRAIN, ScoreResult, _codes,
                                                 _factors, _informative, _model_source, _names, _TableSource,
                                                 discrete_factors)

__all__ = ["beta_vae_score", "beta_vae_score_of_model"]


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


def beta_vae_score_of_model(model: Any, data: Any, num_train: int = NUM_TRAIN, num_eval: int = NUM_EVAL,
                            batch_size: int = BATCH_SIZE, seed: int = 0, pool_size: int | None = None) -> ScoreResult:
    """The β-VAE metric of ``model.embed`` on fresh fixed-factor pairs rendered by ``data`` (the
    protocol: 64 pairs per point, 10,000 + 5,000 points = 1.92M images). ``pool_size``: embed that many
    random images once and draw the pairs from them instead (cheaper; the only way when the data holds
    only part of the factor grid)."""
    src, _, names, keep, skipped = _model_source(model, data, seed, batch_size, pool_size, "the β-VAE metric")
    return _beta_vae(src, len(names), names, keep, skipped, num_train, num_eval, batch_size, seed)
