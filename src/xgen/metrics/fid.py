"""Sample-quality scores from feature vectors: FID, KID, Inception Score, precision/recall.

The scores are torch-fidelity's own feature-level functions (so the numbers are the library's);
xgen adds what they leave to the caller: Gaussian statistics that can be cached and compared without
the features, float64 accumulation, input validation with actionable messages, a warning when the
covariance is singular (fewer samples than feature dimensions), and a KID subset size that adapts to
the number of samples instead of failing.

FID (Heusel et al. 2017; thesis §4.3):  ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^½).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

Tensor = torch.Tensor


class SingularCovarianceWarning(UserWarning):
    """FID was computed from a covariance estimated with fewer samples than feature dimensions."""


def _as_features(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: features contain NaN or inf (did the generator diverge?)")
    return t.to(torch.float64)


@dataclass
class GaussianStats:
    """Mean and (unbiased, N−1) covariance of a feature set, in float64: all FID needs, and what
    :mod:`xgen.metrics.cache` stores on disk for real data."""

    mu: Tensor
    sigma: Tensor
    n: int

    @classmethod
    def from_features(cls, features: Tensor | np.ndarray, name: str = "features") -> "GaussianStats":
        f = _as_features(features, name)
        if f.shape[0] < 2:
            raise ValueError(f"{name}: FID needs at least 2 samples to estimate a covariance, got {f.shape[0]}")
        mu = f.mean(0)
        c = f - mu
        return cls(mu=mu, sigma=c.T @ c / (f.shape[0] - 1), n=int(f.shape[0]))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def to_dict(self) -> dict:
        return {"mu": self.mu, "sigma": self.sigma, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "GaussianStats":
        return cls(mu=d["mu"].to(torch.float64), sigma=d["sigma"].to(torch.float64), n=int(d["n"]))


def _warn_if_singular(stats: GaussianStats, name: str) -> None:
    if stats.n <= stats.dim:
        warnings.warn(f"FID: {name} has {stats.n} samples for {stats.dim} feature dimensions, so its "
                      f"covariance is singular (rank <= {stats.n - 1}) and FID is biased upward and noisy. "
                      f"Use more than {stats.dim} samples (the thesis used 1,000; xgen's default at the end "
                      "of training is 10,000).", SingularCovarianceWarning, stacklevel=3)


def fid_from_stats(a: GaussianStats, b: GaussianStats, names: Sequence[str] = ("real", "generated")) -> float:
    """Fréchet distance between two Gaussians (torch-fidelity's formula: Tr of the matrix square
    root as the sum of square roots of the eigenvalues of Σ_a Σ_b)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    if a.dim != b.dim:
        raise ValueError(f"FID: {names[0]} features have {a.dim} dimensions but {names[1]} features have "
                         f"{b.dim}; both sets must come from the same feature extractor.")
    for s, name in zip((a, b), names):
        _warn_if_singular(s, name)
    sa = {"mu": a.mu.numpy(), "sigma": a.sigma.numpy()}
    sb = {"mu": b.mu.numpy(), "sigma": b.sigma.numpy()}
    return float(fid_statistics_to_metric(sa, sb, verbose=False)[KEY_METRIC_FID])


def fid(real: Tensor | np.ndarray | GaussianStats, generated: Tensor | np.ndarray | GaussianStats) -> float:
    """FID between two feature sets (N, D) — or precomputed :class:`GaussianStats` — lower is better."""
    a = real if isinstance(real, GaussianStats) else GaussianStats.from_features(real, "real")
    b = generated if isinstance(generated, GaussianStats) else GaussianStats.from_features(generated, "generated")
    return fid_from_stats(a, b)


def kid(real: Tensor | np.ndarray, generated: Tensor | np.ndarray, subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of the unbiased polynomial-kernel
    MMD² over ``subsets`` random subsets. ``subset_size`` shrinks (with a warning) to the smaller set."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    fr, fg = _as_features(real, "real"), _as_features(generated, "generated")
    if fr.shape[1] != fg.shape[1]:
        raise ValueError(f"KID: real features have {fr.shape[1]} dimensions but generated features have "
                         f"{fg.shape[1]}; both sets must come from the same feature extractor.")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID: subsets must be >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(int(subset_size), fr.shape[0], fg.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {fr.shape[0]} real and {fg.shape[0]} generated")
    if m < subset_size:
        warnings.warn(f"KID: subset_size {subset_size} is larger than the {min(fr.shape[0], fg.shape[0])} "
                      f"samples available; using subset_size={m}.", UserWarning, stacklevel=2)
    out = kid_features_to_metric(fr.float(), fg.float(), kid_subsets=int(subsets), kid_subset_size=m,
                                 kid_kernel="poly", kid_kernel_poly_degree=int(degree),
                                 kid_kernel_poly_gamma=gamma, kid_kernel_poly_coef0=float(coef0),
                                 rng_seed=int(seed), verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def inception_score(logits: Tensor | np.ndarray, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp E[KL(p(y|x) ‖ p(y))], mean and std over ``splits``
    chunks, from the extractor's class logits. With a dataset classifier it measures class
    confidence and coverage of that dataset's classes (at most ``num_classes``)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    lg = _as_features(logits, "logits")
    if not 1 <= splits <= lg.shape[0]:
        raise ValueError(f"Inception Score: splits must be in [1, {lg.shape[0]}] (the number of samples), got {splits}")
    out = isc_features_to_metric(lg, splits=int(splits), shuffle=True, rng_seed=int(seed))
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD])


def precision_recall(real: Tensor | np.ndarray, generated: Tensor | np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in feature space:
    precision = share of generated samples inside the real manifold, recall = the converse."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    fr, fg = _as_features(real, "real").float(), _as_features(generated, "generated").float()
    if fr.shape[1] != fg.shape[1]:
        raise ValueError(f"precision/recall: real features have {fr.shape[1]} dimensions but generated "
                         f"features have {fg.shape[1]}; both sets must come from the same feature extractor.")
    if min(fr.shape[0], fg.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set, "
                         f"got {fr.shape[0]} real and {fg.shape[0]} generated")
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    out = prc_features_to_metric(fg, fr, prc_neighborhood=int(k), prc_batch_size=10000, save_cpu_ram=True,
                                 verbose=False)
    return {"precision": float(out["precision"]), "recall": float(out["recall"]), "f_score": float(out["f_score"])}
